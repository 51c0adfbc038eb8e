"""A ready-made ``dialogue_end`` plugin that appends each ended dialogue to a JSON-lines file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ppdpp.planner.core.domain import Case, Domain, Turn
from ppdpp.planner.registry.hookspecs import hookimpl


class JsonlDialogueLog:
    """A ``dialogue_end`` plugin: appends one JSON line per ended dialogue to ``path`` (flushed at once).
    Register it with ``ppdpp.planner.registry.manager.register_plugin(JsonlDialogueLog(path))`` or
    ``ppdpp serve --dialogue-log PATH``. Async callers (self-play, the proxy) run the hook in worker threads
    (``runtime_hooks.adialogue_end``), so several may write at once: a lock keeps each line whole."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @hookimpl
    def dialogue_end(self, domain: Domain, case: Case | None, conversation: list[Turn], outcome: dict[str, Any],
                     context: dict[str, Any]) -> None:
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "domain": domain.name,
            "case_id": case.id if case is not None else None,
            "outcome": outcome,
            "context": context,
            "conversation": [{"speaker": t.speaker, "text": t.text, "strategy": t.strategy} for t in conversation],
        }
        line = json.dumps(row, ensure_ascii=False, default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
