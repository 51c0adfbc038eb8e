"""The ``ppdpp`` command line. Each area adds its commands in its own module, imported at the bottom."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import plugins as plugin_registry
from .datafiles import resolve_data_dir
from .domain import SPLITS, DomainError

app = typer.Typer(
    name="ppdpp",
    help="Plug-and-play policy planners for proactive LLM dialogue agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the datasets behind the domains.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

DataDirOption = typer.Option(
    None, "--data-dir", help="Dataset root (default: $PPDPP_DATA_DIR, else ../shared/data, else bundled cases)."
)


@app.callback()
def _root(
    plugins: Optional[str] = typer.Option(
        None, "--plugins", help="Comma-separated entry-point names to load (default: all; env PPDPP_PLUGINS)."
    ),
) -> None:
    if plugins is not None:
        plugin_registry.restrict_plugins(plugins.split(","))


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


def main() -> None:
    """Console-script entry point: clear one-line errors for bad input instead of tracebacks."""
    try:
        app()
    except (DomainError, plugin_registry.PluginError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None


# command modules
from . import cli_sft  # noqa: E402,F401  (ppdpp sft)
from . import cli_serve  # noqa: E402,F401  (ppdpp serve)
from . import cli_llm  # noqa: E402,F401  (ppdpp chat, serve-llm, models)
from . import cli_selfplay  # noqa: E402,F401  (ppdpp rl, evaluate)
from . import cli_quickstart  # noqa: E402,F401  (ppdpp quickstart)
