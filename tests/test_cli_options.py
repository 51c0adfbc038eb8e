"""One command-line system: every ``ppdpp`` command's options are generated from config dataclasses by one parser
(planner/cli/options.py). Walking every command of the app, each option has help text, is reachable from
``--config FILE`` as from the command line, and each bound is written once (field metadata) and checked in one
place (planner/core/bounds.py): the command line, the config file and the dataclass itself refuse a value out of
bounds with the same words, and no ``__post_init__`` repeats the comparison."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import typer

from ppdpp.planner.cli import app
from ppdpp.planner.cli.app import COMMAND_PARSERS
from ppdpp.planner.cli.options import ConfigParser, Leaf, UsageError
from ppdpp.planner.core.bounds import optional_inner, out_of_bounds

sys.path.insert(0, str(Path(__file__).parent))
from helpers import option_args, other_value  # noqa: E402

# valid values where a field's type alone does not say one (the others come from the type and the default)
VALUES: dict[str, Any] = {
    "domain": "tutoring", "model": "local/smollm2", "upstream": "local/smollm2", "agent": "local/smollm2",
    "name": "craigslistbargain", "repo_id": "org/name", "user_personas": "test", "preset": "ppdpp-paper",
    "planner_policy": "planner", "policy": "planner", "train_splits": ("train", "valid"),
    "baselines": ("random",), "report_to": ("tensorboard",), "price_per_1k_tokens": (0.5, 1.5),
    "seeds": (0, 2), "track": "llm", "user_checkpoints": ("rule-based",),
}


def command_paths(group: Any, prefix: str = "ppdpp") -> list[str]:
    """Every runnable command below ``group``, as ``ppdpp data stats``."""
    out = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        out += command_paths(command, path) if hasattr(command, "commands") else [path]
    return out


ALL = sorted(COMMAND_PARSERS)


def test_every_command_has_a_generated_parser():
    assert sorted(command_paths(typer.main.get_command(app))) == ALL


def _other(leaf: Leaf, folder: Path) -> Any:
    """A valid value of ``leaf`` that differs from its default."""
    return VALUES[leaf.name] if leaf.name in VALUES else other_value(leaf, folder)


def _required(parser: ConfigParser, folder: Path) -> dict[str, Any]:
    """The options a command needs, plus those whose command-line default is resolved by the command (``auto``)."""
    return {leaf.name: _other(leaf, folder) for leaf in parser.leaves.values()
            if leaf.default is dataclasses.MISSING or "cli_default" in leaf.field.metadata}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _get(instances: tuple, path: tuple[str, ...]) -> Any:
    for instance in instances:
        names = {f.name for f in dataclasses.fields(instance)}
        if path[0] in names:
            value = getattr(instance, path[0])
            return value if len(path) == 1 else _get((value,), path[1:])
    raise AssertionError(f"{path} is in none of {instances}")


def _args(parser: ConfigParser, values: dict[str, Any]) -> list[str]:
    leaves = sorted((parser.leaves[name] for name in values), key=lambda leaf: not leaf.positional)
    return [a for leaf in leaves for a in option_args(leaf, values[leaf.name])]


def _file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({k: _jsonable(v) for k, v in values.items()}), encoding="utf-8")
    return path


def _violation(bounds: dict[str, float], integer: bool) -> float:
    """A value just outside ``bounds``."""
    if "min" in bounds:
        return bounds["min"] - 1
    if "gt" in bounds:
        return bounds["gt"] if integer else bounds["gt"] - 0.5
    if "max" in bounds:
        return bounds["max"] + 1
    return bounds["lt"]


@pytest.mark.parametrize("command", ALL)
def test_every_option_has_help_and_is_reachable_from_config(command, tmp_path):
    parser = COMMAND_PARSERS[command]()
    helped = parser.format_help()
    assert "site-packages" not in helped and sys.prefix not in helped and "<bool>" not in helped, helped
    assert "--config FILE" in helped
    required = _required(parser, tmp_path)
    for leaf in parser.leaves.values():
        assert leaf.field.metadata.get("help", "").strip(), f"{command} {leaf.shown}: no help text"
        assert leaf.shown in helped, f"{command} --help does not list {leaf.shown}"
        value = _other(leaf, tmp_path)
        settings = {**required, leaf.name: value}
        from_file = parser.parse(["--config", str(_file(tmp_path, settings))])
        assert _get(from_file, leaf.path) == value, f"{command}: {leaf.name} in --config did not reach {leaf.path}"
        from_cli = parser.parse(_args(parser, settings))
        assert from_cli == from_file, f"{command}: {leaf.shown} on the command line differs from the file"
        if leaf.positional:  # arguments fill in order: one alone is the first
            continue
        overridden = parser.parse(["--config", str(_file(tmp_path, required)), *_args(parser, {leaf.name: value})])
        assert _get(overridden, leaf.path) == value, f"{command}: {leaf.shown} did not override --config"


@pytest.mark.parametrize("command", ALL)
def test_each_bound_is_written_once_and_checked_in_one_place(command, tmp_path):
    parser = COMMAND_PARSERS[command]()
    required = _required(parser, tmp_path)
    for leaf in (leaf for leaf in parser.leaves.values() if leaf.bounds):
        hint, _ = optional_inner(leaf.hint)
        hint = typing.get_args(hint)[0] if typing.get_origin(hint) in (tuple, list) else hint
        bad = _violation(leaf.bounds, hint is int)
        bad = int(bad) if hint is int else float(bad)
        problem = out_of_bounds(bad, leaf.bounds)
        assert problem, f"{leaf.path}: {bad} is inside {leaf.bounds}"
        value = (bad,) if typing.get_origin(optional_inner(leaf.hint)[0]) is tuple else bad
        with pytest.raises(UsageError) as cli:
            parser.parse(_args(parser, {**required, leaf.name: value}))
        with pytest.raises(UsageError) as file:
            parser.parse(["--config", str(_file(tmp_path, {**required, leaf.name: value}))])
        fields = {f.name: f for f in dataclasses.fields(leaf.owner)}
        kwargs = {name: _get(parser.parse(_args(parser, required)), (*leaf.path[:-1], name))
                  for name, f in fields.items() if f.init}
        with pytest.raises(ValueError) as direct:
            leaf.owner(**{**kwargs, leaf.field.name: value})
        for where, error in (("command line", cli), ("config file", file), ("dataclass", direct)):
            assert problem in str(error.value), f"{command} {leaf.shown} from the {where}: {error.value}"
        assert leaf.shown in str(cli.value) and leaf.name in str(file.value), (cli.value, file.value)
        post_init = getattr(leaf.owner, "__post_init__", None)
        source = inspect.getsource(post_init) if post_init else ""
        number = r"-?\d[\d.e]*"  # a comparison with another field (serve's max_tokens <= its limit) is no bound
        name = rf"self\.{leaf.field.name}\b"
        repeated = re.search(rf"{name}\s*[<>]=?\s*{number}|{number}\s*[<>]=?\s*{name}", source)
        assert not repeated, f"{leaf.owner.__name__}.__post_init__ repeats the bound of {leaf.field.name}"


def test_a_bound_violation_reads_the_same_from_the_command_line_and_the_file(tmp_path):
    parser = COMMAND_PARSERS["ppdpp serve"]()
    base = ["--planner", str(tmp_path), "--upstream", "local/smollm2"]
    with pytest.raises(UsageError) as cli:
        parser.parse([*base, "--limit-n", "0"])
    path = tmp_path / "serve.yaml"
    path.write_text("limits:\n  max_n: 0\n", encoding="utf-8")
    with pytest.raises(UsageError) as file:
        parser.parse([*base, "--config", str(path)])
    assert str(cli.value) == "ppdpp serve: argument --limit-n: must be at least 1, got 0"
    assert str(file.value) == f"{path}: key 'limits.max_n': must be at least 1, got 0"


def test_an_unknown_key_names_the_file_and_the_key_on_every_command(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bogus: 1\n", encoding="utf-8")
    for command in ALL:
        with pytest.raises(UsageError, match=re.escape(f"{path}: unknown key 'bogus'")):
            COMMAND_PARSERS[command]().parse(["--config", str(path)])
