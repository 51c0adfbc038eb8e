"""The layering written in .importlinter holds, checked by import-linter on the installed layout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ppdpp

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"planner": "planner", "plugins": "plugins", "simulators": "simulators", "data": "data"}


def test_import_layers_hold(tmp_path: Path) -> None:
    """import-linter reads a package from one folder, so lay the source folders out as pip installs them."""
    root = tmp_path / "ppdpp"
    shutil.copytree(REPO / "ppdpp", root, ignore=shutil.ignore_patterns("__pycache__", *FOLDERS))  # not its links
    for folder, target in FOLDERS.items():
        shutil.copytree(REPO / folder, root / target, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl"))
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([lint, "--no-cache", str(REPO / ".importlinter")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"import layering broken (see .importlinter):\n{result.stdout}\n{result.stderr}"
    assert "Contracts: 3 kept, 0 broken" in result.stdout, result.stdout


def test_short_public_api() -> None:
    assert ppdpp.__version__ and ppdpp.__version__ != "0.0.0", ppdpp.__version__
    for name in ("get_domain", "PolicyPlanner", "PlannedAgent", "open_chat"):
        assert callable(getattr(ppdpp, name)), name
    assert ppdpp.get_domain("negotiation").name == "negotiation"
