"""Command-line options generated from config dataclasses, so that each setting is defined in one place.

:class:`ConfigParser` extends ``transformers.HfArgumentParser`` (which turns dataclass fields into argparse
options, help from ``field(metadata={"help": ...})``, short aliases from ``metadata["aliases"]``) with what the
``ppdpp`` commands need besides:

* nested dataclasses (``SFTConfig.planner``, ``RLConfig.env``): their fields become options of their own,
  named by the field (``--max-length``); a name used twice in one command is a programming error;
* ``--flag/--no-flag`` booleans, plus extra negative names from ``metadata["negative"]`` (``--head-only``);
* ``tuple`` fields as comma-separated values (``--train-splits train,valid``), ``list`` fields repeatable
  (``--planner a --planner b``), ``none`` for an optional value;
* ``--preset NAME`` (where a command's settings have a ``preset`` field and the parser was given ``presets``):
  a named mapping of settings applied before the file and the command line, which win over it (``planner/cli/
  presets.py``);
* ``--config FILE`` (YAML, JSON or TOML by suffix): the defaults, then the file, then the command line. File keys
  are field names, a nested dataclass as a nested mapping or its fields at the top level; an unknown key is
  an error naming the file and the key;
* errors as :class:`UsageError`, one line naming the option (the commands exit 2 with it).

``metadata["cli_default"]`` gives a value the command line uses when neither the file nor an option sets it
(``train_splits``: ``auto``, resolved from the data by ``ppdpp sft``).

Numeric options are range-checked at parse time, from the command line and from a file alike: ``metadata["min"]``,
``["max"]`` (inclusive), ``["gt"]``, ``["lt"]`` (exclusive) of the field, in the config dataclass itself; ``0`` is
only allowed where a field documents what it means. A value a dataclass's ``__post_init__`` still rejects is
reported with the option (or options) that caused it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, Union

import click
import typer
import yaml
from transformers.hf_argparser import HfArgumentParser, string_to_bool

CONFIG_OPTION = "--config"
BOUND_KEYS = ("min", "max", "gt", "lt")


class UsageError(ValueError):
    """Bad command-line or config-file input, as one line naming the option, key or file."""


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One option: the field ``name`` of dataclass ``owner``, at ``path`` (field names from the top dataclass)."""

    path: tuple[str, ...]
    owner: type
    field: dataclasses.Field
    hint: Any
    default: Any  # dataclasses.MISSING for a required field

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def bounds(self) -> dict[str, float]:
        """The allowed range: the field's ``min``/``max``/``gt``/``lt`` metadata."""
        return {key: self.field.metadata[key] for key in BOUND_KEYS if key in self.field.metadata}


def out_of_bounds(value: Any, bounds: dict[str, float]) -> str | None:
    """Why ``value`` is outside ``bounds`` (e.g. ``"must be at least 1, got 0"``), or ``None`` when it is not."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds:
        return None
    ok = (value >= bounds.get("min", value) and value <= bounds.get("max", value)
          and ("gt" not in bounds or value > bounds["gt"]) and ("lt" not in bounds or value < bounds["lt"]))
    if ok:
        return None
    words = {"min": "at least", "gt": "above", "max": "at most", "lt": "below"}
    allowed = " and ".join(f"{words[key]} {bounds[key]:g}" for key in BOUND_KEYS if key in bounds)
    return f"must be {allowed}, got {value:g}"


def _optional_inner(hint: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(hint, False)``."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


class _Recorder:
    """Stands in for a parser to collect what ``HfArgumentParser`` would add for a scalar field."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        self.kwargs = self.kwargs or kwargs


class ConfigParser(HfArgumentParser):
    """The options of one command, generated from ``dataclass_types`` (command settings, then configs)."""

    def __init__(self, prog: str, dataclass_types: Sequence[Any], *, description: str = "",
                 presets: dict[str, dict[str, Any]] | None = None) -> None:
        self.presets: dict[str, dict[str, Any]] = dict(presets or {})
        self.leaves: dict[str, Leaf] = {}
        self.converters: dict[str, Callable[[str], Any]] = {}
        self.elements: dict[str, Callable[[str], Any]] = {}  # of tuple and list fields
        super().__init__(list(dataclass_types), prog=prog, description=description, add_help=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
        self.add_argument("-h", "--help", action="store_true", default=argparse.SUPPRESS, help="Show this and exit.")
        self.add_argument(CONFIG_OPTION, metavar="FILE", type=Path, default=argparse.SUPPRESS,
                          help="YAML, JSON or TOML file of settings; options given here override it.")

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
            self._add_leaf(group, leaf)

    @staticmethod
    def _fields(dtype: type) -> list[tuple[dataclasses.Field, Any]]:
        hints = typing.get_type_hints(dtype)
        return [(f, hints[f.name]) for f in dataclasses.fields(dtype) if f.init]

    def _add_leaf(self, group: Any, leaf: Leaf) -> None:
        meta = leaf.field.metadata
        aliases = [meta["aliases"]] if isinstance(meta.get("aliases"), str) else list(meta.get("aliases", []))
        inner, optional = _optional_inner(leaf.hint)
        shown = "required" if leaf.default is dataclasses.MISSING else f"default: {_display(leaf.default)}"
        if typing.get_origin(inner) is tuple:
            shown = f"comma-separated; {shown}"
        help_text = f"{meta.get('help', '')} ({shown})".strip()
        common = {"dest": leaf.name, "default": argparse.SUPPRESS}
        if inner is bool:
            group.add_argument(leaf.option, *aliases, action=argparse.BooleanOptionalAction, help=help_text,
                               **common)
            self.converters[leaf.name] = string_to_bool
            for negative in meta.get("negative", []):
                group.add_argument(negative, action="store_false", help=f"Same as --no-{leaf.option[2:]}.",
                                   **common)
            return
        origin = typing.get_origin(inner)
        if origin in (tuple, list):
            element = typing.get_args(inner)[0]
            convert = self._scalar_converter(leaf, element, False)
            self.elements[leaf.name] = convert
            if origin is list:  # repeatable
                self.converters[leaf.name] = convert
                group.add_argument(leaf.option, *aliases, action="append", type=convert, help=help_text,
                                   metavar=leaf.name.upper(), **common)
                return
            joined = _tuple_converter(convert)
            self.converters[leaf.name] = joined
            group.add_argument(leaf.option, *aliases, type=joined, help=help_text,
                               metavar=leaf.name.upper(), **common)
            return
        convert = self._scalar_converter(leaf, leaf.hint, optional)
        self.converters[leaf.name] = convert
        kwargs = self._recorded(leaf, leaf.hint)
        extra = {"choices": kwargs["choices"]} if "choices" in kwargs else {}
        group.add_argument(leaf.option, *aliases, type=convert, help=help_text, metavar=_metavar(leaf, kwargs),
                           **extra, **common)

    @staticmethod
    def _recorded(leaf: Leaf, hint: Any) -> dict[str, Any]:
        """What ``HfArgumentParser`` makes of a scalar field: its ``type`` and, for a Literal/Enum, ``choices``."""
        recorder = _Recorder()
        field = copy.copy(leaf.field)
        field.type = hint
        HfArgumentParser._parse_dataclass_field(recorder, field)  # type: ignore[arg-type]  # a recorder, not a parser
        return recorder.kwargs

    def _scalar_converter(self, leaf: Leaf, hint: Any, optional: bool) -> Callable[[str], Any]:
        base = self._recorded(leaf, hint)["type"]

        bounds = leaf.bounds

        def convert(text: str) -> Any:
            if optional and text.strip().lower() in ("none", "null"):
                return None
            value = base(text)
            problem = out_of_bounds(value, bounds)
            if problem:
                raise argparse.ArgumentTypeError(problem)
            return value

        convert.__name__ = getattr(base, "__name__", "value")  # argparse names it in "invalid int value"
        return convert

    # -- parsing ------------------------------------------------------------------------------------------
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def parse_values(self, args: Sequence[str]) -> dict[str, Any]:
        """The settings given in ``--config FILE`` and on the command line (which wins), by option name, plus
        the ``cli_default`` of fields that neither sets. Raises :class:`UsageError`; ``--help`` prints the help
        and raises ``typer.Exit(0)``."""
        namespace = vars(self.parse_args(list(args)))
        if namespace.pop("help", False):
            typer.echo(self.format_help())
            raise typer.Exit(0)
        values: dict[str, Any] = {}
        config = namespace.pop("config", None)
        if config is not None:
            values.update(self.read_file(config))
        values.update(namespace)
        values = self.with_preset(values)
        for name, leaf in self.leaves.items():
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

    def _build(self, dtype: type, values: dict[str, Any], base: Any = None) -> Any:
        kwargs: dict[str, Any] = {}
        for field, hint in self._fields(dtype):
            if _is_dataclass_type(hint):
                nested = _field_default(field) if base is None else getattr(base, field.name)
                kwargs[field.name] = self._build(hint, values, None if nested is dataclasses.MISSING else nested)
            elif field.name in values:
                kwargs[field.name] = values[field.name]
            elif base is not None:
                kwargs[field.name] = getattr(base, field.name)
            elif _field_default(field) is dataclasses.MISSING:
                raise UsageError(f"{self.prog}: missing option {self.leaves[field.name].option}")
        try:
            return dtype(**kwargs)
        except ValueError as exc:
            blamed = self._blame(dtype, kwargs, values)
            raise UsageError(f"{self.prog}: {blamed}{exc}") from None

    def _blame(self, dtype: type, kwargs: dict[str, Any], values: dict[str, Any]) -> str:
        """``"--opt VALUE: "`` for each given option whose default makes ``dtype(**kwargs)`` valid again: the
        options to blame for what its ``__post_init__`` rejected ("" when no single option is)."""
        blamed = []
        for field, _ in self._fields(dtype):
            default = _field_default(field)
            if field.name not in values or default is dataclasses.MISSING or field.name not in self.leaves:
                continue
            try:
                dtype(**{**kwargs, field.name: default})
            except ValueError:
                continue
            blamed.append(f"{self.leaves[field.name].option} {_display(kwargs[field.name])}: ")
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
            leaf = self.leaves.get(key) if isinstance(key, str) else None
            if leaf is None or leaf.path[:len(prefix)] != prefix:
                raise UsageError(f"{source}: unknown key {where!r}")
            values[leaf.name] = self._coerce(leaf, value, f"{source}: key {where!r}")

    def _coerce(self, leaf: Leaf, value: Any, where: str) -> Any:
        inner, optional = _optional_inner(leaf.hint)
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


def _metavar(leaf: Leaf, kwargs: dict[str, Any]) -> str | None:
    return None if "choices" in kwargs else leaf.name.upper()


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))


def _display(value: Any) -> str:
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


def run_parser(parser: ConfigParser, ctx: typer.Context, action: Callable[..., None],
               prepare: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Parse ``ctx.args`` with ``parser`` (``prepare`` may complete the values first) and call ``action``
    with the instances; a :class:`UsageError` prints one line and exits 2."""
    try:
        values = parser.parse_values(ctx.args)
        if prepare is not None:
            prepare(values)
        instances = parser.build(values)
    except UsageError as exc:
        click.echo(f"error: {exc}")
        raise typer.Exit(2) from None
    action(*instances)


def record_resolved(path: Path, *instances: Any) -> None:
    """Add the resolved settings of ``instances`` to the run's ``config.json`` at ``path`` (what the trainer
    wrote there stays, e.g. SFT's ``data``), atomically; the file is created when there is none."""
    from ppdpp.planner.core.atomic import write_json

    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    write_json(path, {**existing, **resolved(*instances)})
