"""Prefill outside ``generate``: the prefix store, and exact reuse of an earlier prompt's KV cache with SmolLM2."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from ppdpp.planner.llm.local import LocalBackend
from ppdpp.planner.llm import prefill
from ppdpp.planner.llm.prefill import MIN_REUSE, PASS_CACHE_TOKENS, PREFILL_TOKENS, PrefixStore, reserved_cache


def kv(tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.arange(tokens, dtype=torch.float32).view(1, 1, tokens, 1),) * 2]


def test_the_store_finds_the_longest_shared_prefix_and_evicts_by_tokens():
    store = PrefixStore(max_tokens=100)
    store.add(list(range(40)), kv(40))
    store.add(list(range(30)) + [999] * 10, kv(40))
    shared, found = store.longest_prefix(list(range(35)) + [7, 7])
    assert shared == 35 and found[0][0].shape[2] == 35, "the prefix of the first entry, cut to what is shared"
    assert store.longest_prefix([5] + list(range(40))) is None, "nothing shared from the first token"
    assert store.longest_prefix(list(range(MIN_REUSE - 1)) + [-1]) is None, "too short to be worth reusing"
    store.add(list(range(1000, 1030)), kv(30))  # 110 tokens in all: the least recently used entry goes
    assert store.longest_prefix(list(range(30)) + [999] * 10)[0] == 30, "the second entry was evicted"
    assert store.reused_tokens == 35 + 30


def test_a_reserved_cache_writes_new_tokens_in_place_and_grows_past_its_room():
    prompt = torch.randn(2, 3, 5, 4)
    buffers = [torch.cat([prompt, torch.zeros(2, 3, 2, 4)], dim=2) for _ in range(2)]
    layer = reserved_cache([tuple(buffers)], filled=5).layers[0]
    assert layer.get_seq_length() == 5 and torch.equal(layer.keys, prompt)
    steps = [torch.randn(2, 3, 1, 4) for _ in range(3)]
    keys, _ = layer.update(steps[0], steps[0])
    assert keys.data_ptr() == buffers[0].data_ptr(), "within the room a step must not copy the cache"
    keys, _ = layer.update(steps[1], steps[1])
    keys, values = layer.update(steps[2], steps[2])  # the room held two: this one concatenates
    want = torch.cat([prompt, *steps], dim=2)
    assert torch.equal(keys, want) and torch.equal(values, want), "the cache must hold every token in order"
    assert layer.get_seq_length() == 8


def test_a_reserved_cache_stays_correct_after_crop_and_batch_selection():
    prompt = torch.randn(2, 3, 5, 4)
    buffers = tuple(torch.cat([prompt, torch.zeros(2, 3, 4, 4)], dim=2) for _ in range(2))
    layer = reserved_cache([buffers], filled=5).layers[0]
    first, second = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
    layer.update(first, first)
    layer.crop(-1)  # drop the token just added; the next one takes its place
    keys, _ = layer.update(second, second)
    assert torch.equal(keys, torch.cat([prompt, second], dim=2)), "after crop the next token overwrites the dropped one"
    layer.batch_select_indices(torch.tensor([1]))
    third = torch.randn(1, 3, 1, 4)
    keys, values = layer.update(third, third)
    want = torch.cat([prompt[1:], second[1:], third], dim=2)
    assert torch.equal(keys, want) and torch.equal(values, want), "a reindexed batch must not write into the old buffers"


@pytest.fixture(scope="module")
def backends(smollm2_gguf):
    with_store = LocalBackend("local/smollm2", dtype="float32")
    without = LocalBackend("local/smollm2", dtype="float32", prefix_cache_tokens=0)
    asyncio.run(with_store.load())
    yield with_store, without
    for backend in (with_store, without):
        asyncio.run(backend.aclose())


@pytest.mark.slow
def test_a_longer_prompt_continues_from_the_earlier_one_with_identical_output(backends):
    with_store, without = backends
    system = {"role": "system", "content": "You sell a used bike. Be brief and friendly, and firm on price."}
    first = [system, {"role": "user", "content": "Hi, is the bike still for sale?"}]
    later = [*first, {"role": "assistant", "content": "Yes, it is."}, {"role": "user", "content": "Would you take $80?"}]
    store = with_store.engine.prefix_store
    with_store.complete_sync(first, max_tokens=4)
    reused = store.reused_tokens
    got = with_store.complete_sync(later, max_tokens=12)
    assert store.reused_tokens - reused >= 30, "the second prompt should continue from the first one's cache"
    want = without.complete_sync(later, max_tokens=12)
    assert without.engine.prefix_store.reused_tokens == 0
    assert got.texts == want.texts, f"with the prefix reused {got.texts} != from scratch {want.texts}"


def test_prompts_of_similar_length_are_prefilled_together_longest_alone():
    # (index, new tokens, stored + new tokens)
    groups = prefill._group_by_length([(0, 300, 300), (1, 40, 90), (2, 2000, 2000), (3, 310, 400), (4, 35, 35),
                                       (5, 290, 290)])
    assert groups == [[4, 1, 5], [0, 3], [2]], groups
    for group in groups:
        assert len(group) == 1 or len(group) * 310 <= PREFILL_TOKENS, group


def test_long_stored_pasts_bound_a_group_as_well():
    # eight continuations of 100 new tokens: one group by new tokens, but 3,000 stored tokens each
    groups = prefill._group_by_length([(i, 100, 3100) for i in range(8)])
    assert all(len(group) * 3100 <= PASS_CACHE_TOKENS for group in groups), groups
    assert sorted(sum(groups, [])) == list(range(8))


def submit_together(backend, conversations: list[list[dict[str, str]]], max_tokens: int) -> list[str]:
    """Queue all requests while the model's worker is held, so that they are sure to run as one batch."""
    gate, holding = threading.Event(), threading.Event()
    held = backend.engine.batcher.submit_job(lambda: holding.set() or gate.wait())
    assert holding.wait(timeout=120), "the worker never took the holding job"

    async def together():
        tasks = [asyncio.ensure_future(backend.complete(m, max_tokens=max_tokens)) for m in conversations]
        while backend.engine.batcher.pending() < len(conversations):  # all queued while the worker is held
            await asyncio.sleep(0.001)  # a poll, not a guess at how long submitting takes
        gate.set()
        return await asyncio.gather(*tasks)

    texts = [c.text for c in asyncio.run(together())]
    held.result(timeout=5)
    return texts


@pytest.mark.slow
def test_continuations_from_different_prefixes_and_a_fresh_prompt_share_one_pass_with_identical_output(
        backends, monkeypatch):
    with_store, without = backends
    system = {"role": "system", "content": "You are a shop assistant in a bicycle shop. Answer in one short sentence."}
    bike = [system, {"role": "user", "content": "Do you sell second-hand bicycles, and how much is the cheapest one?"}]
    hours = [system, {"role": "user", "content": "Is the shop open on Sundays?"}]
    for first in (bike, hours):
        with_store.complete_sync(first, max_tokens=2)
    later = [
        [*bike, {"role": "assistant", "content": "Yes, from $90."}, {"role": "user", "content": "Would you take $70?"}],
        [*hours, {"role": "assistant", "content": "Yes, until noon."},
         {"role": "user", "content": "And on public holidays such as Christmas or New Year's Day?"}],
        [{"role": "user", "content": "What should I check before buying a used bicycle?"}],
    ]
    passes = []
    forward = prefill._forward
    monkeypatch.setattr(prefill, "_forward", lambda model, argument, ids, *rest: passes.append(ids.shape) or
                        forward(model, argument, ids, *rest))
    store = with_store.engine.prefix_store
    reused, before = store.reused_tokens, len(with_store.batch_sizes)

    got = submit_together(with_store, later, max_tokens=12)
    assert with_store.batch_sizes[before:] == [3], f"not one batch: {with_store.batch_sizes[before:]}"
    assert store.reused_tokens - reused >= 2 * 40, "both continuations should start from their stored prefixes"
    assert len(passes) == 1 and passes[0][0] == 3, f"expected one prefill pass over 3 rows, got shapes {passes}"
    want = [without.complete_sync(m, max_tokens=12).text for m in later]
    assert got == want, f"prefilled together {got} != each from scratch {want}"


def test_beginnings_shared_by_several_prompts_are_found_per_run_of_neighbours():
    a, b = [1] * 20 + [2, 3], [1] * 20 + [4]
    c, d, e = [9] * 30, [9] * 30 + [5], [9] * 25 + [6]
    lone = [7] * 40
    assert prefill._shared_beginnings([a, c, lone, b, d, e]) == [([1] * 20, 2), ([9] * 25, 3)]
    assert prefill._shared_beginnings([a, [1] * 10 + [8]]) == [], "shorter than MIN_REUSE is not worth a pass"


@pytest.mark.slow
def test_new_dialogues_with_the_same_system_prompt_compute_it_once_with_identical_output(backends):
    with_store, without = backends
    system = {"role": "system", "content": (
        "You are Bram, a patient tutor of Italian for adult beginners who are learning for their holidays. "
        "Correct their mistakes gently, explain the grammar behind each correction in plain English, give one "
        "short example sentence with its translation, and keep every answer under forty words. Never switch "
        "to another language than English and Italian, and never make fun of the learner.")}
    questions = ["How do I say 'good morning'?", "What is the plural of 'libro'?", "Is 'ciao' formal?"]
    store = with_store.engine.prefix_store
    system_tokens = len(with_store.engine.prompt_ids([system])) - 3  # without the generation prompt
    assert (len(questions) - 1) * system_tokens >= prefill.MIN_SAVED, "the test needs a longer system prompt"
    reused = store.reused_tokens
    conversations = [[system, {"role": "user", "content": q}] for q in questions]
    got = submit_together(with_store, conversations, max_tokens=10)
    assert store.reused_tokens - reused >= len(questions) * system_tokens, (
        "each new prompt should continue from the system prompt, computed once for the batch")
    want = [without.complete_sync(m, max_tokens=10).text for m in conversations]
    assert got == want, f"with the shared beginning {got} != from scratch {want}"


def test_choice_scores_from_the_prefilled_prompt_match_a_plain_forward_pass(backends):
    with_store, _ = backends
    engine = with_store.engine
    messages = [{"role": "user", "content": "Did the buyer and the seller reach a deal? Answer yes or no."}]
    choices = ["Yes, they reached a deal.", "No", "No, they did not reach a deal."]
    scores = engine.score(messages, choices)
    prompt = engine.prompt_ids(messages)
    for choice, score in zip(choices, scores):
        answer = engine.tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = engine.model(input_ids=torch.tensor([prompt + answer])).logits[0, :-1].float()
        expected = torch.log_softmax(logits, -1)[len(prompt) - 1:].gather(-1, torch.tensor(answer)[:, None]).sum()
        assert score == pytest.approx(float(expected), abs=1e-3), choice
