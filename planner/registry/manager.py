"""The plugin manager: loads ppdpp's built-in plugins and third-party ones from the ``ppdpp`` entry-point group.

ppdpp's own plugins (the entry points of the ``ppdpp`` distribution) always load. Which THIRD-PARTY plugins
load can be restricted with the ``PPDPP_PLUGINS`` environment variable (or the CLI's ``--plugins`` option): a
comma-separated list of entry-point names, e.g. ``PPDPP_PLUGINS=charity``; a name that no installed plugin has
is an error. This mirrors simonw/llm, where ``LLM_LOAD_PLUGINS`` never unloads the default plugins.

A third-party plugin that fails to import does not break the commands that do not need it (as in simonw/llm):
it is left out with a one-line warning on the ``ppdpp.plugins`` logger, ``ppdpp plugins`` lists it with its
error (:meth:`PluginRegistry.failed`), and an unknown domain names it. One selected by name in
``PPDPP_PLUGINS`` / ``--plugins`` is asked for, so its failure is an error.

:class:`PluginRegistry` is the manager as an object (tests and embedders may build their own); the module
functions (:func:`get_domain`, :func:`get_backend`, ...) act on the process-wide one, :data:`REGISTRY`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from ppdpp.planner.core.domain import Domain, DomainError
from ppdpp.planner.registry import hookspecs

if TYPE_CHECKING:
    from ppdpp.planner.core.simulation import Role, SimulatorSpec
    from ppdpp.planner.core.plan import PolicySpec
    from ppdpp.planner.llm.base import ChatBackend

ENTRY_POINT_GROUP = "ppdpp"
PLUGINS_ENV = "PPDPP_PLUGINS"
BUILT_IN_DISTRIBUTION = "ppdpp"

log = logging.getLogger("ppdpp.plugins")


class PluginError(LookupError):
    """An unknown domain, backend or plugin name, a plugin that failed to load, or two plugins that claim
    the same domain name."""


@dataclass(frozen=True)
class Conversion:
    """What a data converter made of a file: the domain's JSON-ready rows, and one message (naming the file,
    example and field) per bad example skipped under ``skip_bad_rows``."""

    rows: list[dict[str, Any]]
    skipped: list[str]


@dataclass(frozen=True)
class DataConverter:
    """A converter from a dataset's original release to ``domain``'s case format, registered with the
    ``register_data_converters`` hook and run by ``ppdpp data convert NAME FILE``. ``convert(path,
    skip_bad_rows=False)`` raises :class:`DomainError` on the first bad example unless told to skip it."""

    name: str
    domain: str
    convert: Callable[..., Conversion]
    description: str = ""


def _names(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    return {n.strip() for n in items if n.strip()} or None


def is_built_in(ep: EntryPoint) -> bool:
    """True for the entry points ppdpp itself declares."""
    return ep.dist is not None and ep.dist.name == BUILT_IN_DISTRIBUTION


class PluginRegistry:
    """One pluggy manager, built on first use from the installed entry points, and what its plugins register."""

    def __init__(self, only: Iterable[str] | None = None) -> None:
        self._only = _names(only)
        self._pm: pluggy.PluginManager | None = None
        self._sources: dict[str, str] = {}  # plugin name -> where it came from, for `ppdpp plugins`
        self._failed: dict[str, tuple[str, str]] = {}  # plugin name -> (where it came from, why it did not load)
        self._domains: tuple[frozenset[tuple[str, int]], dict[str, Domain], dict[str, str]] | None = None

    # ---- loading ------------------------------------------------------------------------------------------
    def restrict(self, names: Iterable[str] | None) -> None:
        """Load only the named third-party entry points from now on (``None`` = all); rebuilds the manager."""
        self._only = _names(names)
        self._pm = None
        self._domains = None
        self._failed = {}

    def _allowed(self) -> set[str] | None:
        return self._only if self._only is not None else _names(os.environ.get(PLUGINS_ENV, ""))

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy manager, built on first use."""
        if self._pm is None:
            self._pm = self._build()
        return self._pm

    def _build(self) -> pluggy.PluginManager:
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        allowed = self._allowed()
        found = list(entry_points(group=ENTRY_POINT_GROUP))
        if allowed is not None:
            unknown = sorted(allowed - {ep.name for ep in found})
            if unknown:
                third_party = sorted({ep.name for ep in found if not is_built_in(ep)})
                raise PluginError(f"unknown plugin(s) {', '.join(unknown)} in --plugins / ${PLUGINS_ENV}; "
                                  f"installed third-party plugins: {', '.join(third_party) or '(none)'}")
        for ep in found:
            if not is_built_in(ep) and allowed is not None and ep.name not in allowed:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                error = f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
                if is_built_in(ep) or (allowed is not None and ep.name in allowed):
                    raise PluginError(error) from exc
                self._failed[ep.name] = (f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value,
                                         f"{type(exc).__name__}: {exc}")
                log.warning("warning: %s; left out (`ppdpp plugins` lists it)", error)
                continue
            pm.register(plugin, name=ep.name)
            self._sources[ep.name] = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
        return pm

    def failed(self) -> dict[str, tuple[str, str]]:
        """The third-party plugins that failed to load: name -> (where it came from, the error)."""
        self.pm  # noqa: B018  (loading is what finds them)
        return dict(self._failed)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object in-process (tests, notebooks); it takes part like an installed one."""
        registered = self.pm.register(plugin, name=name) or str(name)
        self._sources[registered] = "registered in-process"
        return registered

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)

    def source(self, name: str) -> str:
        """Where plugin ``name`` came from: its distribution and version, or "registered in-process"."""
        return self._sources.get(name, "unknown")

    # ---- what plugins register ----------------------------------------------------------------------------
    def collect(self, hook_name: str) -> list[tuple[str, tuple[Any, ...]]]:
        """Call a ``register_*`` hook on every plugin, remembering which plugin registered what."""
        found: list[tuple[str, tuple[Any, ...]]] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            impl.function(*[(lambda *args, _n=impl.plugin_name: found.append((_n, args)))])
        return found

    def _domain_table(self) -> tuple[dict[str, Domain], dict[str, str]]:
        key = frozenset((name, id(plugin)) for name, plugin in self.pm.list_name_plugin())
        if self._domains is None or self._domains[0] != key:
            out: dict[str, Domain] = {}
            owners: dict[str, str] = {}
            for plugin_name, (domain,) in self.collect("register_domains"):
                if not isinstance(domain, Domain):
                    raise PluginError(f"plugin {plugin_name!r} registered {domain!r}, which is not a ppdpp Domain")
                if domain.name in owners and owners[domain.name] != plugin_name:
                    raise PluginError(f"domain {domain.name!r} is registered by two plugins, {owners[domain.name]!r} "
                                      f"and {plugin_name!r}; uninstall one or exclude it with --plugins / "
                                      f"${PLUGINS_ENV}")
                out[domain.name] = domain
                owners[domain.name] = plugin_name
            self._domains = (key, out, owners)
        return self._domains[1], self._domains[2]

    def domains(self) -> dict[str, Domain]:
        """All registered domains by name. The hook runs once per set of registered plugins, so every caller
        gets the same domain objects until a plugin is registered or unregistered."""
        return dict(self._domain_table()[0])

    def domain_owners(self) -> dict[str, str]:
        """Domain name -> the plugin that registered it."""
        return dict(self._domain_table()[1])

    def get_domain(self, name: str) -> Domain:
        """The domain called ``name``, or an error that lists the known ones."""
        known = self.domains()
        if name not in known:
            failed = "".join(f"; plugin {p!r} failed to load ({error})" for p, (_, error) in self.failed().items())
            raise DomainError(
                f"unknown domain {name!r}; known domains: {', '.join(sorted(known)) or '(none loaded)'}"
                f" (is its plugin installed, and not excluded by {PLUGINS_ENV}?){failed}"
            )
        return known[name]

    def simulators(self, domain: str | None = None) -> list["SimulatorSpec"]:
        """Every registered programmatic role (of ``domain``, when given), in registration order."""
        from ppdpp.planner.core.simulation import SimulatorSpec

        specs: list[SimulatorSpec] = []
        seen: dict[tuple[str, str, str], str] = {}
        for plugin_name, (spec,) in self.collect("register_simulators"):
            if not isinstance(spec, SimulatorSpec):
                raise PluginError(f"plugin {plugin_name!r} registered {spec!r}, which is not a SimulatorSpec")
            key = (spec.domain, spec.role, spec.name)
            if key in seen:
                raise PluginError(f"{spec.role} simulator {spec.name!r} of domain {spec.domain!r} is registered by "
                                  f"two plugins, {seen[key]!r} and {plugin_name!r}")
            seen[key] = plugin_name
            if domain is None or spec.domain == domain:
                specs.append(spec)
        return specs

    def get_simulator(self, domain: str, role: "Role", name: str) -> "SimulatorSpec | None":
        """The ``role`` simulator called ``name`` for ``domain``, or ``None`` when there is none (so the caller
        can treat ``name`` as a model string instead)."""
        return next((s for s in self.simulators(domain) if s.role == role and s.name == name), None)

    def backend_factories(self) -> dict[str, Any]:
        """Model-string prefix -> what a plugin registered for it: a ``ChatBackend`` subclass, a
        ``"module:Class"`` reference to one (imported when a model of that prefix is used), or a factory."""
        return {prefix: factory for _plugin, (prefix, factory) in self.collect("register_backends")}

    def backend_entry(self, model: str) -> Callable[..., "ChatBackend"]:
        """The backend class (or factory) that serves ``model``: the longest registered prefix's, a
        ``"module:Class"`` reference imported now (as an entry point is)."""
        factories = self.backend_factories()
        entry = factories[self._longest_prefix(factories, model)]
        return EntryPoint(name=model, value=entry, group="ppdpp.backends").load() if isinstance(entry, str) else entry

    def backend_prefix(self, model: str) -> str:
        """The registered model-string prefix that serves ``model``: the longest one it starts with (the one
        :meth:`get_backend` opens it with), or a :class:`PluginError` listing the prefixes."""
        return self._longest_prefix(self.backend_factories(), model)

    @staticmethod
    def _longest_prefix(factories: dict[str, Any], model: str) -> str:
        matches = [p for p in factories if model.startswith(p)]
        if not matches:
            raise PluginError(
                f"no LLM backend accepts model {model!r}; registered prefixes: "
                f"{', '.join(repr(p) for p in sorted(factories)) or '(none)'}"
            )
        return max(matches, key=len)

    def get_backend(self, model: str, **options: Any) -> "ChatBackend":
        """Open the chat backend for ``model``: the longest registered prefix of the model string wins."""
        return self.backend_entry(model)(model, **options)

    def _unique_by_name(self, hook_name: str, kind: type[Any], what: str) -> dict[str, Any]:
        """What every plugin registered through ``hook_name`` by ``.name``, in registration order; a value that
        is not a ``kind`` or a name registered twice is a :class:`PluginError` naming the plugins."""
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for plugin_name, (item,) in self.collect(hook_name):
            if not isinstance(item, kind):
                raise PluginError(f"plugin {plugin_name!r} registered {item!r}, which is not a {kind.__name__}")
            if item.name in owners:
                raise PluginError(f"{what} {item.name!r} is registered by two plugins, {owners[item.name]!r} "
                                  f"and {plugin_name!r}")
            found[item.name], owners[item.name] = item, plugin_name
        return found

    def converters(self) -> dict[str, DataConverter]:
        """Every registered data converter by name."""
        return self._unique_by_name("register_data_converters", DataConverter, "data converter")

    def get_converter(self, name: str) -> DataConverter:
        """The data converter called ``name``, or an error that lists the known ones."""
        known = self.converters()
        if name not in known:
            raise PluginError(f"unknown data converter {name!r}; known converters: "
                              f"{', '.join(sorted(known)) or '(none loaded)'}")
        return known[name]

    def policies(self, domain: str | None = None) -> dict[str, "PolicySpec"]:
        """Every registered policy by name (those offered for ``domain``, when given), in registration order."""
        from ppdpp.planner.core.plan import PolicySpec

        specs = self._unique_by_name("register_policies", PolicySpec, "policy")
        return {name: spec for name, spec in specs.items()
                if domain is None or not spec.domains or domain in spec.domains}

    def get_policy(self, name: str, domain: str | None = None) -> "PolicySpec":
        """The policy called ``name`` (offered for ``domain``, when given), or an error listing the known ones."""
        known = self.policies(domain)
        if name not in known:
            where = f" for domain {domain!r}" if domain else ""
            raise PluginError(f"unknown policy {name!r}{where}; known policies: "
                              f"{', '.join(known) or '(none loaded)'}")
        return known[name]


REGISTRY = PluginRegistry()
"""The process-wide registry; the names below are its bound methods, the documented functional API."""

restrict_plugins = REGISTRY.restrict
register_plugin = REGISTRY.register
unregister_plugin = REGISTRY.unregister
plugin_source = REGISTRY.source
domains = REGISTRY.domains
domain_owners = REGISTRY.domain_owners
get_domain = REGISTRY.get_domain
simulators = REGISTRY.simulators
get_simulator = REGISTRY.get_simulator
backend_factories = REGISTRY.backend_factories
backend_prefix = REGISTRY.backend_prefix
backend_entry = REGISTRY.backend_entry
get_backend = REGISTRY.get_backend
converters = REGISTRY.converters
get_converter = REGISTRY.get_converter
policies = REGISTRY.policies
get_policy = REGISTRY.get_policy
failed_plugins = REGISTRY.failed


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager, built on first use."""
    return REGISTRY.pm
