"""``ppdpp plugins``, ``ppdpp data stats`` and ``ppdpp data convert``: what is loaded, what the datasets hold,
and converting a dataset's original release into a domain's format."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from rich.markup import escape
from rich.table import Table

from ppdpp.planner.cli.app import NoSettings, app, config_command, console, data_app, data_dir_field, fail
from ppdpp.planner.core.atomic import write_atomic
from ppdpp.planner.core.domain import SPLITS
from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.toolkit.datafiles import domain_data

SHOWN_SKIPS = 10  # skipped examples named one by one; the rest are counted


@config_command(app, "plugins", NoSettings)
def list_plugins(_: NoSettings) -> None:
    """List the loaded plugins, the hooks each implements and the domains each registers."""
    pm = plugin_registry.get_plugin_manager()
    owners = plugin_registry.domain_owners()
    table = Table("plugin", "from", "hooks", "domains")
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        doms = sorted(d for d, owner in owners.items() if owner == name)
        table.add_row(name, plugin_registry.plugin_source(name), ", ".join(hooks), ", ".join(doms))
    for name, (source, error) in sorted(plugin_registry.failed_plugins().items()):
        table.add_row(name, source, f"[red]failed to load:[/] {escape(error)}", "")
    console.print(table)
    policies = Table("policy", "domains", "trainable", "settings", "what it does",
                     caption="trainable: ppdpp rl --policy NAME trains it; evaluate plays it with --planner DIR "
                             "--planner-policy NAME (the others: --baselines NAME)")
    for name, spec in plugin_registry.policies().items():
        settings = ", ".join("--" + f.name.replace("_", "-") for f in fields(spec.config)) if spec.config else ""
        policies.add_row(name, ", ".join(spec.domains) or "all", "yes" if spec.trainable else "", settings,
                         spec.description)
    console.print(policies)
    converters = plugin_registry.converters()
    if converters:
        listing = Table("data converter", "domain", "converts")
        for name, converter in sorted(converters.items()):
            listing.add_row(name, converter.domain, converter.description)
        console.print(listing)


@dataclass
class DataStatsCommand:
    """The settings of ``ppdpp data stats``."""

    domain: str = field(metadata={"help": "Domain name (see `ppdpp plugins`).", "aliases": ["-d"]})
    data_dir: Optional[Path] = data_dir_field()


@config_command(data_app, "stats", DataStatsCommand)
def data_stats(command: DataStatsCommand) -> None:
    """Per-split dialogue and labelled agent-turn counts, and agent turns per strategy."""
    domain, data_dir = command.domain, command.data_dir
    dom = plugin_registry.get_domain(domain)
    data = domain_data(dom, data_dir)  # the resolution and wording evaluate, rl and sft use
    root = data.data_dir
    console.print(f"[bold]{dom.name}[/] from {data.source}", highlight=False, soft_wrap=True)
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


@dataclass
class DataConvertCommand:
    """The settings of ``ppdpp data convert NAME FILE``."""

    name: str = field(metadata={"help": "Converter name (listed by `ppdpp plugins`), e.g. craigslistbargain.",
                                "positional": True})
    file: Path = field(metadata={"help": "The dataset's original release file.", "positional": True})
    out: Optional[Path] = field(default=None, metadata={
        "help": "JSON-lines file to write (none: FILE with the suffix .jsonl).", "aliases": ["-o"]})
    skip_bad_rows: bool = field(default=False, metadata={
        "help": "Skip a bad example (and count it) instead of stopping at it."})


@config_command(data_app, "convert", DataConvertCommand)
def data_convert(command: DataConvertCommand) -> None:
    """Convert a dataset's original release into a domain's JSON-lines cases (docs/data.md)."""
    name, file, out, skip_bad_rows = command.name, command.file, command.out, command.skip_bad_rows
    converter = plugin_registry.get_converter(name)
    target = out if out is not None else file.with_suffix(".jsonl")
    if target.resolve() == file.resolve():
        fail(f"--out {target} is the input file; name another output file")
    result = converter.convert(file, skip_bad_rows=skip_bad_rows)
    for message in result.skipped[:SHOWN_SKIPS]:
        console.print(f"[yellow]skipped[/] {message}", highlight=False, soft_wrap=True)
    if len(result.skipped) > SHOWN_SKIPS:
        console.print(f"[yellow]skipped[/] {len(result.skipped) - SHOWN_SKIPS} more bad examples")
    if not result.rows:
        fail(f"{file}: no example converted ({len(result.skipped)} skipped as bad); nothing written")
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows)
    write_atomic(target, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
    console.print(f"converted {len(result.rows):,} examples to {target} ({len(result.skipped):,} skipped as bad)",
                  highlight=False, soft_wrap=True)
    for line in next_steps(converter.domain, target, len(result.rows)):
        console.print(line, highlight=False, soft_wrap=True)


def next_steps(domain: str, cases: Path, n: int) -> list[str]:
    """CPU-sized commands to try converted cases with: the domain's programmatic roles (no LLM) on 20 cases,
    then a small LLM on 5 short dialogues, after a --dry-run that counts the calls."""
    sims = plugin_registry.simulators(domain)
    agents = [s.name for s in sims if s.role == "agent"]
    users = [s.name for s in sims if s.role == "user"]
    base = f"ppdpp evaluate --domain {domain} --cases-file {cases}"
    lines = [f"next ({n:,} cases; try a few first):"]
    if agents and users:
        lines.append(f"  {base} --agent {agents[0]} --user {users[0]} --critic oracle --cases 20   "
                     "# no LLM: seconds on a CPU")
    lines.append(f"  {base} --agent local/smollm2 --cases 5 --max-turns 4 --dry-run   # counts the LLM calls; "
                 "drop --dry-run to play them")
    return lines
