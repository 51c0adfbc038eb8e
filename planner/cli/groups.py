"""The command groups of ``ppdpp`` (the app itself, ``data``, ``models``, ``planner``, ``planner export``): Typer
only dispatches to the command; a group's own options (``ppdpp --plugins``, ``--debug``) are parsed, and its help
is laid out, by the one parser family (:class:`~ppdpp.planner.cli.options.ConfigParser`), as every command's."""

from __future__ import annotations

from typing import Any, ClassVar

import typer
from typer.core import TyperGroup

from ppdpp.planner.cli.options import ConfigParser, parse_or_exit

SHORT_HELP = 120  # characters of a command's help that a group's list shows (its first sentence, as a rule)


class CommandGroup(TyperGroup):
    """A group of commands whose leading options come from the :attr:`settings` dataclasses (none but
    ``--help`` below the root) and whose ``--help`` looks like every command's: usage, options, commands."""

    settings: ClassVar[tuple[type, ...]] = ()

    def options_parser(self, ctx: typer.Context) -> ConfigParser:
        """The group's parser: its settings' options (and ``--config`` where it has settings), its commands."""
        commands = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                commands.append((name, command.get_short_help_str(limit=SHORT_HELP)))
        return ConfigParser(ctx.command_path, self.settings, description=self.help or "",
                            config=bool(self.settings), commands=commands)

    def get_help(self, ctx: Any) -> str:
        return self.options_parser(ctx).format_help().rstrip("\n")

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse the options before the command word with :meth:`options_parser`; the rest goes to Typer."""
        parser = self.options_parser(ctx)
        own, rest = parser.split_leading(args)
        ctx.meta[_key(ctx)] = parse_or_exit(parser, own)
        return super().parse_args(ctx, rest)

    @staticmethod
    def parsed(ctx: Any) -> tuple[Any, ...]:
        """The instances of :attr:`settings` that :meth:`parse_args` made for this group's ``ctx``."""
        return tuple(ctx.meta[_key(ctx)])


def _key(ctx: Any) -> str:
    return f"ppdpp.settings:{ctx.command_path}"  # ctx.meta is shared by a command's contexts
