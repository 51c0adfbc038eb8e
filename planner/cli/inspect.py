"""``ppdpp plugins`` and ``ppdpp data stats``: what is loaded and what the datasets hold."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ppdpp.planner.cli.app import DataDirOption, app, console, data_app
from ppdpp.planner.core.domain import SPLITS
from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.toolkit.datafiles import resolve_data_dir


@app.command("plugins")
def list_plugins() -> None:
    """List the loaded plugins, the hooks each implements and the domains each registers."""
    pm = plugin_registry.get_plugin_manager()
    owners = plugin_registry.domain_owners()
    table = Table("plugin", "from", "hooks", "domains")
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        doms = sorted(d for d, owner in owners.items() if owner == name)
        table.add_row(name, plugin_registry.plugin_source(name), ", ".join(hooks), ", ".join(doms))
    console.print(table)


@data_app.command("stats")
def data_stats(
    domain: str = typer.Option(..., "--domain", "-d", help="Domain name (see `ppdpp plugins`)."),
    data_dir: Optional[Path] = DataDirOption,
) -> None:
    """Per-split dialogue and labelled agent-turn counts, and agent turns per strategy."""
    dom = plugin_registry.get_domain(domain)
    root = resolve_data_dir(data_dir)
    console.print(f"[bold]{dom.name}[/] from {root or 'bundled cases'}")
    per_split = {split: (dom.load_cases(split, root), dom.sft_examples(split, root)) for split in SPLITS}
    summary = Table("split", "dialogues", "labelled agent turns")
    for split, (cases, examples) in per_split.items():
        summary.add_row(split, f"{len(cases):,}", f"{len(examples):,}")
    console.print(summary)
    strategies = Table("strategy", *SPLITS)
    counts = {split: Counter(ex.label for ex in examples) for split, (_, examples) in per_split.items()}
    for name in dom.strategy_names:
        strategies.add_row(name, *(f"{counts[s][name]:,}" for s in SPLITS))
    console.print(strategies)
