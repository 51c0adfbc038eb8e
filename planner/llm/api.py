"""API chat models through litellm: any provider litellm knows, or any OpenAI-compatible server (``api_base=``).

We run our own bounded retries with tenacity (exponential backoff with jitter on 429, 408, 5xx, timeouts and
dropped connections, or the server's ``Retry-After`` on 429/503; each failed attempt is one line on the
``ppdpp.llm.api`` logger; an error that cannot succeed on retry fails at once; litellm's and the OpenAI SDK's
hidden retries are switched off), limit concurrency with a
semaphore, ask for ``n`` samples in one request where the provider supports it (else ``n`` parallel requests),
stream replies piece by piece (``stream``; retries cover opening the stream, not a stream that breaks off),
and account tokens and cost (``litellm.completion_cost`` where the price is known, else ``None``).
API keys come from the environment (litellm reads e.g. ``OPENAI_API_KEY``) or the ``api_key`` option; they
never appear in logs, errors or reprs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator, Sequence

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ppdpp.planner.core.domain import Message
from ppdpp.planner.llm.base import ChatBackend, Completion, LLMError, TokenCounter
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.sampling import check_sampling
from ppdpp.planner.llm.spend import Price

API_CONCURRENCY = 16
"""The requests in flight at once an API backend defaults to; a run never gives it fewer."""
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
RETRY_AFTER_STATUS = frozenset({429, 503})  # the statuses whose Retry-After header we follow
_SECRET_SUFFIXES = ("_API_KEY", "_KEY", "_TOKEN", "_SECRET")
log = logging.getLogger("ppdpp.llm.api")


POOL_CONNECTIONS = 8192  # sockets litellm's shared HTTP pool may open; each backend's ``concurrency`` is the cap


def _litellm() -> Any:
    """Import litellm (slow: seconds) on first use, offline-friendly: its bundled price list, no telemetry.

    litellm sizes its shared aiohttp pool from the environment when first imported: 1,000 sockets in all and
    500 per host by default, a hidden cap (one server never saw more than 500 requests in flight, whatever
    ``concurrency`` said). We lift it (a value already set in the environment wins), so each backend's
    semaphore alone bounds its requests in flight."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", str(POOL_CONNECTIONS))
    os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "0")  # 0: no per-host limit
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it was raised from (litellm wraps the OpenAI client's, which wraps httpx's)."""
    links: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(links) < 8:
        links.append(link)
        link = link.__cause__ or link.__context__
    return links


def parse_retry_after(value: str) -> float | None:
    """A ``Retry-After`` value as seconds from now (it is a number of seconds or an HTTP date); ``None`` when
    unreadable."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after_s(exc: BaseException) -> float | None:
    """How long a 429 or 503 answer asked us to wait (its ``retry-after-ms``, else ``Retry-After``), else
    ``None``."""
    if _status_of(exc) not in RETRY_AFTER_STATUS:
        return None
    for link in _chain(exc):
        headers = getattr(link, "litellm_response_headers", None) or getattr(
            getattr(link, "response", None), "headers", None)
        if not headers:
            continue
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        millis = parse_retry_after(lowered.get("retry-after-ms", ""))
        if millis is not None:
            return millis / 1000
        if "retry-after" in lowered:
            return parse_retry_after(lowered["retry-after"])
    return None


def registered_without_price(model: str) -> bool:
    """Whether litellm's price map holds ``model`` with no price in it. litellm's Router registers each deployment's
    model so (``{}`` for a self-hosted ``openai/NAME``, later every price field ``None``), process-wide, and
    litellm's cost functions then price every later call to that model at $0, through the Router or not: ppdpp
    reads such a model as unpriced."""
    cost_map = _litellm().model_cost
    entry = cost_map.get(model)
    if entry is None and "/" in model:
        entry = cost_map.get(model.split("/", 1)[1])
    return entry is not None and not any(value is not None for key, value in entry.items()
                                         if key.startswith(("input_cost_per", "output_cost_per")))


def check_model(model: str, api_base: str | None = None) -> None:
    """Raise :class:`LLMError` at once when litellm cannot tell which provider serves ``model`` (``banana``)."""
    try:
        _litellm().get_llm_provider(model=model, api_base=api_base)
    except Exception:  # noqa: BLE001 - litellm raises its BadRequestError, or others on odd strings
        raise LLMError(f"unknown model {model!r}: use local/<name> (see `ppdpp models list`) or a litellm "
                       "model string naming its provider, e.g. openai/gpt-4o-mini (an OpenAI-compatible "
                       "server: openai/<name> with --api-base)") from None


def _is_permanent(exc: BaseException) -> bool:
    """An error no retry can mend: bad key or none (401, 403, a missing-credentials error raised before any
    request, which litellm reports as a 500), unknown model (404), bad request (400)."""
    import openai

    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError,
                        openai.BadRequestError)):
        return True
    cause, seen = exc.__cause__ or exc.__context__, 0
    while cause is not None and seen < 8:  # the OpenAI client's own error, e.g. "Missing credentials"
        if isinstance(cause, openai.OpenAIError) and not isinstance(cause, openai.APIError):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def is_retryable(exc: BaseException) -> bool:
    """Worth another try: rate limits, server errors, timeouts, connection failures; never an error that
    cannot succeed on retry (see :func:`_is_permanent`)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    if _is_permanent(exc):
        return False
    status = _status_of(exc)
    if status is not None:
        return status in RETRY_STATUS or status >= 500
    import openai

    return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError))


class APIBackend(ChatBackend):
    """A chat model behind an HTTP API, called through ``litellm.acompletion``.

    Options: ``api_base`` (an OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1``), ``api_key`` (else
    the provider's environment variable), ``timeout`` (seconds per attempt, default 60), ``max_retries``
    (retries after the first attempt, default 6: at least 30 s of waiting in all, enough to ride out an upstream
    restart), ``backoff_s`` (first backoff, doubled each retry, default 1), ``max_backoff_s`` (the longest wait,
    also for a server's ``Retry-After``; default 30), ``concurrency`` (requests in flight at once, default 16),
    ``n_in_one_request`` (``None``: ask litellm whether the provider takes ``n``). Other keyword options are
    passed to ``litellm.acompletion`` as they are.
    """

    concurrency_option = "concurrency"  # requests in flight at once: a run's --concurrency, never fewer than 16
    default_concurrency = API_CONCURRENCY

    def __init__(self, model: str, *, api_base: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 concurrency: int = API_CONCURRENCY, n_in_one_request: bool | None = None, **extra: Any) -> None:
        if max_retries < 0 or concurrency < 1 or timeout <= 0:
            raise ValueError("max_retries must be >= 0, concurrency >= 1 and timeout > 0")
        check_model(model, api_base)  # ``banana`` fails here, not at the first request
        self.model = model
        self.api_base = api_base
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.concurrency = concurrency
        self._n_in_one_request = n_in_one_request
        self._extra = extra
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def __repr__(self) -> str:  # never the key
        base = f", api_base={self.api_base!r}" if self.api_base else ""
        return f"APIBackend({self.model!r}{base})"

    # -- what it can do (ChatBackend's capabilities) -------------------------------------------------------
    @classmethod
    def check_model(cls, model: str, *, api_base: str | None = None, **options: Any) -> None:
        check_model(model, api_base)

    @classmethod
    def price(cls, model: str) -> Price | None:
        """litellm's price for ``model`` (``openai/gpt-4o-mini``, ``gpt-3.5-turbo``), or ``None``."""
        if registered_without_price(model):
            return None
        try:
            prompt, completion = _litellm().cost_per_token(model=model, prompt_tokens=1_000_000,
                                                        completion_tokens=1_000_000)
        except Exception:  # noqa: BLE001 - litellm raises its own errors for models it has no price for
            return None
        return Price(float(prompt) / 1_000_000, float(completion) / 1_000_000)

    @classmethod
    def token_counter(cls, model: str) -> tuple[TokenCounter, str] | None:
        """litellm's token counter, for a model litellm has a price for (so it knows the model)."""
        if cls.price(model) is None:
            return None
        litellm = _litellm()

        def count(messages: Sequence[Message]) -> int:
            return int(litellm.token_counter(model=model, messages=list(messages)))

        try:
            count([{"role": "user", "content": "hello"}])
        except Exception:  # noqa: BLE001 - litellm cannot count this model's tokens
            return None
        return count, "litellm"

    # -- helpers -------------------------------------------------------------------------------------------
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._semaphores:
            self._semaphores = {lp: s for lp, s in self._semaphores.items() if not lp.is_closed()}
            self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return self._semaphores[loop]

    def _supports_n(self) -> bool:
        if self._n_in_one_request is None:
            litellm = _litellm()
            try:
                params = litellm.get_supported_openai_params(model=self.model) or []
            except Exception:  # an unknown provider: be safe, send n separate requests
                params = []
            self._n_in_one_request = "n" in params
        return self._n_in_one_request

    def redact(self, text: str) -> str:
        """``text`` with the API key and any secret-looking environment values replaced by ``***``."""
        secrets = [self._api_key] if self._api_key else []
        secrets += [v for k, v in os.environ.items() if k.upper().endswith(_SECRET_SUFFIXES) and len(v) >= 8]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _backoff(self, attempt: int) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    def _wait(self, attempt: int, exc: BaseException) -> tuple[float, str]:
        """Seconds to wait before the next attempt, and why: the server's ``Retry-After`` (plus up to 10%, so
        that the clients of a 429 storm do not all come back at once), else our backoff; at most
        ``max_backoff_s``."""
        asked = retry_after_s(exc)
        if asked is None:
            return self._backoff(attempt), "backoff"
        return min(self.max_backoff_s, asked * (1 + random.random() / 10)), f"Retry-After {asked:g}s"

    def _failure(self, exc: BaseException) -> str:
        """What went wrong, in a few words: timed out, could not connect, rate limited, server error."""
        import openai

        links = _chain(exc)
        if any(isinstance(x, (asyncio.TimeoutError, TimeoutError, openai.APITimeoutError)) for x in links):
            return f"timed out after {self.timeout:g}s"
        if any(isinstance(x, (ConnectionError, openai.APIConnectionError)) for x in links):
            where = f" to {self.api_base}" if self.api_base else ""
            return f"could not connect{where} (server down or connection dropped)"
        status = _status_of(exc)
        kind = "rate limited" if status == 429 else "server error" if status is not None and status >= 500 else "failed"
        return f"{kind}: {' '.join(self._describe(exc).split())[:240]}"

    # -- calls ---------------------------------------------------------------------------------------------
    async def _request(self, messages: list[Message], n: int, kwargs: dict[str, Any]) -> Any:
        """One HTTP request with our retries; returns the litellm response."""
        litellm = _litellm()
        params: dict[str, Any] = dict(
            model=self.model, messages=messages, n=n, timeout=self.timeout, num_retries=0, max_retries=0,
            **kwargs, **self._extra,
        )
        if n == 1:
            params.pop("n")
        if self.api_base:
            params["api_base"] = self.api_base
        if self._api_key:
            params["api_key"] = self._api_key
        attempts = self.max_retries + 1
        waits: dict[int, str] = {}  # attempt number -> why its wait is what it is, for the log line

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            seconds, waits[state.attempt_number] = self._wait(state.attempt_number, exc or Exception())
            return seconds

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            seconds = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning("%s: attempt %d/%d %s; retrying in %.2fs (%s)", self.model, state.attempt_number, attempts,
                        self._failure(exc or Exception()), seconds, waits.pop(state.attempt_number, "backoff"))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts), wait=wait, before_sleep=log_retry, reraise=True,
            retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and is_retryable(exc)))
        try:
            async for attempt in retrying:
                with attempt:
                    async with self._semaphore():
                        return await asyncio.wait_for(litellm.acompletion(**params), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified just below
            if not is_retryable(exc):
                raise LLMError(
                    f"{self.model}: request failed and is not retryable ({self._describe(exc)})"
                ) from None
            raise LLMError(
                f"{self.model}: gave up after {attempts} attempts; last error: {self._failure(exc)}"
            ) from None
        raise AssertionError("unreachable: tenacity returns the result or raises")  # pragma: no cover

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return f"timed out after {self.timeout:g}s"
        status = _status_of(exc)
        prefix = f"HTTP {status} " if status is not None else ""
        return self.redact(f"{prefix}{type(exc).__name__}: {exc}")[:600]

    @staticmethod
    def _texts(response: Any) -> list[str]:
        return [(choice.message.content or "") for choice in response.choices]

    @staticmethod
    def _finish_reasons(response: Any) -> list[str]:
        return [str(getattr(choice, "finish_reason", None) or "stop") for choice in response.choices]

    def _usage(self, response: Any, started: float) -> Usage:
        usage = getattr(response, "usage", None)
        hidden = getattr(response, "_hidden_params", None) or {}
        if registered_without_price(self.model):
            cost = None
        elif "response_cost" in hidden:  # litellm priced it already (None: unknown price); a second try costs ~1 ms
            cost = hidden["response_cost"]
        else:
            try:
                cost = _litellm().completion_cost(completion_response=response)
            except Exception:  # price unknown for this model
                cost = None
        return Usage(
            getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
            cost, time.perf_counter() - started,
        )

    def _stream_cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if registered_without_price(self.model):
            return None
        try:
            return float(sum(_litellm().cost_per_token(model=self.model, prompt_tokens=prompt_tokens,
                                                       completion_tokens=completion_tokens)))
        except Exception:  # price unknown for this model
            return None

    async def stream_items(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int = 256,
                           stop: Sequence[str] | None = None, seed: int | None = None) -> AsyncIterator[Any]:
        """The reply as litellm streams it (``stream=True``, usage asked for with ``stream_options``); each
        piece must come within ``timeout`` seconds."""
        check_sampling(1, temperature, max_tokens)
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "stream": True,
                                  "stream_options": {"include_usage": True}}
        if stop:
            kwargs["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if seed is not None:
            kwargs["seed"] = seed
        response = await self._request([dict(m) for m in messages], 1, kwargs)
        parts: list[str] = []
        reason, usage = "stop", None
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(response.__anext__(), self.timeout)
                except StopAsyncIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - a stream that broke off, after its headers came
                    raise LLMError(f"{self.model}: the stream broke off ({self._describe(exc)})") from None
                usage = getattr(chunk, "usage", None) or usage
                for choice in getattr(chunk, "choices", None) or []:
                    reason = str(getattr(choice, "finish_reason", None) or reason)
                    text = getattr(getattr(choice, "delta", None), "content", None)
                    if text:
                        parts.append(text)
                        yield text
        finally:
            close = getattr(response, "aclose", None)
            if close is not None:
                await close()
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        yield Completion(["".join(parts)], Usage(prompt_tokens, completion_tokens,
                                                 self._stream_cost(prompt_tokens, completion_tokens),
                                                 time.perf_counter() - started), self.model, [reason])

    async def complete(self, messages: Sequence[Message], *, n: int = 1, temperature: float = 0.0,
                       max_tokens: int = 256, stop: Sequence[str] | None = None, seed: int | None = None) -> Completion:
        check_sampling(n, temperature, max_tokens)
        started = time.perf_counter()
        msgs = [dict(m) for m in messages]
        kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if stop:
            kwargs["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if n == 1 or self._supports_n():
            if seed is not None:
                kwargs["seed"] = seed
            response = await self._request(msgs, n, kwargs)
            return Completion(self._texts(response), self._usage(response, started), self.model,
                              self._finish_reasons(response))
        # n separate requests; a seed becomes seed, seed+1, ... so the samples differ but stay reproducible
        responses = await asyncio.gather(*(
            self._request(msgs, 1, kwargs if seed is None else {**kwargs, "seed": seed + i}) for i in range(n)
        ))
        usage = Usage(cost=None)
        for response in responses:
            usage = usage + self._usage(response, started)
        usage.latency_s = time.perf_counter() - started
        return Completion([t for r in responses for t in self._texts(r)], usage, self.model,
                          [f for r in responses for f in self._finish_reasons(r)])
