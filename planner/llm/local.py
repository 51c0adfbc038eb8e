"""Local chat models through transformers, with concurrent requests micro-batched into one ``generate`` call.

``local/<name-or-path>`` opens :class:`LocalBackend`. GGUF files are de-quantized once and saved as
safetensors under ``$PPDPP_CACHE_DIR/models/hf`` so that later loads take a second instead of a minute.

One loaded model (an :class:`_Engine`) is shared by every backend opened with the same settings, so the agent,
the user simulator and the critic of many parallel dialogues all feed the same batches. Each batch is one
``generate`` call over left-padded prompts (the tokenizer's chat template applied): greedy rows and sampled
rows with different temperatures and seeds mix freely, because sampling is done per row with the Gumbel-max
trick from a per-row ``torch.Generator`` (reproducible for a given seed, whatever else is in the batch,
exactly so in float32), and each row stops at its own ``max_tokens`` and ``stop`` strings.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import torch

from ppdpp.planner.core.domain import Message
from ppdpp.planner.core.hardware import pick_device, pick_dtype
from ppdpp.planner.core.seeding import torch_generator
from ppdpp.planner.llm.base import ChatBackend, Completion, LLMError, TokenCounter
from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm.attention import use_cpu_attention
from ppdpp.planner.llm.batching import MicroBatcher
from ppdpp.planner.llm.models import LOCAL_PREFIX, ModelSource, models_dir, resolve_local_model
from ppdpp.planner.llm.prefill import PrefixStore, cache_argument, prefilled_cache
from ppdpp.planner.llm.sampling import check_sampling
from ppdpp.planner.llm.spend import Price


def converted_dir(source: ModelSource, dtype: torch.dtype) -> Path:
    """Where the safetensors copy of a GGUF file lives (keyed on the file's path, size and mtime)."""
    stat = source.path.stat()
    key = hashlib.sha256(f"{source.path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return models_dir() / "hf" / f"{source.path.stem}-{key}-{str(dtype).removeprefix('torch.')}"


def prepare_weights(source: ModelSource, dtype: torch.dtype) -> Path:
    """A Hugging Face folder for ``source``: the folder itself, or the GGUF file converted once (atomically:
    a half-written conversion is never seen, and concurrent converters agree on one result).

    One converted copy per GGUF file is kept, the most precise one asked for: a float32 copy serves every
    dtype (the loader casts it, which gives the same weights as converting to that dtype), and converting to
    float32 removes the half-precision copies it replaces."""
    if not source.is_gguf:
        return source.path
    target = converted_dir(source, dtype)
    if (target / "config.json").is_file():
        return target
    full = converted_dir(source, torch.float32)
    if (full / "config.json").is_file():
        return full
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        folder, name = str(source.path.parent), source.path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=dtype, local_files_only=True,
            quantization_config=GgufConfig(dequantize=True),
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if dtype == torch.float32:
        _remove_half_copies(source, target)
    return target


def _remove_half_copies(source: ModelSource, full: Path) -> None:
    """Remove the half-precision copies of ``source`` now that its float32 copy ``full`` serves every dtype
    (each is renamed away first, so no loader ever sees half a folder)."""
    for dtype in (torch.bfloat16, torch.float16):
        copy = converted_dir(source, dtype)
        if copy == full or not copy.is_dir():
            continue
        doomed = copy.with_name(f".{copy.name}.removed-{os.getpid()}")
        try:
            os.rename(copy, doomed)
        except OSError:  # another process removed it first
            continue
        shutil.rmtree(doomed, ignore_errors=True)


@dataclass
class _Request:
    messages: list[Message]
    n: int
    temperature: float
    max_tokens: int
    stop: tuple[str, ...]
    seed: int | None
    submitted: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        """Greedy samples are identical, so a greedy request needs one row whatever its ``n``."""
        return 1 if self.temperature == 0 else self.n


class _GumbelSampler:
    """A logits processor that samples per row: row ``i`` gets ``logits / T_i + Gumbel noise`` drawn from its own
    generator, so the argmax that greedy ``generate`` takes is a sample from ``softmax(logits / T_i)``.
    Rows with ``T_i == 0`` are left alone (plain greedy)."""

    def __init__(self, temperatures: list[float], generators: list[torch.Generator | None]) -> None:
        self.temperatures = temperatures
        self.generators = generators

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, (temperature, generator) in enumerate(zip(self.temperatures, self.generators)):
            if temperature == 0 or generator is None:
                continue
            uniform = torch.rand(scores.shape[-1], generator=generator).clamp_(1e-20, 1.0).to(scores.device)
            scores[row] = scores[row] / temperature - torch.log(-torch.log(uniform))
        return scores


class _RowStops:
    """A stopping criterion per row: its own token budget and stop strings."""

    def __init__(self, tokenizer: Any, prompt_len: int, budgets: list[int], stops: list[tuple[str, ...]]) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.budgets = torch.tensor(budgets)
        self.stops = stops
        self.tail = max((len(s) for row in stops for s in row), default=0) + 1

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **_kwargs: Any) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_len
        done = generated >= self.budgets.to(input_ids.device)
        for row, stop in enumerate(self.stops):
            if stop and not done[row]:
                text = self.tokenizer.decode(input_ids[row, -min(self.tail, generated):], skip_special_tokens=True)
                done[row] = any(s in text for s in stop)
        return done


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


class _TextStreamer:
    """A ``generate`` streamer (and stopping criterion) for one row: decodes the tokens so far and hands each
    new stretch of text to ``emit`` (on the worker thread). Text that may still turn out to be part of a stop
    string, or half a UTF-8 character, is held back; :meth:`cancel` stops generation at the next step."""

    def __init__(self, tokenizer: Any, end_ids: set[int], max_tokens: int, stop: tuple[str, ...],
                 emit: Callable[[str], None]) -> None:
        self.tokenizer, self.end_ids, self.max_tokens, self.emit = tokenizer, end_ids, max_tokens, emit
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.stop = stop
        self.tokens: list[int] = []
        self.sent = 0
        self.prompt_seen = False
        self.ended = False
        self.cancelled = threading.Event()

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        for token in value.reshape(-1)[:1].tolist():
            if self.ended or token in self.end_ids or len(self.tokens) >= self.max_tokens:
                self.ended = True
                return
            self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if any(s in text for s in self.stop):
            self.ended = True
            return
        ready = len(text.rstrip("\ufffd")) - self.hold
        if ready > self.sent:
            self.emit(text[self.sent:ready])
            self.sent = ready

    def end(self) -> None:
        """The rest comes from the finished completion (cut at its stop string)."""

    def cancel(self) -> None:
        self.cancelled.set()

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **_kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.cancelled.is_set(), dtype=torch.bool, device=input_ids.device)


class _Engine:
    """One loaded model and tokenizer, and the micro-batcher that feeds it."""

    def __init__(self, source: ModelSource, *, device: str, dtype: str, max_batch_size: int, max_wait_s: float,
                 prefix_cache_tokens: int) -> None:
        self.source = source
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.prefix_store = PrefixStore(prefix_cache_tokens)
        self.model: Any = None
        self.tokenizer: Any = None
        self.eos_ids: list[int] = []
        self.end_ids: set[int] = set()
        self.users = 0
        self.batcher: MicroBatcher[_Request, Completion] = MicroBatcher(
            self._generate, max_batch_size=max_batch_size, max_wait_s=max_wait_s, rows=lambda r: r.rows,
            name=f"ppdpp-local-{source.name}",
        )

    # -- on the worker thread ------------------------------------------------------------------------------
    def load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = prepare_weights(self.source, self.dtype)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype, local_files_only=True)
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' wrapper of `to` hides self
        use_cpu_attention(self.model)
        self.tokenizer = tokenizer
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = sorted({*eos, tokenizer.eos_token_id} - {None})
        self.end_ids = set(self.eos_ids) | {tokenizer.pad_token_id}

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate(self, batch: list[_Request]) -> list[Completion | Exception]:
        """One ``generate`` call for the batch; a request whose messages the chat template rejects fails alone."""
        self.load()
        prompted: list[tuple[_Request, list[int]]] = []
        failed: dict[int, Exception] = {}
        for index, request in enumerate(batch):
            try:
                prompted.append((request, self.prompt_ids(request.messages)))
            except Exception as exc:  # noqa: BLE001 - e.g. a role the template does not know
                failed[index] = LLMError(f"{LOCAL_PREFIX}{self.source.name}: cannot build the prompt: {exc}")
        done = iter(self._generate_prompted(prompted) if prompted else [])
        return [failed[i] if i in failed else next(done) for i in range(len(batch))]

    def _generate_prompted(self, prompted: list[tuple[_Request, list[int]]],
                           streamer: _TextStreamer | None = None) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        requests = [request for request, _ in prompted]
        prompts = [ids for _, ids in prompted]
        rows: list[tuple[int, list[int]]] = []  # (request index, prompt ids), one per sequence to generate
        temperatures: list[float] = []
        generators: list[torch.Generator | None] = []
        for index, (request, ids) in enumerate(zip(requests, prompts)):
            base_seed = request.seed if request.seed is not None else random.getrandbits(62)
            for sample in range(request.rows):
                rows.append((index, ids))
                temperatures.append(float(request.temperature))
                generators.append(None if request.temperature == 0 else
                                  torch_generator(base_seed, "sample", sample))
        width = max(len(ids) for _, ids in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in rows], device=self.device)
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids in rows], device=self.device)
        budgets = [requests[i].max_tokens for i, _ in rows]
        cache = prefilled_cache(self.model, pad, prompts, [index for index, _ in rows], width, self.prefix_store,
                                room=max(budgets) + 1)
        config = GenerationConfig(
            max_new_tokens=max(budgets), do_sample=False, num_beams=1, pad_token_id=pad,
            eos_token_id=self.eos_ids, bos_token_id=self.model.generation_config.bos_token_id,
        )
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids, attention_mask=attention, generation_config=config,
                **({cache_argument(self.model): cache} if cache is not None else {}),
                logits_processor=LogitsProcessorList([_GumbelSampler(temperatures, generators)]),
                stopping_criteria=StoppingCriteriaList(
                    [_RowStops(self.tokenizer, width, budgets, [requests[i].stop for i, _ in rows]),
                     *([streamer] if streamer is not None else [])]
                ),
                **({"streamer": streamer} if streamer is not None else {}),
            )
        new_tokens = output[:, width:].tolist()
        texts: list[list[str]] = [[] for _ in requests]
        reasons: list[list[str]] = [[] for _ in requests]
        counts = [0] * len(requests)
        for (index, _), tokens in zip(rows, new_tokens):
            ended = next((k for k, tok in enumerate(tokens) if tok in self.end_ids), None)
            kept = min(len(tokens) if ended is None else ended, requests[index].max_tokens)
            counts[index] += kept
            text = self.tokenizer.decode(tokens[:kept], skip_special_tokens=True)
            cut = _cut_at_stop(text, requests[index].stop)
            texts[index].append(cut)
            stopped = (ended is not None and ended <= kept) or len(cut) < len(text)
            reasons[index].append("stop" if stopped or kept < requests[index].max_tokens else "length")
        done = time.perf_counter()
        completions = []
        for request, ids, samples, why, count in zip(requests, prompts, texts, reasons, counts):
            if request.temperature == 0:
                samples, why, count = samples * request.n, why * request.n, count * request.n
            usage = Usage(len(ids), count, 0.0, done - request.submitted)
            completions.append(Completion(samples, usage, f"{LOCAL_PREFIX}{self.source.name}", why))
        return completions

    def generate_streamed(self, request: _Request, make_streamer: Callable[[Any, set[int]], _TextStreamer]
                          ) -> Completion:
        """One request alone (on the worker thread), its text handed to a streamer as it is generated."""
        self.load()
        try:
            ids = self.prompt_ids(request.messages)
        except Exception as exc:  # noqa: BLE001 - e.g. a role the template does not know
            raise LLMError(f"{LOCAL_PREFIX}{self.source.name}: cannot build the prompt: {exc}") from None
        return self._generate_prompted([(request, ids)], make_streamer(self.tokenizer, self.end_ids))[0]

    def score(self, messages: Sequence[Message], choices: Sequence[str]) -> list[float]:
        """Total log-likelihood of each choice as the assistant's reply to ``messages``. The prompt is prefilled
        once (continuing from the prefix store) and only the choices run per row."""
        self.load()
        prompt = self.prompt_ids(messages)
        pad = self.tokenizer.pad_token_id
        scores: list[float] = []
        step = self.batcher.max_batch_size
        for start in range(0, len(choices), step):
            answers = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices[start:start + step]]
            cache = prefilled_cache(self.model, pad, [prompt], [0] * len(answers), len(prompt), self.prefix_store,
                                    room=1 + max(len(a) for a in answers))
            done = len(prompt) - 1 if cache is not None else 0  # prompt tokens already in the cache
            width = max(len(a) for a in answers) + len(prompt) - done
            ids = torch.tensor([prompt[done:] + a + [pad] * (width - len(prompt) + done - len(a)) for a in answers])
            mask = torch.tensor([[1] * (len(prompt) + len(a)) + [0] * (width - len(prompt) + done - len(a))
                                 for a in answers])
            extra = {cache_argument(self.model): cache} if cache is not None else {}
            positions = torch.arange(done, done + width, device=self.device)[None]
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                    position_ids=positions, **extra).logits
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            picked = logprobs.gather(-1, ids[:, 1:, None].to(self.device)).squeeze(-1).cpu()
            first = len(prompt) - 1 - done  # the position whose logits predict the first answer token
            for row, answer in enumerate(answers):
                scores.append(float(picked[row, first: first + len(answer)].sum()))
        return scores


def _tokenizer_of(model: str) -> Any:
    """The tokenizer of ``local/<name>``, without loading the model."""
    from transformers import AutoTokenizer

    source = resolve_local_model(model.removeprefix(LOCAL_PREFIX))
    folder = None
    if source.is_gguf:
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            if (converted_dir(source, dtype) / "config.json").is_file():
                folder = converted_dir(source, dtype)
                break
    if folder is None:
        folder = prepare_weights(source, pick_dtype("auto", pick_device("auto")))
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


_engines: dict[tuple, _Engine] = {}
_engines_lock = threading.Lock()


class LocalBackend(ChatBackend):
    """A transformers model on this machine. Loading happens on the worker thread at the first request (or
    :meth:`load`); backends opened with the same model and settings share one loaded model and its batches.

    Options: ``device`` (auto/cpu/cuda), ``dtype`` (auto/float32/bfloat16/float16), ``max_batch_size`` (rows per
    ``generate`` call, default 16), ``max_wait_ms`` (how long a batch waits for the next request, default 5;
    see :mod:`.batching`),
    ``num_threads`` (for scripts: calls ``torch.set_num_threads`` here, in the caller's thread, and that stays
    the count of the whole process, as torch has one setting; default ``None`` leaves it alone: loading and
    generating never change it, so a library or a test that opens a backend keeps its own setting),
    ``prefix_cache_tokens`` (prompt tokens whose KV cache is kept to continue later prompts that start the same
    way, default 32768; 0 turns it off; see :mod:`.prefill`).
    """

    free = True  # on this machine: no price
    # no concurrency_option: concurrent requests share its batches instead

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", max_batch_size: int = 16,
                 max_wait_ms: float = 5.0, num_threads: int | None = None, prefix_cache_tokens: int = 32768) -> None:
        self.model = model if model.startswith(LOCAL_PREFIX) else f"{LOCAL_PREFIX}{model}"
        source = resolve_local_model(self.model.removeprefix(LOCAL_PREFIX))
        if num_threads:
            torch.set_num_threads(num_threads)
        key = (source.path, device, dtype, max_batch_size, max_wait_ms, prefix_cache_tokens)
        with _engines_lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = _Engine(
                    source, device=device, dtype=dtype, max_batch_size=max_batch_size,
                    max_wait_s=max_wait_ms / 1000, prefix_cache_tokens=prefix_cache_tokens,
                )
            engine.users += 1
        self._key = key
        self._engine: _Engine | None = engine

    def __repr__(self) -> str:
        return f"LocalBackend({self.model!r})"

    # -- what it can do (ChatBackend's capabilities) -------------------------------------------------------
    @classmethod
    def check_model(cls, model: str, **options: Any) -> None:
        """A model that is not installed says how to get it (:class:`ModelNotInstalledError`)."""
        resolve_local_model(model.removeprefix(LOCAL_PREFIX))

    @classmethod
    def price(cls, model: str) -> Price:
        return Price(0.0, 0.0)

    @classmethod
    def token_counter(cls, model: str) -> tuple[TokenCounter, str] | None:
        """Its tokenizer and chat template, from the model's Hugging Face folder (a GGUF file's converted copy,
        made once if there is none yet: the run would make it anyway); ``None`` where there is none to be had."""
        try:
            tokenizer = _tokenizer_of(model)
        except Exception:  # noqa: BLE001 - no tokenizer to be had: the estimate falls back to bytes
            return None

        def count(messages: Sequence[Message]) -> int:
            text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        return count, "tokenizer"

    async def count_prompt_tokens(self, messages: Sequence[Message]) -> tuple[int, str] | None:
        """By the model's own chat template and tokenizer (loaded first if it is not yet; counted on a worker
        thread); ``None`` where the template rejects the messages (that fails later, at generation)."""
        engine = self.engine
        if engine.tokenizer is None:
            await self.load()
        try:
            return len(await asyncio.to_thread(engine.prompt_ids, list(messages))), f"{self.model}'s tokenizer"
        except Exception:  # noqa: BLE001 - a template that rejects the messages fails later, at generation
            return None

    @property
    def engine(self) -> _Engine:
        if self._engine is None:
            raise LLMError(f"{self.model}: backend is closed")
        return self._engine

    @property
    def batch_sizes(self) -> list[int]:
        """Rows per ``generate`` call, of the latest ``BATCH_HISTORY`` calls (shared with every backend on the
        same model)."""
        return list(self.engine.batcher.batch_sizes)

    async def load(self) -> None:
        """Load the model now (on the worker thread) instead of at the first request."""
        await self.engine.batcher.run_job(self.engine.load)

    async def complete(self, messages: Sequence[Message], *, n: int = 1, temperature: float = 0.0,
                       max_tokens: int = 256, stop: Sequence[str] | None = None, seed: int | None = None) -> Completion:
        check_sampling(n, temperature, max_tokens)
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        request = _Request([dict(m) for m in messages], n, float(temperature), max_tokens, stops, seed)
        return await self.engine.batcher.run(request)

    async def stream_items(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int = 256,
                           stop: Sequence[str] | None = None, seed: int | None = None) -> AsyncIterator[Any]:
        """The reply's text as it is generated: the request runs alone on the worker thread (outside the
        micro-batch), its streamer feeding an asyncio queue; closing the stream early stops the generation."""
        check_sampling(1, temperature, max_tokens)
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        request = _Request([dict(m) for m in messages], 1, float(temperature), max_tokens, stops, seed)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        streamers: list[_TextStreamer] = []

        def send(item: str | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the consumer's loop is gone: nobody is listening any more
                if streamers:
                    streamers[0].cancel()

        def make_streamer(tokenizer: Any, end_ids: set[int]) -> _TextStreamer:
            streamers.append(_TextStreamer(tokenizer, end_ids, max_tokens, stops, send))
            return streamers[0]

        engine = self.engine
        future = engine.batcher.submit_job(lambda: engine.generate_streamed(request, make_streamer))
        future.add_done_callback(lambda _future: send(None))
        sent = ""
        try:
            while (piece := await queue.get()) is not None:
                sent += piece
                yield piece
            completion = future.result()
        finally:
            if not future.done() and not future.cancel() and streamers:
                streamers[0].cancel()
        rest = completion.text[len(sent):] if completion.text.startswith(sent) else ""
        if rest:
            yield rest
        yield completion

    async def score_choices(self, messages: Sequence[Message], choices: list[str]) -> list[float]:
        engine = self.engine
        return await engine.batcher.run_job(lambda: engine.score(messages, list(choices)))

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        with _engines_lock:
            engine.users -= 1
            if engine.users > 0:
                return
            _engines.pop(self._key, None)
        await asyncio.to_thread(engine.batcher.close)
