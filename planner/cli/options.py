"""Command-line options generated from config dataclasses, so that each setting is defined in one place.

Every ``ppdpp`` command parses its arguments with a :class:`ConfigParser`: an ``argparse`` parser whose options
are the fields of the command's config dataclasses (``dataclasses.fields`` and their ``metadata``):

* ``metadata["help"]``: the option's help (every option has one; tests/test_cli_options.py checks);
* ``metadata["aliases"]``: more names (``-d``); ``metadata["option"]``: the option's name when it is not the
  field's (``ServerLimits.max_n`` is ``--limit-n``); ``metadata["positional"]``: an argument, not an option;
* ``metadata["min"]``, ``["max"]`` (inclusive), ``["gt"]``, ``["lt"]`` (exclusive): the range, checked by
  :mod:`ppdpp.planner.core.bounds` from the command line, from a file and in the dataclass's ``__post_init__``
  alike (``0`` is only allowed where a field documents what it means); a ``Literal[...]`` type: the choices;
* ``metadata["is_dir"]``: a path that must be an existing directory;
* ``metadata["default_text"]``: the default as help prints it where the value itself would be a machine path;
* ``metadata["env"]``: an environment variable read when neither the file nor the command line sets the option;
  ``metadata["secret"]``: its value is never printed;
* ``metadata["cli_default"]``: a value the command line uses when neither the file nor an option sets it
  (``train_splits``: ``auto``, resolved from the data by ``ppdpp sft``);
* nested dataclasses (``SFTConfig.planner``, ``RLConfig.env``, ``ServeCommand.limits``): their fields become
  options of their own; a name used twice in one command is a programming error;
* booleans as ``--flag/--no-flag``, plus extra negative names from ``metadata["negative"]`` (``--head-only``);
  ``tuple`` fields as comma-separated values (``--train-splits train,valid``), ``list`` fields repeatable
  (``--planner a --planner b``), ``none`` for an optional value;
* ``--preset NAME`` (where a command's settings have a ``preset`` field and the parser was given ``presets``):
  a named mapping of settings applied before the file and the command line, which win over it (``planner/cli/
  presets.py``);
* ``--config FILE`` (YAML, JSON or TOML by suffix), on every command: the defaults, then the file, then the
  command line. File keys are field names (or option names with ``_``), a nested dataclass as a nested mapping or
  its options at the top level; an unknown key is an error naming the file and the key;
* errors as :class:`UsageError`, one line naming the option (the commands exit 2 with it). A value a
  dataclass's ``__post_init__`` still rejects is reported with the option (or options) that caused it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import textwrap
import tomllib
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import click
import typer
import yaml

from ppdpp.planner.core.bounds import bounds_of, optional_inner, out_of_bounds

CONFIG_OPTION = "--config"
TRUE_WORDS = ("yes", "true", "t", "y", "1")
FALSE_WORDS = ("no", "false", "f", "n", "0")


class UsageError(ValueError):
    """Bad command-line or config-file input, as one line naming the option, key or file."""


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One option: the field of dataclass ``owner`` at ``path`` (field names from the top dataclass)."""

    path: tuple[str, ...]
    owner: type
    field: dataclasses.Field
    hint: Any
    default: Any  # dataclasses.MISSING for a required field

    @property
    def option(self) -> str:
        """``--max-length``, or the field's ``metadata["option"]``."""
        return self.field.metadata.get("option") or "--" + self.field.name.replace("_", "-")

    @property
    def name(self) -> str:
        """The option's value name (``max_length``, ``limit_n``): its key in the parsed values and in a flat
        config file."""
        return self.option[2:].replace("-", "_")

    @property
    def positional(self) -> bool:
        return bool(self.field.metadata.get("positional"))

    @property
    def shown(self) -> str:
        """How usage messages name it: ``--max-length``, or ``NAME`` for an argument."""
        return self.name.upper() if self.positional else self.option

    @property
    def bounds(self) -> dict[str, float]:
        """The allowed range: the field's ``min``/``max``/``gt``/``lt`` metadata."""
        return bounds_of(self.field)


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def to_bool(text: str) -> bool:
    """``yes``/``true``/``1`` and ``no``/``false``/``0`` (any case) as a bool."""
    if text.strip().lower() in TRUE_WORDS:
        return True
    if text.strip().lower() in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _base_type(hint: Any) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """How a scalar option's text becomes its value, and its choices (of a ``Literal``)."""
    inner, _ = optional_inner(hint)
    if typing.get_origin(inner) is Literal:
        choices = typing.get_args(inner)
        return type(choices[0]), choices
    if inner in (int, float, str, Path):
        return inner, None
    raise TypeError(f"no command-line type for a field of type {hint}")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The one help layout of every command: options in a column, their help beside them."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def add_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        """A ``commands:`` section: each command's name, its help beside it in the options' column."""
        self.start_section("commands")
        for name, text in commands:
            self._action_max_length = max(self._action_max_length, len(name) + self._current_indent)
            self._add_item(self._format_command, [name, text])
        self.end_section()

    def _format_command(self, name: str, text: str) -> str:
        column = min(self._action_max_length + 2, self._max_help_position)
        lines = self._split_lines(text, max(self._width - column, 11)) or [""]
        head = " " * self._current_indent + name
        first = [head.ljust(column) + lines[0]] if len(head) + 2 <= column else [head, " " * column + lines[0]]
        return "\n".join([*first, *(" " * column + line for line in lines[1:])]) + "\n"


class ConfigParser(argparse.ArgumentParser):
    """The options of one command, generated from ``dataclass_types`` (command settings, then configs)."""

    def __init__(self, prog: str, dataclass_types: Sequence[Any], *, description: str = "",
                 presets: dict[str, dict[str, Any]] | None = None, config: bool = True,
                 commands: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(prog=prog, description=description, add_help=False, formatter_class=_HelpFormatter,
                         allow_abbrev=False)
        self.dataclass_types = list(dataclass_types)
        self.presets: dict[str, dict[str, Any]] = dict(presets or {})
        self.commands = list(commands)  # a command group's: (name, help), listed after the options
        self.leaves: dict[str, Leaf] = {}
        self.by_path: dict[tuple[str, ...], Leaf] = {}
        self.converters: dict[str, Callable[[str], Any]] = {}
        self.elements: dict[str, Callable[[str], Any]] = {}  # of tuple and list fields
        self.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS, help="Show this and exit.")
        if config:  # every command's; a command group without settings has none
            self.add_argument(CONFIG_OPTION, metavar="FILE", type=Path, default=argparse.SUPPRESS,
                              help="YAML, JSON or TOML file of settings; options given here override it.")
        for dtype in self.dataclass_types:
            self._add_dataclass_arguments(dtype)
        arguments = [leaf.shown for leaf in self.leaves.values() if leaf.positional]
        self.usage = " ".join([prog, *arguments, "[OPTIONS]", *(["COMMAND ..."] if self.commands else [])])

    def format_help(self) -> str:
        """argparse's help, with a command group's ``commands:`` section after the options."""
        formatter = typing.cast(_HelpFormatter, self._get_formatter())
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        for group in self._action_groups:
            if group._group_actions:
                formatter.start_section(group.title)
                formatter.add_text(group.description)
                formatter.add_arguments(group._group_actions)
                formatter.end_section()
        if self.commands:
            formatter.add_commands(self.commands)
        formatter.add_text(self.epilog)
        return formatter.format_help()

    def split_leading(self, args: Sequence[str]) -> tuple[list[str], list[str]]:
        """``args`` cut before the first word that is neither an option nor an option's value: a command group's
        own options and the command with its arguments (``--plugins a data stats -d x`` gives ``--plugins a``
        and ``data stats -d x``). An unknown option stays on the left, where parsing names it."""
        i = 0
        while i < len(args) and args[i].startswith("-") and args[i] != "--":
            action = self._option_string_actions.get(args[i])
            i += 2 if action is not None and action.nargs != 0 else 1
        return list(args[:i]), list(args[i:])

    # -- building the options -----------------------------------------------------------------------------
    def _add_dataclass_arguments(self, dtype: type, path: tuple[str, ...] = (), base: Any = None) -> None:
        """Options for the fields of ``dtype``; ``base`` is the instance a nested field defaults to."""
        group = self.add_argument_group(dtype.__name__)
        for field, hint in self._fields(dtype):
            default = _field_default(field) if base is None else getattr(base, field.name)
            if _is_dataclass_type(hint):
                self._add_dataclass_arguments(hint, (*path, field.name),
                                              None if default is dataclasses.MISSING else default)
                continue
            if "cli_default" in field.metadata:
                default = field.metadata["cli_default"]
            leaf = Leaf((*path, field.name), dtype, field, hint, default)
            if leaf.name in self.leaves:
                raise TypeError(f"{self.prog}: option {leaf.option} comes from two fields "
                                f"({'.'.join(self.leaves[leaf.name].path)} and {'.'.join(leaf.path)})")
            self.leaves[leaf.name] = leaf
            self.by_path[leaf.path] = leaf
            self._add_leaf(group, leaf)

    @staticmethod
    def _fields(dtype: type) -> list[tuple[dataclasses.Field, Any]]:
        hints = typing.get_type_hints(dtype)
        return [(f, hints[f.name]) for f in dataclasses.fields(dtype) if f.init]

    @staticmethod
    def _help(leaf: Leaf) -> str:
        """The field's help, then what the default is (never a machine path: ``default_text``)."""
        meta = leaf.field.metadata
        if leaf.default is dataclasses.MISSING:
            shown = "required"
        elif meta.get("secret"):
            shown = ""
        else:
            default = leaf.default
            if isinstance(default, bool):
                default = leaf.option if default else f"--no-{leaf.option[2:]}"
            shown = f"default: {meta.get('default_text', _display(default))}"
        inner, _ = optional_inner(leaf.hint)
        notes = [shown] if shown else []
        if typing.get_origin(inner) is tuple:
            notes.insert(0, "comma-separated")
        if meta.get("env"):
            notes.append(f"env {meta['env']}")
        text = meta.get("help", "")
        return f"{text} ({'; '.join(notes)})".strip() if notes else text

    def _add_leaf(self, group: Any, leaf: Leaf) -> None:
        meta = leaf.field.metadata
        aliases = [meta["aliases"]] if isinstance(meta.get("aliases"), str) else list(meta.get("aliases", []))
        inner, optional = optional_inner(leaf.hint)
        help_text = self._help(leaf).replace("%", "%%")
        common = {"dest": leaf.name, "default": argparse.SUPPRESS}
        if inner is bool:
            group.add_argument(leaf.option, *aliases, action=argparse.BooleanOptionalAction, help=help_text,
                               **common)
            self.converters[leaf.name] = to_bool
            for negative in meta.get("negative", []):
                group.add_argument(negative, action="store_false", help=f"Same as --no-{leaf.option[2:]}.",
                                   **common)
            return
        origin = typing.get_origin(inner)
        metavar = leaf.name.upper()
        if origin in (tuple, list):
            element = typing.get_args(inner)[0]
            convert = self._scalar_converter(leaf, element, False)
            self.elements[leaf.name] = convert
            if origin is list:  # repeatable
                self.converters[leaf.name] = convert
                group.add_argument(leaf.option, *aliases, action="append", type=convert, help=help_text,
                                   metavar=metavar, **common)
                return
            joined = _tuple_converter(convert)
            self.converters[leaf.name] = joined
            group.add_argument(leaf.option, *aliases, type=joined, help=help_text, metavar=metavar, **common)
            return
        convert = self._scalar_converter(leaf, leaf.hint, optional)
        self.converters[leaf.name] = convert
        choices = _base_type(leaf.hint)[1]
        extra: dict[str, Any] = {"choices": choices} if choices else {"metavar": metavar}
        if leaf.positional:
            # default None, not SUPPRESS: argparse would convert the SUPPRESS string (parse_values drops None)
            group.add_argument(leaf.name, nargs="?", type=convert, help=help_text, default=None, **extra)
            return
        group.add_argument(leaf.option, *aliases, type=convert, help=help_text, **extra, **common)

    @staticmethod
    def _scalar_converter(leaf: Leaf, hint: Any, optional: bool) -> Callable[[str], Any]:
        base = _base_type(hint)[0]
        bounds = leaf.bounds
        is_dir = bool(leaf.field.metadata.get("is_dir"))

        def convert(text: str) -> Any:
            if optional and text.strip().lower() in ("none", "null"):
                return None
            value = base(text)
            problem = out_of_bounds(value, bounds)
            if problem:
                raise argparse.ArgumentTypeError(problem)
            if is_dir and not Path(value).is_dir():
                raise argparse.ArgumentTypeError(f"{value}: no such directory")
            return value

        convert.__name__ = getattr(base, "__name__", "value")  # argparse names it in "invalid int value"
        return convert

    # -- parsing ------------------------------------------------------------------------------------------
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def parse_values(self, args: Sequence[str]) -> dict[str, Any]:
        """The settings given in ``--config FILE`` and on the command line (which wins), by option name, plus
        the environment variable or ``cli_default`` of fields that neither sets. Raises :class:`UsageError`;
        ``--help`` prints the help and raises ``typer.Exit(0)``."""
        namespace = vars(self.parse_args(list(args)))
        if namespace.pop("help", False):
            typer.echo(self.format_help())
            raise typer.Exit(0)
        values: dict[str, Any] = {}
        config = namespace.pop("config", None)
        if config is not None:
            values.update(self.read_file(config))
        values.update({k: v for k, v in namespace.items() if not (v is None and self.leaves[k].positional)})
        values = self.with_preset(values)
        for name, leaf in self.leaves.items():
            env = leaf.field.metadata.get("env")
            if name not in values and env and os.environ.get(env):
                values[name] = self._coerce(leaf, os.environ[env], f"${env}")
            if name not in values and "cli_default" in leaf.field.metadata:
                values[name] = leaf.default
        return values

    def with_preset(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` over the settings of the preset they name (``preset``, from the command line or the
        file): the preset comes first, so every option given explicitly wins. An unknown name is an error
        listing the known ones."""
        name = values.get("preset")
        if name is None or "preset" not in self.leaves:
            return values
        if name not in self.presets:
            known = ", ".join(sorted(self.presets)) or "none"
            raise UsageError(f"{self.prog}: --preset {name}: unknown preset (known: {known})")
        return {**self.from_mapping(self.presets[name], f"preset {name}"), **values}

    def build(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The dataclass instances from option values; a missing required option or a value their
        ``__post_init__`` rejects is a :class:`UsageError`."""
        return tuple(self._build(dtype, values) for dtype in self.dataclass_types)

    def _build(self, dtype: type, values: dict[str, Any], base: Any = None, path: tuple[str, ...] = ()) -> Any:
        kwargs: dict[str, Any] = {}
        for field, hint in self._fields(dtype):
            where = (*path, field.name)
            if _is_dataclass_type(hint):
                nested = _field_default(field) if base is None else getattr(base, field.name)
                kwargs[field.name] = self._build(hint, values, None if nested is dataclasses.MISSING else nested,
                                                 where)
                continue
            leaf = self.by_path[where]
            if leaf.name in values:
                kwargs[field.name] = values[leaf.name]
            elif base is not None:
                kwargs[field.name] = getattr(base, field.name)
            elif _field_default(field) is dataclasses.MISSING:
                raise UsageError(f"{self.prog}: missing {'argument' if leaf.positional else 'option'} {leaf.shown}")
        try:
            return dtype(**kwargs)
        except ValueError as exc:
            blamed = self._blame(dtype, kwargs, values, path)
            raise UsageError(f"{self.prog}: {blamed}{exc}") from None

    def _blame(self, dtype: type, kwargs: dict[str, Any], values: dict[str, Any], path: tuple[str, ...]) -> str:
        """``"--opt VALUE: "`` for each given option whose default makes ``dtype(**kwargs)`` valid again: the
        options to blame for what its ``__post_init__`` rejected ("" when no single option is)."""
        blamed = []
        for field, _ in self._fields(dtype):
            leaf = self.by_path.get((*path, field.name))
            default = _field_default(field)
            if leaf is None or leaf.name not in values or default is dataclasses.MISSING:
                continue
            try:
                dtype(**{**kwargs, field.name: default})
            except ValueError:
                continue
            blamed.append(f"{leaf.shown} {_display(kwargs[field.name])}: ")
        return "".join(blamed)

    def parse(self, args: Sequence[str]) -> tuple[Any, ...]:
        """``build(parse_values(args))``."""
        return self.build(self.parse_values(args))

    # -- config files ---------------------------------------------------------------------------------------
    def read_file(self, path: Path) -> dict[str, Any]:
        """Option values from a YAML/JSON (``yaml.safe_load``) or TOML file, checked and converted."""
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        except OSError as exc:
            raise UsageError(f"{self.prog}: cannot read {CONFIG_OPTION} {path}: {exc.strerror}") from None
        except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: "
                             f"{' '.join(str(exc).split())}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        return self.from_mapping(data, str(path))

    def from_mapping(self, data: dict[str, Any], source: str = "config") -> dict[str, Any]:
        """Option values from a (possibly nested) mapping of field names, e.g. a run's ``config.json``."""
        values: dict[str, Any] = {}
        self._walk(data, source, (), values)
        return values

    def _walk(self, data: dict[str, Any], source: str, prefix: tuple[str, ...], values: dict[str, Any]) -> None:
        nested = {leaf.path[len(prefix)] for leaf in self.leaves.values()
                  if leaf.path[:len(prefix)] == prefix and len(leaf.path) > len(prefix) + 1}
        for key, value in data.items():
            where = ".".join((*prefix, str(key)))
            if key in nested and isinstance(value, dict):
                self._walk(value, source, (*prefix, key), values)
                continue
            leaf = self.by_path.get((*prefix, key)) if isinstance(key, str) else None
            if leaf is None and isinstance(key, str):
                leaf = self.leaves.get(key)
                leaf = leaf if leaf is not None and leaf.path[:len(prefix)] == prefix else None
            if leaf is None:
                raise UsageError(f"{source}: unknown key {where!r}")
            values[leaf.name] = self._coerce(leaf, value, f"{source}: key {where!r}")

    def _coerce(self, leaf: Leaf, value: Any, where: str) -> Any:
        inner, optional = optional_inner(leaf.hint)
        convert = self.converters[leaf.name]
        try:
            if value is None:
                if not optional:
                    raise ValueError("null is not allowed here")
                return None
            origin = typing.get_origin(inner)
            if origin in (tuple, list):
                if isinstance(value, str):
                    return convert(value) if origin is tuple else [convert(value)]
                if not isinstance(value, list):
                    raise ValueError(f"expected a list, got {value!r}")
                items = [self.elements[leaf.name](str(v)) for v in value]
                return tuple(items) if origin is tuple else items
            if isinstance(value, str):
                value = convert(value)
                if typing.get_origin(inner) is Literal and value not in typing.get_args(inner):
                    raise ValueError(f"expected {_type_name(inner)}, got {value!r}")
                return value
            if inner is bool or isinstance(value, bool):
                if not isinstance(value, bool) or inner is not bool:
                    raise ValueError(f"expected {_type_name(inner)}, got {value!r}")
                return value
            if (inner is float and isinstance(value, (int, float))) or (inner is int and isinstance(value, int)):
                problem = out_of_bounds(value, leaf.bounds)
                if problem:
                    raise ValueError(problem)
                return inner(value)
            raise ValueError(f"expected {_type_name(inner)}, got {value!r}")
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"{where}: {exc}") from None


def _tuple_converter(element: Callable[[str], Any]) -> Callable[[str], tuple]:
    def convert(text: str) -> tuple:
        return tuple(element(part.strip()) for part in text.split(",") if part.strip())

    convert.__name__ = "comma-separated list"
    return convert


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))


def _display(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return str(value)


def to_dict(instance: Any) -> dict[str, Any]:
    """A dataclass as JSON-ready data: nested dataclasses as mappings, paths as strings, tuples as lists."""
    return _jsonable(dataclasses.asdict(instance))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def resolved(*instances: Any) -> dict[str, Any]:
    """The settings of a run in one mapping (the command's fields and its configs' side by side), as
    ``config.json`` records them and ``--config`` reads them back."""
    out: dict[str, Any] = {}
    for instance in instances:
        out.update(to_dict(instance))
    return out


def parse_or_exit(parser: ConfigParser, args: Sequence[str],
                  prepare: Callable[[dict[str, Any]], None] | None = None) -> tuple[Any, ...]:
    """The instances ``args`` give with ``parser`` (``prepare`` may complete the values first); a
    :class:`UsageError` prints one line and exits 2, ``--help`` prints the help and exits 0."""
    try:
        values = parser.parse_values(args)
        if prepare is not None:
            prepare(values)
        return parser.build(values)
    except UsageError as exc:
        click.echo(f"error: {exc}")
        raise typer.Exit(2) from None


def run_parser(parser: ConfigParser, ctx: typer.Context, action: Callable[..., None],
               prepare: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Parse ``ctx.args`` with ``parser`` (:func:`parse_or_exit`) and call ``action`` with the instances."""
    action(*parse_or_exit(parser, ctx.args, prepare))


def record_resolved(path: Path, *instances: Any) -> None:
    """Add the resolved settings of ``instances`` to the run's ``config.json`` at ``path`` (what the trainer
    wrote there stays, e.g. SFT's ``data``), atomically; the file is created when there is none."""
    from ppdpp.planner.core.atomic import write_json

    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    write_json(path, {**existing, **resolved(*instances)})
