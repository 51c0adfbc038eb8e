"""Many deployments behind one model name, through litellm's ``Router``: ``router/<model_name>`` for any role.

A Router config file is litellm's own format (YAML or JSON), so one written for litellm, or the ``model_list``
and ``router_settings`` of a litellm proxy config, works as it is::

    model_list:                       # one entry per deployment; entries sharing a model_name form a group
      - model_name: smol
        litellm_params: {model: openai/smollm2, api_base: "http://10.0.0.1:8000/v1", api_key: dummy, rpm: 600}
      - model_name: smol
        litellm_params: {model: openai/smollm2, api_base: "http://10.0.0.2:8000/v1", api_key: dummy, rpm: 600}
    router_settings: {routing_strategy: simple-shuffle, num_retries: 3, allowed_fails: 1, cooldown_time: 30}

:func:`load_router_config` checks the file before anything is called: unknown top-level keys, a deployment
without ``model_name`` or ``litellm_params.model``, a value of the wrong type, an unknown ``router_settings``
key or a fallback to a group the file does not define are a :class:`RouterConfigError` naming the file and the
field (``router.yaml: model_list[1].litellm_params: missing "model"``). :class:`RouterBackend` is the
:class:`~ppdpp.planner.llm.api.APIBackend` with its request made by ``Router.acompletion``: load balancing,
retries, fallbacks, cooldowns and per-deployment ``rpm``/``tpm`` limits are the Router's, as the file sets them
(ppdpp adds no retry loop of its own on top); replies, streaming, ``n``, usage and cost are the API backend's.
API keys (``api_key`` values, ``os.environ/NAME`` references resolved by litellm) never appear in reprs, logs or
errors.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ppdpp.planner.core.domain import Message
from ppdpp.planner.llm.api import API_CONCURRENCY, APIBackend, _litellm, check_model
from ppdpp.planner.llm.base import LLMError

ROUTER_PREFIX = "router/"
TOP_LEVEL_KEYS = ("model_list", "router_settings")
PROXY_SECTIONS = ("litellm_settings", "general_settings", "environment_variables")
_NOT_SETTINGS = ("self", "model_list", "_host")  # Router arguments that router_settings may not hold
_SECRET_WORDS = ("key", "token", "secret", "password")
log = logging.getLogger("ppdpp.llm.router")


class RouterConfigError(LLMError):
    """A Router config file that cannot be used; the message names the file and the field."""


def router_config_field() -> Any:
    """The ``router_config`` setting of a command that opens models for its roles (``ppdpp evaluate``,
    ``ppdpp rl``): the file that ``router/<model_name>`` models come from."""
    return field(default=None, metadata={
        "help": "litellm Router config (YAML/JSON: model_list, router_settings) that router/<model_name> models "
                "(--agent, --user, --critic) come from: many replicas with load balancing, fallbacks, "
                "rate limits, retries and cooldowns (docs/llm.md)."})


def router_options(model: str, router_config: str | Path | None) -> dict[str, Any]:
    """The ``open_chat`` options ``model`` needs: ``{"router_config": ...}`` for a ``router/`` model when a file
    is given, else none."""
    return {"router_config": router_config} if model.startswith(ROUTER_PREFIX) and router_config else {}


def is_secret_key(name: str) -> bool:
    """Whether a setting called ``name`` holds a credential (``api_key``, ``aws_secret_access_key``, ...)."""
    return any(word in name.lower() for word in _SECRET_WORDS)


def masked(value: Any) -> Any:
    """``value`` (a mapping, list or scalar) with the value of every credential-named key replaced by ``***``."""
    if isinstance(value, Mapping):
        return {k: "***" if is_secret_key(str(k)) and v is not None else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


@dataclass(frozen=True)
class RouterConfig:
    """A checked Router config: its deployments (``model_list``) and the ``Router`` arguments
    (``router_settings``), read from ``source``. Its repr shows no credentials."""

    source: str
    model_list: tuple[dict[str, Any], ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"RouterConfig({self.source!r}, groups={sorted(self.groups())}, settings={masked(self.settings)})"

    def groups(self) -> set[str]:
        """The model names a request may ask for: each deployment's ``model_name`` and each alias."""
        return {d["model_name"] for d in self.model_list} | set(self.settings.get("model_group_alias") or {})

    def deployments(self, group: str) -> list[dict[str, Any]]:
        """The deployments of model ``group`` (an alias resolved to its group)."""
        alias = (self.settings.get("model_group_alias") or {}).get(group)
        target = alias if isinstance(alias, str) else alias.get("model") if isinstance(alias, dict) else group
        return [d for d in self.model_list if d["model_name"] == target]

    def secrets(self) -> list[str]:
        """The literal credentials the file holds (to scrub them from error texts)."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, Mapping):
                for k, v in value.items():
                    if is_secret_key(str(k)) and isinstance(v, str) and not v.startswith("os.environ/"):
                        found.append(v)
                    else:
                        walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(list(self.model_list))
        return [s for s in found if len(s) >= 4]

    def router(self) -> Any:
        """A new ``litellm.Router`` with these deployments and settings; what it refuses is a
        :class:`RouterConfigError` naming the file."""
        litellm = _litellm()
        try:
            return litellm.Router(model_list=[dict(d) for d in self.model_list], **self.settings)
        except Exception as exc:  # noqa: BLE001 - litellm raises TypeError, ValueError, its own errors
            message = " ".join(str(exc).split())
            for secret in self.secrets():
                message = message.replace(secret, "***")
            raise RouterConfigError(f"{self.source}: litellm's Router refused it: {message[:400]}") from None


def load_router_config(path: str | Path) -> RouterConfig:
    """Read and check the Router config at ``path`` (YAML or JSON); see the module docstring."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except OSError as exc:
        raise RouterConfigError(f"cannot read Router config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RouterConfigError(f"{path}: not valid YAML or JSON: {' '.join(str(exc).split())}") from None
    return check_router_config(data, str(path))


def check_router_config(data: Any, source: str = "router config") -> RouterConfig:
    """``data`` (the parsed file) as a :class:`RouterConfig`, or a :class:`RouterConfigError` naming ``source``
    and the field at fault."""
    if not isinstance(data, dict):
        raise RouterConfigError(f"{source}: expected a mapping with model_list (and router_settings), "
                                f"got {type(data).__name__}")
    for key in data:
        if key in PROXY_SECTIONS:
            raise RouterConfigError(f"{source}: {key!r} is a litellm proxy setting ppdpp does not use; keep "
                                    f"only {' and '.join(TOP_LEVEL_KEYS)}")
        if key not in TOP_LEVEL_KEYS:
            raise RouterConfigError(f"{source}: unknown key {key!r} (expected {', '.join(TOP_LEVEL_KEYS)})")
    deployments = data.get("model_list")
    if not isinstance(deployments, list) or not deployments:
        got = "nothing" if deployments is None else "an empty list" if deployments == [] else \
            type(deployments).__name__
        raise RouterConfigError(f"{source}: model_list: expected a non-empty list of deployments, got {got}")
    checked = tuple(_check_deployment(entry, f"{source}: model_list[{i}]") for i, entry in enumerate(deployments))
    settings = data.get("router_settings") or {}
    if not isinstance(settings, dict):
        raise RouterConfigError(f"{source}: router_settings: expected a mapping, got {type(settings).__name__}")
    config = RouterConfig(source, checked, {k: _check_setting(k, v, source) for k, v in settings.items()})
    _check_fallbacks(config)
    return config


def _check_deployment(entry: Any, where: str) -> dict[str, Any]:
    _litellm()  # offline price list before litellm's types load
    from pydantic import ValidationError
    from litellm.types.router import LiteLLM_Params

    if not isinstance(entry, dict):
        raise RouterConfigError(f"{where}: expected a mapping with model_name and litellm_params, "
                                f"got {type(entry).__name__}")
    for key, kind in (("model_name", str), ("litellm_params", dict)):
        if key not in entry:
            raise RouterConfigError(f'{where}: missing "{key}"')
        if not isinstance(entry[key], kind):
            raise RouterConfigError(f"{where}.{key}: expected {'a string' if kind is str else 'a mapping'}, "
                                    f"got {type(entry[key]).__name__}")
    params = entry["litellm_params"]
    if "model" not in params:
        raise RouterConfigError(f'{where}.litellm_params: missing "model"')
    try:
        LiteLLM_Params.model_validate(params)
    except ValidationError as exc:
        raise RouterConfigError(f"{where}.litellm_params{_problems(exc.errors())}") from None
    try:
        check_model(params["model"], params.get("api_base"))
    except LLMError as exc:
        raise RouterConfigError(f"{where}.litellm_params.model: {exc}") from None
    return entry


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "bytes", "list", "dict", "tuple", "set"})


def _path(loc: Sequence[Any]) -> str:
    """A pydantic error location as ``.field[0].inner``, without the tags naming members of a union."""
    parts = [p for p in loc if isinstance(p, int) or not ("[" in p or "-" in p or p in _TYPE_TAGS)]
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _problems(errors: Sequence[Mapping[str, Any]], name: str = "") -> str:
    """pydantic's errors as ``.field: what (got X)``, one per field (a missing one as ``.parent: missing
    "field"``), joined by ``; ``; a value whose key (``name`` at the top) names a credential is not shown."""
    by_path: dict[str, list[Mapping[str, Any]]] = {}
    for error in errors:
        by_path.setdefault(_path(error["loc"]), []).append(error)
    out = []
    for path, group in by_path.items():
        if group[0]["type"] == "missing":
            parent, _, name = path.rpartition(".")
            out.append(f'{parent}: missing "{name}"')
            continue
        plain = [e for e in group if not e["msg"].startswith("Input should be an instance of")] or group
        messages = list(dict.fromkeys(e["msg"] for e in plain))
        got, key = group[0].get("input"), path.rpartition(".")[2] or name
        shown = "" if isinstance(got, (dict, list)) or is_secret_key(key) else f" (got {got!r})"
        out.append(f"{path}: {' or '.join(messages)}{shown}")
    return "; ".join(out)


@functools.cache
def router_parameters() -> dict[str, Any]:
    """The arguments ``litellm.Router`` takes (what ``router_settings`` may hold), with their annotations."""
    parameters = inspect.signature(_litellm().Router.__init__).parameters
    return {name: p.annotation for name, p in parameters.items() if name not in _NOT_SETTINGS}


def _check_setting(key: Any, value: Any, source: str) -> Any:
    from pydantic import TypeAdapter, ValidationError

    where = f"{source}: router_settings.{key}"
    if key == "model_list":
        raise RouterConfigError(f"{where}: model_list belongs at the top level of the file")
    known = router_parameters()
    if key not in known:
        raise RouterConfigError(f"{source}: router_settings: unknown key {key!r} (see litellm's Router "
                                "arguments, e.g. routing_strategy, num_retries, fallbacks, allowed_fails, "
                                "cooldown_time, timeout)")
    try:
        adapter = TypeAdapter(known[key])
    except Exception:  # noqa: BLE001 - an argument pydantic cannot describe (Python objects): litellm checks it
        return value
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        raise RouterConfigError(f"{where}{_problems(exc.errors(), str(key))}") from None
    return value


def _check_fallbacks(config: RouterConfig) -> None:
    """Every group a fallback names is defined in ``model_list``."""
    groups = config.groups()
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        for i, rule in enumerate(config.settings.get(key) or []):
            if not isinstance(rule, dict):
                raise RouterConfigError(f"{config.source}: router_settings.{key}[{i}]: expected a mapping of "
                                        f"model_name to a list of model_names, got {rule!r}")
            for name, targets in rule.items():
                for target in [name, *(targets if isinstance(targets, list) else [targets])]:
                    if target not in groups:
                        raise RouterConfigError(f"{config.source}: router_settings.{key}[{i}]: unknown model_name "
                                                f"{target!r} (model_list has {', '.join(sorted(groups))})")


class RouterBackend(APIBackend):
    """``router/<model_name>``: the deployments of one model group of a Router config, behind litellm's
    ``Router``. Options: ``router_config`` (a path or a :class:`RouterConfig`; required), ``timeout`` (seconds
    per attempt, default 60), ``concurrency`` (requests in flight at once, default 16), ``n_in_one_request``
    (``None``: ``n`` in one request when every deployment's provider takes it). Other keyword options go to
    ``Router.acompletion``. ``served`` counts the replies by the ``api_base`` (else the deployment id) that
    gave them; each reply is also a DEBUG line on the ``ppdpp.llm.router`` logger."""

    @classmethod
    def check_model(cls, model: str, **options: Any) -> None:
        """Nothing to check before it opens: opening reads the Router config and checks the model group."""

    def __init__(self, model: str, *, router_config: str | Path | RouterConfig | None = None,
                 timeout: float = 60.0, concurrency: int = API_CONCURRENCY, n_in_one_request: bool | None = None,
                 **extra: Any) -> None:
        if concurrency < 1 or timeout <= 0:
            raise ValueError("concurrency must be >= 1 and timeout > 0")
        group = model[len(ROUTER_PREFIX):] if model.startswith(ROUTER_PREFIX) else model
        if router_config is None:
            raise RouterConfigError(f"{model}: a router/ model needs a Router config (--router-config FILE, or "
                                    "router_config= in code); see docs/llm.md")
        config = router_config if isinstance(router_config, RouterConfig) else load_router_config(router_config)
        if group not in config.groups():
            raise RouterConfigError(f"{config.source}: no model_name {group!r} in model_list (it has "
                                    f"{', '.join(sorted(config.groups()))})")
        self.model, self.group, self.config = model, group, config
        self.api_base, self._api_key = None, None
        self.timeout, self.concurrency = timeout, concurrency
        self._n_in_one_request = n_in_one_request
        self._extra = extra
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._router = config.router()
        self.served: Counter[str] = Counter()

    def __repr__(self) -> str:  # never a key
        return f"RouterBackend({self.model!r}, {len(self.config.deployments(self.group))} deployments, " \
               f"config={self.config.source!r})"

    def redact(self, text: str) -> str:
        """``text`` without the file's credentials and secret-looking environment values."""
        for secret in sorted(self.config.secrets(), key=len, reverse=True):
            text = text.replace(secret, "***")
        return super().redact(text)

    def _supports_n(self) -> bool:
        if self._n_in_one_request is None:
            litellm = _litellm()

            def takes_n(model: str) -> bool:
                try:
                    return "n" in (litellm.get_supported_openai_params(model=model) or [])
                except Exception:  # an unknown provider: be safe, send n separate requests
                    return False

            self._n_in_one_request = all(takes_n(d["litellm_params"]["model"])
                                         for d in self.config.deployments(self.group))
        return self._n_in_one_request

    async def _request(self, messages: list[Message], n: int, kwargs: dict[str, Any]) -> Any:
        """One request through the Router (its retries, fallbacks and cooldowns); returns litellm's response."""
        params: dict[str, Any] = dict(model=self.group, messages=messages, timeout=self.timeout, **kwargs,
                                      **self._extra)
        if n > 1:
            params["n"] = n
        try:
            async with self._semaphore():
                response = await self._router.acompletion(**params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the Router gave up with
            raise LLMError(f"{self.model}: no deployment of {self.config.source} answered after the Router's "
                           f"retries and fallbacks; last error: {self._failure(exc)}") from None
        hidden = getattr(response, "_hidden_params", None) or {}
        where = str(hidden.get("api_base") or hidden.get("model_id") or "unknown")
        self.served[where] += 1
        log.debug("%s: served by %s", self.model, where)
        return response

    async def aclose(self) -> None:
        """Drop the Router's process-wide registrations (its callbacks)."""
        retire = getattr(self._router, "retire", None)
        if retire is not None:
            retire()

