"""``ppdpp serve``: the OpenAI-compatible planning proxy (see planner/serving/proxy.py and docs/serving.md)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.cli.app import app, console
from ppdpp.planner.cli.options import out_of_bounds
from ppdpp.planner.registry.manager import register_plugin
from ppdpp.planner.serving.openai_protocol import ServerLimits, exposure_warning
from ppdpp.planner.serving.proxy import TOKEN_ENV, create_app, serve_forever
from ppdpp.planner.serving.dialogue_log import JsonlDialogueLog


def within(**bounds: float) -> Callable[[Any], Any]:
    """A Typer option callback that refuses a number outside ``bounds`` (``min``, ``max``, ``gt``, ``lt``), with
    the value and the allowed range in the message (the same check as the config options')."""
    def check(value: Any) -> Any:
        problem = out_of_bounds(value, bounds)
        if problem:
            raise typer.BadParameter(problem)
        return value

    return check


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A Typer option callback that refuses a value outside ``choices``, naming them."""
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


_DEFAULT_LIMITS = ServerLimits()
LimitBodyOption = typer.Option(_DEFAULT_LIMITS.max_body_bytes, "--limit-body-bytes", callback=within(min=1),
                               help="Largest request body in bytes (a larger one gets 413).")
LimitNOption = typer.Option(_DEFAULT_LIMITS.max_n, "--limit-n", callback=within(min=1),
                            help="Largest n a request may ask for (else 400).")
LimitTokensOption = typer.Option(_DEFAULT_LIMITS.max_tokens, "--limit-max-tokens", callback=within(min=1),
                                 help="Largest max_tokens a request may ask for (else 400).")
PortOption = typer.Option(8000, "--port", callback=within(min=0, max=65535),
                          help="Port to bind; 0 picks a free one (printed at start).")


def server_limits(body_bytes: int, n: int, max_tokens: int) -> ServerLimits:
    """The limits from the ``--limit-*`` options (a bad value is a usage error)."""
    try:
        return ServerLimits(body_bytes, n, max_tokens)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--limit-*") from None


@app.command("serve")
def serve_command(
    planner: Path = typer.Option(..., "--planner", help="A saved planner directory (ppdpp sft/rl output).",
                                 exists=True, file_okay=False),
    upstream: str = typer.Option(..., "--upstream", help="The LLM that writes the replies, e.g. local/smollm2, "
                                 "gpt-4o-mini, or openai/<name> with --api-base."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible upstream."),
    upstream_key_env: Optional[str] = typer.Option(
        None, "--upstream-key-env", help="Environment variable holding the upstream's API key (default: the "
        "provider's own, e.g. OPENAI_API_KEY)."),
    domain: Optional[str] = typer.Option(None, "--domain", "-d", help="Domain (default: the planner's)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: this machine only)."),
    port: int = PortOption,
    token: Optional[str] = typer.Option(None, "--token", envvar=TOKEN_ENV, show_envvar=True, show_default=False,
                                        help="Require 'Authorization: Bearer <token>' on every /v1 request."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Model id clients see (default: upstream)."),
    temperature: float = typer.Option(0.0, "--temperature", callback=within(min=0.0),
                                      help="Default temperature when a request sets none."),
    max_tokens: int = typer.Option(256, "--max-tokens", callback=within(min=1),
                                   help="Default max_tokens when a request sets none."),
    reminder: bool = typer.Option(True, "--reminder/--no-reminder",
                                  help="Repeat the strategy instruction at the end of the last user message."),
    upstream_timeout: float = typer.Option(120.0, "--upstream-timeout", callback=within(min=0.0),
                                           help="Seconds per upstream call (0 = none)."),
    upstream_retries: Optional[int] = typer.Option(None, "--upstream-retries", callback=within(min=0, max=100),
                                                   help="Retries of a failed API upstream call (backend default: 4)."),
    cache: bool = typer.Option(False, "--cache/--no-cache",
                               help="Cache greedy upstream replies on disk (off: conversations stay off the disk)."),
    dialogue_log: Optional[Path] = typer.Option(None, "--dialogue-log",
                                                help="Append every ended dialogue to this JSON-lines file."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=within(min=1, max=1024),
                                          help="torch CPU threads for the planner."),
    limit_body_bytes: int = LimitBodyOption,
    limit_n: int = LimitNOption,
    limit_max_tokens: int = LimitTokensOption,
) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions that plans every reply of the upstream LLM."""
    if not upstream.startswith("local/"):  # a model string no provider serves fails before the planner loads
        from ppdpp.planner.llm.api import check_model

        check_model(upstream, api_base)
    if threads:
        import torch

        torch.set_num_threads(threads)
    limits = server_limits(limit_body_bytes, limit_n, limit_max_tokens)
    if max_tokens > limits.max_tokens:
        raise typer.BadParameter(f"{max_tokens} is over --limit-max-tokens {limits.max_tokens}",
                                 param_hint="--max-tokens")
    warning = exposure_warning(host, token, TOKEN_ENV)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
    options: dict = {"cache": cache}
    if api_base:
        options["api_base"] = api_base
    if upstream_key_env:
        if not os.environ.get(upstream_key_env):
            raise typer.BadParameter(f"${upstream_key_env} is not set", param_hint="--upstream-key-env")
        options["api_key"] = os.environ[upstream_key_env]
    if upstream_retries is not None:
        options["max_retries"] = upstream_retries
    agent = PlannedAgent.from_pretrained(planner, upstream, domain=domain, reminder=reminder,
                                         temperature=temperature, max_tokens=max_tokens, **options)
    if dialogue_log is not None:
        register_plugin(JsonlDialogueLog(dialogue_log), name="dialogue_log")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    web_app = create_app(agent, token=token, model_name=model_name, upstream_timeout=upstream_timeout or None,
                         limits=limits)

    web_app.on_cleanup.append(lambda _app: agent.aclose())

    def ready(url: str) -> None:  # one plain line, flushed: scripts wait for it to learn the port
        auth = "bearer token required" if token else "no token"
        print(f"ppdpp serve: {agent.domain.name} planner {planner} in front of {agent.model} at {url}/v1 ({auth})",
              flush=True)

    try:
        asyncio.run(serve_forever(web_app, host, port, on_ready=ready))
    except KeyboardInterrupt:
        console.print("ppdpp serve: stopped")
