"""``ppdpp serve`` (the OpenAI-compatible planning proxy: planner/serving/proxy.py, docs/serving.md) and ``ppdpp ui``
(the playground); their options come from :class:`ServeCommand` and :class:`UICommand`, the server's limits from
:class:`~ppdpp.planner.serving.openai_protocol.ServerLimits`."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import typer

from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.cli.app import app, config_command, console, threads_field
from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.registry.manager import register_plugin
from ppdpp.planner.serving.openai_protocol import ServerLimits, exposure_warning
from ppdpp.planner.serving.proxy import TOKEN_ENV, create_app, serve_forever
from ppdpp.planner.serving.dialogue_log import JsonlDialogueLog
from ppdpp.planner.serving.logs import configure_logging

LogFormat = Literal["text", "json"]
UPSTREAM_HELP = "The LLM that writes the replies, e.g. local/smollm2, gpt-4o-mini, or openai/<name> with --api-base."


@dataclass
class Listen:
    """Where a server listens and how it logs (``serve``, ``ui``, ``serve-llm``)."""

    host: str = field(default="127.0.0.1", metadata={"help": "Interface to bind (127.0.0.1: this machine only)."})
    port: int = field(default=8000, metadata={"help": "Port to bind; 0 picks a free one (printed at start).",
                                              "min": 0, "max": 65535})
    log_format: LogFormat = field(default="text", metadata={
        "help": "Server log lines on stderr: text, or json (one object a line)."})

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class Upstream:
    """The LLM behind ``serve`` and ``ui``."""

    upstream: str = field(metadata={"help": UPSTREAM_HELP})
    api_base: Optional[str] = field(default=None, metadata={"help": "Base URL of an OpenAI-compatible upstream."})
    upstream_key_env: Optional[str] = field(default=None, metadata={
        "help": "Environment variable holding the upstream's API key (none: the provider's own, e.g. "
                "OPENAI_API_KEY)."})
    upstream_timeout: float = field(default=120.0, metadata={"help": "Seconds per upstream call (0 = none).",
                                                             "min": 0})

    def __post_init__(self) -> None:
        check_fields(self)

    def options(self, cache: bool) -> dict[str, Any]:
        """The backend options: ``api_base`` and the key from ``upstream_key_env`` (a usage error when unset)."""
        options: dict[str, Any] = {"cache": cache}
        if self.api_base:
            options["api_base"] = self.api_base
        if self.upstream_key_env:
            if not os.environ.get(self.upstream_key_env):
                raise typer.BadParameter(f"${self.upstream_key_env} is not set", param_hint="--upstream-key-env")
            options["api_key"] = os.environ[self.upstream_key_env]
        return options

    def check(self) -> None:
        """Fail at once on a model string no provider serves (before any planner loads)."""
        from ppdpp.planner.llm import check_model

        check_model(self.upstream, api_base=self.api_base)


def token_field(env: str) -> Any:
    """A server's ``token`` field: ``--token``, else ``$env``."""
    return field(default=None, metadata={"help": "Require 'Authorization: Bearer <token>' on every /v1 request.",
                                         "env": env, "secret": True})


def set_threads(threads: Optional[int]) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@dataclass
class ServeCommand:
    """The settings of ``ppdpp serve``."""

    planner: Path = field(metadata={
        "help": "A saved planner folder (ppdpp sft/rl output), or a Hugging Face Hub repository org/name."})
    upstream: Upstream
    domain: Optional[str] = field(default=None, metadata={"help": "Domain (none: the planner's).",
                                                          "aliases": ["-d"]})
    listen: Listen = field(default_factory=Listen)
    token: Optional[str] = token_field(TOKEN_ENV)
    model_name: Optional[str] = field(default=None, metadata={"help": "Model id clients see (none: --upstream)."})
    temperature: float = field(default=0.0, metadata={"help": "Default temperature when a request sets none.",
                                                      "min": 0})
    max_tokens: int = field(default=256, metadata={"help": "Default max_tokens when a request sets none.", "min": 1})
    reminder: bool = field(default=True, metadata={
        "help": "Repeat the strategy instruction at the end of the last user message."})
    upstream_retries: Optional[int] = field(default=None, metadata={
        "help": "Retries of a failed API upstream call (none: the backend's default, 6).", "min": 0, "max": 100})
    cache: bool = field(default=False, metadata={
        "help": "Cache greedy upstream replies on disk (off: conversations stay off the disk)."})
    dialogue_log: Optional[Path] = field(default=None, metadata={
        "help": "Append every ended dialogue to this JSON-lines file."})
    threads: Optional[int] = threads_field(" for the planner")
    limits: ServerLimits = field(default_factory=ServerLimits)
    allow_strategies: str = field(default="", metadata={
        "help": "Guardrail: the only strategies the planner may choose, comma-separated (empty: all)."})
    forbid_strategies: str = field(default="", metadata={
        "help": "Guardrail: strategies the planner may never choose, comma-separated."})

    def __post_init__(self) -> None:
        check_fields(self)
        if self.max_tokens > self.limits.max_tokens:
            raise ValueError(f"max_tokens {self.max_tokens} is over limits.max_tokens {self.limits.max_tokens} "
                             "(--limit-max-tokens)")

@config_command(app, "serve", ServeCommand)
def serve_command(command: ServeCommand) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions that plans every reply of the upstream LLM (and /metrics)."""
    from ppdpp.planner.policy.planner_checkpoint import is_hub_id

    planner, upstream, listen, token = command.planner, command.upstream, command.listen, command.token
    if not planner.is_dir() and not is_hub_id(planner):
        raise typer.BadParameter(f"{planner} is neither a saved planner folder nor a Hub repository (org/name)",
                                 param_hint="--planner")
    upstream.check()
    set_threads(command.threads)
    warning = exposure_warning(listen.host, token, TOKEN_ENV)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
    options = upstream.options(command.cache)
    if command.upstream_retries is not None:
        options["max_retries"] = command.upstream_retries
    agent = PlannedAgent.from_pretrained(planner, upstream.upstream, domain=command.domain, reminder=command.reminder,
                                         temperature=command.temperature, max_tokens=command.max_tokens,
                                         allow_strategies=command.allow_strategies,
                                         forbid_strategies=command.forbid_strategies, **options)
    if command.dialogue_log is not None:
        register_plugin(JsonlDialogueLog(command.dialogue_log), name="dialogue_log")
    configure_logging(listen.log_format)
    web_app = create_app(agent, token=token, model_name=command.model_name,
                         upstream_timeout=upstream.upstream_timeout or None, limits=command.limits)

    web_app.on_cleanup.append(lambda _app: agent.aclose())

    def ready(url: str) -> None:  # one plain line, flushed: scripts wait for it to learn the port
        auth = "bearer token required" if token else "no token"
        print(f"ppdpp serve: {agent.domain.name} planner {planner} in front of {agent.model} at {url}/v1 ({auth})",
              flush=True)

    try:
        asyncio.run(serve_forever(web_app, listen.host, listen.port, on_ready=ready))
    except KeyboardInterrupt:
        console.print("ppdpp serve: stopped")


@dataclass
class UICommand:
    """The settings of ``ppdpp ui``."""

    upstream: Upstream
    planner: list[Path] = field(default_factory=list, metadata={
        "help": "A saved planner directory; repeat it to switch between several in the page.", "is_dir": True})
    domain: Optional[str] = field(default=None, metadata={
        "help": "Domain (none: the planners'; needed without --planner).", "aliases": ["-d"]})
    transcripts: Optional[Path] = field(default=None, metadata={
        "help": "An evaluation's --out folder (or a folder of transcript .jsonl files) to read in the page.",
        "is_dir": True})
    listen: Listen = field(default_factory=Listen)
    temperature: float = field(default=0.0, metadata={"help": "Reply temperature.", "min": 0})
    max_tokens: int = field(default=256, metadata={"help": "Longest reply in tokens.", "min": 1,
                                                   "max": ServerLimits().max_tokens})
    threads: Optional[int] = threads_field(" for the planners")

    def __post_init__(self) -> None:
        check_fields(self)


@config_command(app, "ui", UICommand)
def ui_command(command: UICommand) -> None:
    """Serve the web playground: chat with planned agents (or none) and read evaluation transcripts side by side."""
    from ppdpp.planner.llm import open_chat
    from ppdpp.planner.serving.playground import create_playground_app, is_loopback, playground_agents

    upstream, listen, planners, domain = command.upstream, command.listen, command.planner, command.domain
    upstream.check()
    set_threads(command.threads)
    if not is_loopback(listen.host):
        console.print(f"[yellow]warning:[/] serving the playground on {listen.host}: anyone who reaches this port "
                      "can chat with the model and read the transcripts (it has no token)")
    options = upstream.options(cache=False)
    if not planners and domain is None:
        raise typer.BadParameter("give --domain (for 'no planner') or at least one --planner", param_hint="--domain")
    llm = open_chat(upstream.upstream, **options)
    agents = playground_agents(planners, llm, domain=domain, temperature=command.temperature,
                               max_tokens=command.max_tokens)
    configure_logging(listen.log_format)
    web_app = create_playground_app(agents, transcripts=command.transcripts, host=listen.host,
                                    upstream_timeout=upstream.upstream_timeout or None)
    web_app.on_cleanup.append(lambda _app: llm.aclose())

    def ready(url: str) -> None:  # one plain line, flushed: scripts wait for it to learn the port
        print(f"ppdpp ui: {len(agents) - 1} planner(s) and 'no planner' in front of {llm.model} at {url}/", flush=True)

    try:
        asyncio.run(serve_forever(web_app, listen.host, listen.port, on_ready=ready))
    except KeyboardInterrupt:
        console.print("ppdpp ui: stopped")
