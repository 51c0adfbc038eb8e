"""The options of ``ppdpp`` itself (``--plugins``, ``--debug``) and the help of every command group come from the one
parser family (planner/cli/options.py), as every command's do: Typer only dispatches. The root options are walked
by the same checks as every command's (tests/test_cli_options.py), work from the command line and from ``--config``,
and the root's ``--help`` has the layout of every command's."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ppdpp.planner.cli import app, main
from ppdpp.planner.cli.app import COMMAND_PARSERS, RootSettings, state
from ppdpp.planner.cli.groups import CommandGroup
from ppdpp.planner.cli.options import ConfigParser

sys.path.insert(0, str(Path(__file__).parent))
import test_cli_options as walked  # noqa: E402  (module import: its tests are not collected twice)
from test_careless_cli import run_main  # noqa: E402

ROOT = typer.main.get_command(app)


def groups(group: Any = ROOT, path: str = "ppdpp") -> dict[str, Any]:
    """Every command group of the app (``ppdpp``, ``ppdpp data``, ...), by its command path."""
    out = {path: group}
    for name, command in group.commands.items():
        if isinstance(command, CommandGroup):
            out.update(groups(command, f"{path} {name}"))
    return out


def group_parser(path: str) -> ConfigParser:
    """The parser ``ppdpp ... --help`` of the group at ``path`` shows (its context as a real run makes it)."""
    ctx = None
    for word, group in zip(path.split(), _chain(path)):
        ctx = typer.Context(group, info_name=word, parent=ctx)
    return _chain(path)[-1].options_parser(ctx)


def _chain(path: str) -> list[Any]:
    chain = [ROOT]
    for word in path.split()[1:]:
        chain.append(chain[-1].commands[word])
    return chain


def root_parser() -> ConfigParser:
    return group_parser("ppdpp")


@pytest.mark.parametrize("check", [walked.test_every_option_has_help_and_is_reachable_from_config,
                                   walked.test_each_bound_is_written_once_and_checked_in_one_place])
def test_the_root_options_are_walked_like_every_commands(check, tmp_path, monkeypatch):
    monkeypatch.setitem(COMMAND_PARSERS, "ppdpp", root_parser)
    monkeypatch.setitem(walked.VALUES, "plugins", ("a", "b"))  # parsing never loads them
    assert [leaf.option for leaf in root_parser().leaves.values()] == ["--plugins", "--debug"]
    check("ppdpp", tmp_path)


def test_no_option_is_declared_in_typer():
    """Typer's commands and groups carry no parameter of their own (click's ``--help`` of a group at most)."""
    def walk(command: Any, path: str) -> None:
        declared = [p.name for p in command.params if p.name != "help"]
        assert not declared, f"{path}: options declared in Typer: {declared}"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(ROOT, "ppdpp")
    planner = Path(__file__).resolve().parents[1] / "planner"
    source = "\n".join(p.read_text(encoding="utf-8") for p in planner.rglob("*.py"))
    assert not re.search(r"typer\.(Option|Argument)\(", source)


@pytest.mark.parametrize("path", sorted(groups()))
def test_every_help_has_the_one_layout(path, capsys):
    """``ppdpp --help``, ``ppdpp data --help`` ... look like ``ppdpp data stats --help``: argparse's usage and
    ``options:`` sections, and each command listed with its help."""
    code, text = run_main([*path.split()[1:], "--help"], capsys)
    command = COMMAND_PARSERS["ppdpp data stats"]().format_help()
    assert code == 0, text
    assert text.startswith(f"usage: {path} [OPTIONS] COMMAND ...\n"), text
    assert command.startswith("usage: ppdpp data stats [OPTIONS]\n"), command
    for layout in ("\noptions:\n  -h, --help ", "Show this and exit."):
        assert layout in text and layout in command, (layout, text)
    assert "--install-completion" not in text and "Usage:" not in text, text
    listed = re.findall(r"^  (\S+)  ", text.split("\ncommands:\n")[1], flags=re.MULTILINE)
    assert listed == list(groups()[path].commands), text
    assert text.strip() == group_parser(path).format_help().strip(), "--help prints the group's parser's help"


def test_a_group_alone_shows_its_help(capsys):
    code, text = run_main(["data"], capsys)
    assert code == 2 and text.startswith("usage: ppdpp data [OPTIONS] COMMAND ...\n"), text


def test_root_options_come_before_the_command_and_leave_the_commands_own(tmp_path):
    parser = root_parser()
    args = ["--plugins", "a,b", "--debug", "data", "stats", "--config", "x.yaml", "--debug"]
    assert parser.split_leading(args) == (args[:3], args[3:])
    assert parser.split_leading(["--plugins=a", "plugins"]) == (["--plugins=a"], ["plugins"])
    assert parser.split_leading(["--bogus", "plugins"]) == (["--bogus"], ["plugins"])
    assert parser.parse(["--plugins", "a, b", "--no-debug"]) == (RootSettings(plugins=("a", "b"), debug=False),)
    stats = tmp_path / "stats.yaml"
    stats.write_text("domain: nosuch\n", encoding="utf-8")  # the command's --config, not the root's
    result = CliRunner().invoke(app, ["data", "stats", "--config", str(stats)])
    assert result.exit_code != 0 and "nosuch" in str(result.exception), result.output


@pytest.mark.parametrize("argv, line", [
    (["--plugins"], "error: ppdpp: argument --plugins: expected one argument"),
    (["--bogus", "plugins"], "error: ppdpp: unrecognized arguments: --bogus"),
    (["--debug", "maybe", "plugins"], "error: ppdpp: No such command 'maybe'. (see ppdpp --help)"),
])
def test_a_bad_root_option_is_one_line_and_exit_2(argv, line, capsys):
    code, text = run_main(argv, capsys)
    assert code == 2 and text.strip() == line, text


def test_the_root_options_work_from_the_command_line_and_from_config(tmp_path, capsys):
    root = tmp_path / "root.yaml"
    root.write_text("plugins: [nosuch]\ndebug: false\n", encoding="utf-8")
    for argv in (["--plugins", "nosuch", "plugins"], ["--config", str(root), "plugins"]):
        code, text = run_main(argv, capsys)
        assert code == 2 and "unknown plugin(s) nosuch in --plugins" in text, (argv, text)
    root.write_text("debug: true\n", encoding="utf-8")
    with pytest.raises(Exception, match="nosuch"):  # the traceback's error itself, not the one line
        main(["--config", str(root), "data", "stats", "-d", "nosuch"])
    assert state["debug"] is True
    code, text = run_main(["--config", str(root), "--no-debug", "data", "stats", "-d", "nosuch"], capsys)
    assert code == 2 and text.startswith("error: unknown domain 'nosuch'"), "the command line wins over the file"


def test_starting_the_cli_imports_no_model_or_maths_library():
    """``ppdpp --help``, a refused option and every subprocess a test or a user starts pay for what the CLI imports
    before it acts: the heavy libraries (torch, transformers, scikit-learn, scipy, litellm; ~2 s together) load
    only in the commands that use them, not for the CLI, nor for the registries of domains and policies that
    option checks read."""
    import subprocess

    heavy = ("torch", "transformers", "sklearn", "scipy", "litellm", "pandas", "sentence_transformers")
    probe = ("import sys\nfrom ppdpp.planner.cli import main\nfrom ppdpp.planner.registry import manager\n"
             "manager.policies(); manager.domains()\n"
             f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "", f"importing the CLI and its registries loaded {loaded.stdout.strip()}"
