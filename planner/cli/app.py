"""The Typer app every command module adds to (it only dispatches), its console, the fields commands share and the
options of ``ppdpp`` itself (:class:`RootSettings`)."""

from __future__ import annotations

import errno
import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, ClassVar, NoReturn, Optional, TypeVar

import click

import typer
from rich.console import Console

from ppdpp.planner.cli.groups import CommandGroup
from ppdpp.planner.registry import manager as plugin_registry
from ppdpp.planner.training.runs import DATA_DIR_HELP

# set by the root options: ``main()`` shows a traceback instead of the one-line error when ``debug`` is on
state = {"debug": False}


@dataclass
class RootSettings:
    """The options of ``ppdpp`` itself, given before the command: ``ppdpp --plugins a,b --debug data stats``."""

    plugins: Optional[tuple[str, ...]] = field(default=None, metadata={
        "help": "Entry-point names of the third-party plugins to load (ppdpp's own always load).",
        "default_text": "all, or $PPDPP_PLUGINS"})  # no "env": the registry reads the variable itself
    debug: bool = field(default=False, metadata={"help": "Show the traceback of an error (else one line)."})


def apply_root(settings: RootSettings) -> None:
    """Make ``settings`` take effect for the command that follows."""
    state["debug"] = settings.debug
    if settings.plugins is not None:
        plugin_registry.restrict_plugins(settings.plugins)


class RootGroup(CommandGroup):
    """``ppdpp``: its options are :class:`RootSettings`, applied before the command runs."""

    settings: ClassVar[tuple[type, ...]] = (RootSettings,)

    def invoke(self, ctx: Any) -> Any:
        apply_root(*self.parsed(ctx))
        return super().invoke(ctx)


# Typer only picks the command: every option, the root's included, and every help come from planner/cli/options.py
app = typer.Typer(
    name="ppdpp",
    help="Plug-and-play policy planners for proactive LLM dialogue agents.",
    cls=RootGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain usage errors, as every command's
)
data_app = typer.Typer(help="Inspect the datasets behind the domains.", no_args_is_help=True, rich_markup_mode=None)
console = Console()


def describe(exc: BaseException) -> str:
    """The one line a user sees for ``exc``, with the fix where there is one."""
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"that port is in use ({exc.strerror}): pick another with --port, or --port 0 for a free one"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


def fail(error: BaseException | str, code: int = 2) -> NoReturn:
    """Print ``error`` as one line (never wrapped) and exit with ``code``."""
    click.echo(f"error: {error if isinstance(error, str) else describe(error)}")
    raise typer.Exit(code)

# every command's options come from config dataclasses (planner/cli/options.py): Typer only picks the command and
# hands the raw arguments on
CONFIG_COMMAND: dict = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True},
                        "add_help_option": False}
Action = TypeVar("Action", bound=Callable[..., Any])
COMMAND_PARSERS: dict[str, Callable[[], Any]] = {}
"""Every command's parser factory, by its command path (``ppdpp data stats``): tests/test_cli_options.py walks
them all and checks that no command is missing."""


@dataclass
class NoSettings:
    """The settings of a command that has none of its own (it still takes ``--config`` and ``--help``)."""


def data_dir_field() -> Any:
    """The ``data_dir`` field of a command's settings (``--data-dir``)."""
    return field(default=None, metadata={"help": DATA_DIR_HELP})


def threads_field(what: str = "", note: str = "") -> Any:
    """The ``threads`` field of a command's settings (``--threads``: torch CPU threads)."""
    return field(default=None, metadata={"help": f"torch CPU threads{what} (none = torch's choice{note}).",
                                         "min": 1, "max": 1024})


def config_command(group: typer.Typer, name: str, *dataclass_types: type, parser: Callable[[], Any] | None = None,
                   prepare: Callable[[dict[str, Any]], None] | None = None,
                   help: str | None = None) -> Callable[[Action], Action]:
    """Register the decorated function as command ``name`` of ``group``: its options are generated from
    ``dataclass_types`` (:class:`~ppdpp.planner.cli.options.ConfigParser`, ``--config FILE`` included; or
    ``parser()`` gives the parser, for ``sft``, ``rl`` and ``evaluate`` with their presets and policy configs), its
    docstring (or ``help``) is the help, ``prepare`` may complete the parsed values, and it is called with one
    instance of each dataclass. :data:`COMMAND_PARSERS` gets the parser."""
    def register(action: Action) -> Action:
        from ppdpp.planner.cli.options import ConfigParser, run_parser

        doc = help or inspect.getdoc(action) or ""
        path = " ".join(filter(None, ["ppdpp", _group_path(group), name]))

        @lru_cache(maxsize=1)
        def generated() -> ConfigParser:
            return ConfigParser(path, dataclass_types, description=doc)

        factory = parser or generated

        @group.command(name, help=doc, **CONFIG_COMMAND)
        def command(ctx: typer.Context) -> None:
            run_parser(factory(), ctx, action, prepare=prepare)

        COMMAND_PARSERS[path] = factory
        return action

    return register


GROUP_PATHS: dict[int, str] = {}
"""The words of each sub-app below ``ppdpp`` (``data``, ``planner export``), by ``id`` of its Typer."""


def add_group(parent: typer.Typer, child: typer.Typer, name: str) -> typer.Typer:
    """``parent.add_typer(child, name=name)``, remembering the command path for the child's commands' usage."""
    parent.add_typer(child, name=name, cls=CommandGroup)
    GROUP_PATHS[id(child)] = " ".join(filter(None, [_group_path(parent), name]))
    return child


def _group_path(group: typer.Typer) -> str:
    return GROUP_PATHS.get(id(group), "")


add_group(app, data_app, "data")

