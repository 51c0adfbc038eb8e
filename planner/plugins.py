"""The one plugin manager: loads built-in and third-party plugins from the ``ppdpp`` entry-point group.

Which plugins load can be restricted with the ``PPDPP_PLUGINS`` environment variable (or the CLI's
``--plugins`` option): a comma-separated list of entry-point names, e.g. ``PPDPP_PLUGINS=negotiation,backends``.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from . import hookspecs
from .domain import Domain, DomainError

if TYPE_CHECKING:
    from .llm.base import ChatBackend

ENTRY_POINT_GROUP = "ppdpp"
PLUGINS_ENV = "PPDPP_PLUGINS"

_pm: pluggy.PluginManager | None = None
_only: set[str] | None = None
_sources: dict[str, str] = {}  # plugin name -> where it came from, for `ppdpp plugins`
_domains: tuple[frozenset[tuple[str, int]], dict[str, Domain]] | None = None  # (registered plugins, domains)


class PluginError(LookupError):
    """An unknown domain or backend, or a plugin that failed to load."""


def restrict_plugins(names: Iterable[str] | None) -> None:
    """Load only the named entry points from now on (``None`` = all); resets the plugin manager."""
    global _only, _pm
    _only = None if names is None else {n.strip() for n in names if n.strip()}
    _pm = None


def _allowed() -> set[str] | None:
    if _only is not None:
        return _only
    env = os.environ.get(PLUGINS_ENV, "").strip()
    return {n.strip() for n in env.split(",") if n.strip()} or None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        allowed = _allowed()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            pm.register(plugin, name=ep.name)
            _sources[ep.name] = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
        _pm = pm
    return _pm


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object in-process (tests, notebooks); it takes part like an installed one."""
    registered = get_plugin_manager().register(plugin, name=name)
    _sources[registered or str(name)] = "registered in-process"


def plugin_source(name: str) -> str:
    """Where plugin ``name`` came from: its distribution and version, or "registered in-process"."""
    return _sources.get(name, "unknown")


def unregister_plugin(name: str) -> None:
    get_plugin_manager().unregister(name=name)


def _collect(hook_name: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Call a ``register_*`` hook on every plugin, remembering which plugin registered what."""
    pm = get_plugin_manager()
    found: list[tuple[str, tuple[Any, ...]]] = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        impl.function(*[(lambda *args, _n=impl.plugin_name: found.append((_n, args)))])
    return found


def domains() -> dict[str, Domain]:
    """All registered domains by name. The hook runs once per set of registered plugins, so every caller
    gets the same domain objects until a plugin is registered or unregistered."""
    global _domains
    key = frozenset((name, id(plugin)) for name, plugin in get_plugin_manager().list_name_plugin())
    if _domains is None or _domains[0] != key:
        out: dict[str, Domain] = {}
        for plugin_name, (domain,) in _collect("register_domains"):
            if not isinstance(domain, Domain):
                raise PluginError(f"plugin {plugin_name!r} registered {domain!r}, which is not a ppdpp Domain")
            out[domain.name] = domain
        _domains = (key, out)
    return dict(_domains[1])


def domain_owners() -> dict[str, str]:
    """Domain name -> the plugin that registered it."""
    return {args[0].name: plugin for plugin, args in _collect("register_domains")}


def get_domain(name: str) -> Domain:
    """The domain called ``name``, or an error that lists the known ones."""
    known = domains()
    if name not in known:
        raise DomainError(
            f"unknown domain {name!r}; known domains: {', '.join(sorted(known)) or '(none loaded)'}"
            f" (is its plugin installed, and not excluded by {PLUGINS_ENV}?)"
        )
    return known[name]


def backend_factories() -> dict[str, Callable[..., "ChatBackend"]]:
    """Model-string prefix -> backend factory."""
    return {prefix: factory for _plugin, (prefix, factory) in _collect("register_backends")}


def get_backend(model: str, **options: Any) -> "ChatBackend":
    """Open the chat backend for ``model``: the longest registered prefix of the model string wins."""
    factories = backend_factories()
    matches = [p for p in factories if model.startswith(p)]
    if not matches:
        raise PluginError(
            f"no LLM backend accepts model {model!r}; registered prefixes: "
            f"{', '.join(repr(p) for p in sorted(factories)) or '(none)'}"
        )
    return factories[max(matches, key=len)](model, **options)
