"""``ppdpp serve``: the OpenAI-compatible planning proxy (see planner/serving/proxy.py and docs/serving.md)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from ppdpp.planner.serving.agent import PlannedAgent
from ppdpp.planner.cli.app import app, console
from ppdpp.planner.core.bounds import out_of_bounds
from ppdpp.planner.registry.manager import register_plugin
from ppdpp.planner.serving.openai_protocol import ServerLimits, exposure_warning
from ppdpp.planner.serving.proxy import TOKEN_ENV, create_app, serve_forever
from ppdpp.planner.serving.dialogue_log import JsonlDialogueLog
from ppdpp.planner.serving.logs import LOG_FORMATS, configure_logging


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
LimitPromptOption = typer.Option(_DEFAULT_LIMITS.max_prompt_tokens, "--limit-prompt-tokens", callback=within(min=1),
                                 help="Longest prompt in tokens, counted by a local model's tokenizer, else "
                                 "estimated (else 400, param messages).")
LimitQueueOption = typer.Option(_DEFAULT_LIMITS.max_queue, "--limit-queue", callback=within(min=1),
                                help="Requests admitted at once, answered or waiting (one more gets 429).")
RetryAfterOption = typer.Option(_DEFAULT_LIMITS.retry_after_s, "--retry-after", callback=within(min=1),
                                help="Seconds a refused (429) client is told to wait, in Retry-After.")
RequestTimeoutOption = typer.Option(_DEFAULT_LIMITS.request_timeout_s, "--request-timeout", callback=within(min=0.0),
                                    help="Seconds one request may take; past it the model call is cancelled and "
                                    "the client gets 504 (0 = no limit).")
LogFormatOption = typer.Option("text", "--log-format", callback=one_of(LOG_FORMATS),
                               help="Server log lines on stderr: text, or json (one object a line).")
PortOption = typer.Option(8000, "--port", callback=within(min=0, max=65535),
                          help="Port to bind; 0 picks a free one (printed at start).")


def server_limits(body_bytes: int, n: int, max_tokens: int, prompt_tokens: int = _DEFAULT_LIMITS.max_prompt_tokens,
                  queue: int = _DEFAULT_LIMITS.max_queue, retry_after: int = _DEFAULT_LIMITS.retry_after_s,
                  request_timeout: float | None = _DEFAULT_LIMITS.request_timeout_s) -> ServerLimits:
    """The limits from the ``--limit-*``, ``--retry-after`` and ``--request-timeout`` options (a bad value is a
    usage error; a timeout of 0 is none)."""
    try:
        return ServerLimits(body_bytes, n, max_tokens, prompt_tokens, queue, retry_after, request_timeout or None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--limit-*") from None


@app.command("serve")
def serve_command(
    planner: Path = typer.Option(..., "--planner", help="A saved planner folder (ppdpp sft/rl output), or a Hugging "
                                 "Face Hub repository org/name."),
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
                                                   help="Retries of a failed API upstream call (backend default: 6)."),
    cache: bool = typer.Option(False, "--cache/--no-cache",
                               help="Cache greedy upstream replies on disk (off: conversations stay off the disk)."),
    dialogue_log: Optional[Path] = typer.Option(None, "--dialogue-log",
                                                help="Append every ended dialogue to this JSON-lines file."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=within(min=1, max=1024),
                                          help="torch CPU threads for the planner."),
    limit_body_bytes: int = LimitBodyOption,
    limit_n: int = LimitNOption,
    limit_max_tokens: int = LimitTokensOption,
    limit_prompt_tokens: int = LimitPromptOption,
    limit_queue: int = LimitQueueOption,
    retry_after: int = RetryAfterOption,
    request_timeout: float = RequestTimeoutOption,
    log_format: str = LogFormatOption,
    allow_strategies: str = typer.Option("", "--allow-strategies", show_default=False,
                                         help="Guardrail: the only strategies the planner may choose, "
                                         "comma-separated (default: all)."),
    forbid_strategies: str = typer.Option("", "--forbid-strategies", show_default=False,
                                          help="Guardrail: strategies the planner may never choose, comma-separated."),
) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions that plans every reply of the upstream LLM (and /metrics)."""
    from ppdpp.planner.policy.planner_checkpoint import is_hub_id

    if not planner.is_dir() and not is_hub_id(planner):
        raise typer.BadParameter(f"{planner} is neither a saved planner folder nor a Hub repository (org/name)",
                                 param_hint="--planner")
    if not upstream.startswith("local/"):  # a model string no provider serves fails before the planner loads
        from ppdpp.planner.llm.api import check_model

        check_model(upstream, api_base)
    if threads:
        import torch

        torch.set_num_threads(threads)
    limits = server_limits(limit_body_bytes, limit_n, limit_max_tokens, limit_prompt_tokens, limit_queue,
                           retry_after, request_timeout)
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
                                         temperature=temperature, max_tokens=max_tokens,
                                         allow_strategies=allow_strategies, forbid_strategies=forbid_strategies,
                                         **options)
    if dialogue_log is not None:
        register_plugin(JsonlDialogueLog(dialogue_log), name="dialogue_log")
    configure_logging(log_format)
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


@app.command("ui")
def ui_command(
    planners: Optional[list[Path]] = typer.Option(
        None, "--planner", metavar="DIR", exists=True, file_okay=False,
        help="A saved planner directory; repeat it to switch between several in the page."),
    upstream: str = typer.Option(..., "--upstream", help="The LLM that writes the replies, e.g. local/smollm2, "
                                 "gpt-4o-mini, or openai/<name> with --api-base."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible upstream."),
    upstream_key_env: Optional[str] = typer.Option(
        None, "--upstream-key-env", help="Environment variable holding the upstream's API key."),
    domain: Optional[str] = typer.Option(None, "--domain", "-d",
                                         help="Domain (default: the planners'; needed without --planner)."),
    transcripts: Optional[Path] = typer.Option(
        None, "--transcripts", exists=True, file_okay=False,
        help="An evaluation's --out folder (or a folder of transcript .jsonl files) to read in the page."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: this machine only)."),
    port: int = PortOption,
    temperature: float = typer.Option(0.0, "--temperature", callback=within(min=0.0), help="Reply temperature."),
    max_tokens: int = typer.Option(256, "--max-tokens", callback=within(min=1, max=_DEFAULT_LIMITS.max_tokens),
                                   help="Longest reply in tokens."),
    upstream_timeout: float = typer.Option(120.0, "--upstream-timeout", callback=within(min=0.0),
                                           help="Seconds per upstream call (0 = none)."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=within(min=1, max=1024),
                                          help="torch CPU threads for the planners."),
    log_format: str = LogFormatOption,
) -> None:
    """Serve the web playground: chat with planned agents (or none) and read evaluation transcripts side by side."""
    from ppdpp.planner.llm import open_chat
    from ppdpp.planner.serving.playground import create_playground_app, is_loopback, playground_agents

    if not upstream.startswith("local/"):
        from ppdpp.planner.llm.api import check_model

        check_model(upstream, api_base)
    if threads:
        import torch

        torch.set_num_threads(threads)
    if not is_loopback(host):
        console.print(f"[yellow]warning:[/] serving the playground on {host}: anyone who reaches this port can "
                      "chat with the model and read the transcripts (it has no token)")
    options: dict = {"cache": False}
    if api_base:
        options["api_base"] = api_base
    if upstream_key_env:
        if not os.environ.get(upstream_key_env):
            raise typer.BadParameter(f"${upstream_key_env} is not set", param_hint="--upstream-key-env")
        options["api_key"] = os.environ[upstream_key_env]
    if not planners and domain is None:
        raise typer.BadParameter("give --domain (for 'no planner') or at least one --planner", param_hint="--domain")
    llm = open_chat(upstream, **options)
    agents = playground_agents(planners or [], llm, domain=domain, temperature=temperature, max_tokens=max_tokens)
    configure_logging(log_format)
    web_app = create_playground_app(agents, transcripts=transcripts, host=host,
                                    upstream_timeout=upstream_timeout or None)
    web_app.on_cleanup.append(lambda _app: llm.aclose())

    def ready(url: str) -> None:  # one plain line, flushed: scripts wait for it to learn the port
        print(f"ppdpp ui: {len(agents) - 1} planner(s) and 'no planner' in front of {llm.model} at {url}/", flush=True)

    try:
        asyncio.run(serve_forever(web_app, host, port, on_ready=ready))
    except KeyboardInterrupt:
        console.print("ppdpp ui: stopped")
