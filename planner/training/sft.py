"""Supervised fine-tuning of the policy planner on human strategy labels (PPDPP's first stage).

A run directory holds ``config.json`` (the settings), ``checkpoint.pt`` (model, optimizer, scheduler and RNG
state, the step counter and the evaluations so far; rewritten atomically after every evaluation and every
``checkpoint_every`` steps; removed when the run completes unless ``keep_checkpoint``), ``best/`` (the planner with the best selection macro-F1, see
:meth:`PolicyPlanner.save_pretrained`) and, once training has finished, ``metrics.json`` (test scores of the
planner and of the majority and random baselines).

Selection data: the ``valid`` split, or, when ``valid`` is among the training splits (little training data,
e.g. negotiation), a held-out share of the valid DIALOGUES (``holdout_fraction``) while the rest is trained on.
Class imbalance: class-weighted cross-entropy with weights proportional to ``1/sqrt(frequency)`` by default
(see docs/planner.md for the measurement behind that choice).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from tqdm.auto import tqdm

from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.checkpoints import CheckpointError, load_data_checkpoint
from ppdpp.planner.core.atomic import remove_stale_temporaries, write_atomic, write_json
from ppdpp.planner.core.faults import kill_point
from ppdpp.planner.policy.baselines import MajorityPolicy, RandomPolicy
from ppdpp.planner.core.domain import SPLITS, Domain, DomainError, ExamplesFromFile, SFTExample
from ppdpp.planner.core.hardware import pick_dtype
from ppdpp.planner.core.seeding import forked_torch_rng, torch_generator
from ppdpp.planner.training.metrics import Scores, mean_scores, score
from ppdpp.planner.training.tracking import Tracker, check_report_to, open_trackers, report_to_field
from ppdpp.planner.policy.model_card import sft_section, update_card
from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FIELDS = ("state", "model", "optimizer", "scheduler", "torch_rng", "config", "n_train")
CHECKPOINT_FORMAT = 1  # checkpoint.pt's format_version (a checkpoint without one is version 1)
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
BEST_DIR = "best"
RANDOM_BASELINE_SEEDS = 20

ClassWeighting = Literal["sqrt_inverse", "none"]
TrainDtype = Literal["float32", "bfloat16", "auto"]
StepHook = Callable[[int, list[int], float], None]


class SFTError(DomainError):
    """A run that cannot start or resume (existing run directory, missing or mismatched checkpoint)."""


@dataclass
class SFTConfig:
    """Settings of one SFT run. The freshly initialised head learns at ``head_lr_scale * lr`` (the pretrained
    encoder at ``lr``), so that a short run does not spend its steps waiting for the head. ``max_steps`` only
    stops early (checkpointed, resumable): the learning-rate schedule always spans ``epochs`` full epochs."""

    domain: str = field(metadata={"help": "Domain name (see `ppdpp plugins`).", "aliases": ["-d"]})
    epochs: int = field(default=2, metadata={"min": 1, "help": "Training epochs."})
    lr: float | None = field(default=None, metadata={"gt": 0, 
        "help": "Peak learning rate; none = 5e-5, or 5e-4 with --lora."})
    head_lr_scale: float = field(default=10.0, metadata={"gt": 0, "help": "The new head learns at this times --lr."})
    batch_size: int = field(default=16, metadata={"min": 1, "help": "Examples per optimizer step."})
    seed: int = field(default=0, metadata={"min": 0, "help": "Seed for initialisation, shuffling and dropout."})
    train_splits: tuple[str, ...] = field(default=("train",), metadata={
        "help": "Splits to train on: train, or train,valid (then a held-out part of valid selects). ppdpp sft's "
                "auto = train,valid when the train split has fewer labelled turns than valid, else train.",
        "cli_default": ("auto",)})
    holdout_fraction: float = field(default=0.25, metadata={"gt": 0, "lt": 1, "help": "Share of valid dialogues held out.",
                                                            "aliases": ["--holdout"]})
    class_weighting: ClassWeighting = field(default="sqrt_inverse", metadata={
        "help": "Cross-entropy class weights: 1/sqrt(frequency) or none."})
    label_smoothing: float = field(default=0.0, metadata={"min": 0, "lt": 1, 
        "help": "Cross-entropy label smoothing (0 = none, e.g. 0.1)."})
    train_dtype: TrainDtype = field(default="float32", metadata={
        "help": "Precision of the training forward pass: float32, bfloat16 (autocast) or auto (bfloat16 where "
                "the GPU or CPU has native bf16, else float32)."})
    warmup_ratio: float = field(default=0.1, metadata={"min": 0, "max": 1, "help": "Share of the steps with linear warm-up."})
    weight_decay: float = field(default=0.01, metadata={"min": 0, "help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"gt": 0, "help": "Gradients are clipped to this norm."})
    eval_every: int = field(default=0, metadata={"min": 0, "help": "Also evaluate and select every N steps (0 = per epoch)."})
    checkpoint_every: int = field(default=100, metadata={"min": 0, "help": "Also checkpoint every N steps (0 = never)."})
    max_steps: int | None = field(default=None, metadata={"min": 1, "help": "Stop (resumably) after this step."})
    max_train_examples: int | None = field(default=None, metadata={"min": 1, 
        "help": "Random subset of the training examples."})
    max_select_examples: int | None = field(default=None, metadata={"min": 1, 
        "help": "Random subset of the selection examples."})
    max_test_examples: int | None = field(default=None, metadata={"min": 1, 
        "help": "Random subset of the test examples (quick runs)."})
    train_file: str | None = field(default=None, metadata={
        "help": "Training examples from this file instead of the train split (JSON lines, CSV or a saved "
                "datasets folder; schemas in docs/data.md)."})
    valid_file: str | None = field(default=None, metadata={
        "help": "Selection (valid) examples from this file instead of the valid split."})
    test_file: str | None = field(default=None, metadata={
        "help": "Test examples from this file instead of the test split."})
    keep_checkpoint: bool = field(default=False, metadata={
        "help": "Keep checkpoint.pt (model, optimizer and RNG state, about 2/3 of the run folder) after the run "
                "completes; by default it is removed then (best/ and metrics.json stay)."})
    skip_bad_rows: bool = field(default=False, metadata={
        "help": "Skip a bad row of --train-file/--valid-file/--test-file with a warning instead of stopping."})
    report_to: tuple[str, ...] = report_to_field()
    planner: PlannerConfig = field(default_factory=PlannerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.planner, dict):
            self.planner = PlannerConfig(**self.planner)
        if self.lr is None:
            self.lr = 5e-4 if self.planner.lora else 5e-5
        self.train_splits = tuple(self.train_splits)
        self.report_to = check_report_to(self.report_to)
        problems = [f"train split {s!r} (use {', '.join(SPLITS[:2])})" for s in self.train_splits
                    if s not in ("train", "valid")]
        if not self.train_splits:
            problems.append("train_splits is empty")
        if problems:
            raise ValueError(f"invalid SFTConfig: {'; '.join(problems)}")
        check_fields(self)

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the interrupted one (all but ``max_steps``,
        ``report_to`` and ``keep_checkpoint``)."""
        out = asdict(self)
        out.pop("max_steps")
        out.pop("report_to")
        out.pop("keep_checkpoint")
        out["train_splits"] = list(self.train_splits)
        return out


CARD_SETTINGS = ("epochs", "lr", "batch_size", "seed", "train_splits", "class_weighting", "label_smoothing",
                 "train_dtype")
"""The SFT settings the model card names (all of them are in the run's config.json)."""


@dataclass
class SFTData:
    """The three example sets of a run; ``select_source`` says where the selection set came from."""

    train: list[SFTExample]
    select: list[SFTExample]
    test: list[SFTExample]
    select_source: str
    sources: dict[str, str] = field(default_factory=dict)
    mixed: bool = False  # some splits from the user's files, the others from the domain's data
    skipped: list[str] = field(default_factory=list)  # the bad rows of the user's files skipped (skip_bad_rows)

    def source_lines(self) -> list[str]:
        """One line per split: where it came from and how many examples (the run's header and config.json)."""
        return [f"{split}: {text}" for split, text in self.sources.items()]


@dataclass
class SFTResult:
    """What a run produced. ``finished`` is False when it stopped at ``max_steps``; then ``test`` is empty."""

    out_dir: Path
    step: int
    total_steps: int
    finished: bool
    best_select: dict[str, Any] | None
    test: dict[str, Scores] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


# ---- data ---------------------------------------------------------------------------------------------
def _dialogue_key(example: SFTExample, index: int) -> str:
    if example.case is not None:
        return example.case.id
    return example.history[0].text if example.history else f"#{index}"


def split_holdout(examples: Sequence[SFTExample], fraction: float, seed: int
                  ) -> tuple[list[SFTExample], list[SFTExample]]:
    """``(rest, held_out)``: about ``fraction`` of the DIALOGUES (by case id) held out, so that no dialogue
    contributes to both sides."""
    keys = list(dict.fromkeys(_dialogue_key(ex, i) for i, ex in enumerate(examples)))
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed)).tolist()
    held = {keys[i] for i in order[: max(1, round(fraction * len(keys)))]}
    rest = [ex for i, ex in enumerate(examples) if _dialogue_key(ex, i) not in held]
    out = [ex for i, ex in enumerate(examples) if _dialogue_key(ex, i) in held]
    return rest, out


def _subsample(examples: list[SFTExample], limit: int | None, seed: int) -> list[SFTExample]:
    if limit is None or len(examples) <= limit:
        return examples
    keep = sorted(torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[:limit].tolist())
    return [examples[i] for i in keep]


def split_examples(domain: Domain, split: str, data_dir: Path | None, file: str | None = None,
                   skip_bad_rows: bool = False) -> list[SFTExample]:
    """The SFT examples of ``split``: from ``file`` when given (see :func:`file_examples`), else from the
    domain's data under ``data_dir`` (``None``: its bundled cases)."""
    if file is None:
        return domain.sft_examples(split, data_dir)  # type: ignore[arg-type]  # a Split: callers pass SPLITS
    return file_examples(domain, split, file, skip_bad_rows).examples


def file_examples(domain: Domain, split: str, file: str, skip_bad_rows: bool = False) -> ExamplesFromFile:
    """The SFT examples of the user's ``file`` standing in for ``split``, and the messages of the rows skipped;
    a file that yields no example is an :class:`SFTError` naming it and saying why."""
    read = domain.sft_examples_file(Path(file), skip_bad_rows=skip_bad_rows)
    if not read.examples:
        raise SFTError(f"--{split}-file {file} gives no SFT examples: {_why_no_examples(domain, Path(file), read)}")
    return read


def _why_no_examples(domain: Domain, path: Path, read: ExamplesFromFile) -> str:
    """Why a user's file gave no SFT example: no rows, every row skipped, or rows without strategy labels."""
    if read.skipped:
        return f"all of its rows were skipped as bad ({len(read.skipped)})"
    try:
        cases = len(domain.load_cases_file(path).cases)
    except DomainError:
        cases = None
    if cases == 0:
        return "it holds no rows"
    return (f"{'its ' + str(cases) if cases else 'its'} case(s) have no agent turn with a strategy label after the "
            "first turn (SFT learns the label of each such turn; a file written by `ppdpp data convert` has none: "
            "label the turns (docs/data.md), or give the file to `ppdpp evaluate --cases-file` instead)")


def data_source(domain: Domain, data_dir: Path | None) -> str:
    """Where the domain's splits are read from: its folder under ``data_dir``, or the bundled cases."""
    return str(Path(data_dir) / domain.folder_name) if data_dir is not None else "the cases bundled with ppdpp"


def label_counts(examples: Sequence[SFTExample]) -> dict[str, int]:
    """How often each strategy labels ``examples`` (what ``config.json`` records for the majority baseline)."""
    counts: dict[str, int] = {}
    for example in examples:
        counts[example.label] = counts.get(example.label, 0) + 1
    return counts


def load_sft_data(domain: Domain, config: SFTConfig, data_dir: Path | None) -> SFTData:
    """Training, selection and test examples for ``config`` (see the module docstring); ``train_file``,
    ``valid_file`` and ``test_file`` stand in for the splits they name. ``SFTData.sources`` says, per split,
    where its examples came from and how many."""
    shared = data_source(domain, data_dir)
    skipped: list[str] = []

    def examples(split: str) -> tuple[list[SFTExample], str]:
        file = getattr(config, f"{split}_file")
        where = f"--{split}-file {file}" if file is not None else f"the {split} split of {shared}"
        if file is None:
            return domain.sft_examples(split, data_dir), where  # type: ignore[arg-type]  # a Split, as above
        read = file_examples(domain, split, file, config.skip_bad_rows)
        skipped.extend(read.skipped)
        return read.examples, where

    train: list[SFTExample] = []
    train_parts: list[str] = []
    valid, valid_where = examples("valid")
    select, source = valid, "valid" if config.valid_file is None else str(config.valid_file)
    select_where = valid_where
    if "train" in config.train_splits:
        part, where = examples("train")
        train += part
        train_parts.append(f"{len(part)} from {where}")
    if "valid" in config.train_splits:
        rest, select = split_holdout(valid, config.holdout_fraction, config.seed)
        train += rest
        share = 1 - config.holdout_fraction
        train_parts.append(f"{len(rest)} from {share:.0%} of the dialogues of {valid_where}")
        select_where = f"the other {config.holdout_fraction:.0%} of the dialogues of {valid_where}"
        source = f"held-out {config.holdout_fraction:.0%} of {'valid' if config.valid_file is None else source} dialogues"
    full_train = len(train)
    train = _subsample(train, config.max_train_examples, config.seed)
    full_select = len(select)
    select = _subsample(select, config.max_select_examples, config.seed + 1)
    test, test_where = examples("test")
    full_test = len(test)
    test = _subsample(test, config.max_test_examples, config.seed + 2)
    for name, part, split in (("training", train, "train"), ("selection", select, "valid"), ("test", test, "test")):
        if not part:
            location = getattr(config, f"{split}_file") or data_dir or "the bundled cases"
            raise SFTError(f"domain {domain.name!r} has no {name} examples in {location}")

    def line(kept: int, full: int, parts: str) -> str:
        sample = f" (a random {kept} of {full})" if kept < full else ""
        return f"{kept} examples{sample}: {parts}"

    sources = {"train": line(len(train), full_train, " + ".join(train_parts)),
               "valid": line(len(select), full_select, select_where),
               "test": line(len(test), full_test, test_where)}
    files = [config.train_file, config.valid_file, config.test_file]
    mixed = any(files) and not all(files)
    return SFTData(train, select, test, source, sources, mixed, list(dict.fromkeys(skipped)))


def auto_train_splits(domain: Domain, data_dir: Path | None, train_file: str | None = None,
                      valid_file: str | None = None, skip_bad_rows: bool = False) -> tuple[str, ...]:
    """``("train", "valid")`` when the train split has fewer labelled turns than valid (data-poor, like
    negotiation's 113 training dialogues), else ``("train",)``; a given file stands in for its split."""
    small = len(split_examples(domain, "train", data_dir, train_file, skip_bad_rows)) < len(
        split_examples(domain, "valid", data_dir, valid_file, skip_bad_rows))
    return ("train", "valid") if small else ("train",)


def class_weights(label_counts: Sequence[int], mode: ClassWeighting) -> torch.Tensor | None:
    """Cross-entropy class weights: ``1/sqrt(count)`` scaled so that the average training example weighs 1
    (``None`` for plain cross-entropy). Classes without examples get weight 0 (they are never a target)."""
    if mode == "none":
        return None
    counts = torch.tensor(label_counts, dtype=torch.float64)
    weights = torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))
    weights *= counts.sum() / (weights * counts).sum()
    return weights.float()


def training_dtype(name: TrainDtype, device: torch.device) -> torch.dtype:
    """The autocast dtype of the forward pass. ``auto``: bfloat16 where it is native (see
    :func:`~ppdpp.planner.core.hardware.pick_dtype`), else float32; never float16, which would need loss scaling."""
    if name == "auto":
        dtype = pick_dtype("auto", device)
        return dtype if dtype == torch.bfloat16 else torch.float32
    return pick_dtype(name, device)


def _linear_warmup_then_decay(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - step) / float(max(1, num_training_steps - num_warmup_steps)))


def linear_schedule_with_warmup(optimizer: torch.optim.Optimizer, num_warmup_steps: int, num_training_steps: int
                                ) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' ``get_linear_schedule_with_warmup`` (the same ``LambdaLR`` over the same ``partial``, so the
    same learning rates and the same scheduler state in a checkpoint) without importing
    ``transformers.optimization``, which imports peft: about 2.5 s of every ``ppdpp sft`` start
    (tests/test_sft.py checks it against transformers)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        _linear_warmup_then_decay, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps))


def optimizer_step(planner: PolicyPlanner, optimizer: torch.optim.Optimizer, loss_fn: torch.nn.Module,
                   inputs: Sequence[Sequence[int]], targets: torch.Tensor, dtype: torch.dtype,
                   max_grad_norm: float) -> torch.Tensor:
    """One training step on a batch of encoded inputs: the forward pass in train mode under autocast to
    ``dtype`` (none for float32), the loss in float32, gradients clipped to ``max_grad_norm``. Returns the
    loss (detached)."""
    planner.train()
    with torch.autocast(planner.device.type, dtype=dtype, enabled=dtype != torch.float32):
        logits = planner(*planner.collate(inputs))
    loss = loss_fn(logits.float(), targets.to(planner.device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(planner.parameters(), max_grad_norm)
    optimizer.step()
    return loss.detach()


# ---- evaluation ---------------------------------------------------------------------------------------
def evaluate_planner(planner: PolicyPlanner, examples: Sequence[SFTExample],
                     inputs: Sequence[Sequence[int]] | None = None, batch_size: int = 32) -> Scores:
    """Greedy predictions on ``examples`` scored against their labels; ``extra["loss"]`` is the mean
    (unweighted) cross-entropy. ``inputs`` are the pre-encoded token ids, when already at hand."""
    if inputs is None:
        inputs = [planner.encode(ex.history, ex.case) for ex in examples]
    probs = planner.probabilities(inputs, batch_size=batch_size)
    names = planner.strategy_names
    targets = torch.tensor([names.index(ex.label) for ex in examples])
    loss = -probs.clamp(min=1e-12).log().gather(1, targets[:, None]).mean().item()
    scores = score([ex.label for ex in examples], [names[i] for i in probs.argmax(-1).tolist()], names)
    scores.extra["loss"] = loss
    return scores


def _chosen(policy: MajorityPolicy | RandomPolicy, examples: Sequence[SFTExample]) -> list[str]:
    """The strategy a baseline chose for each example (it always chooses one: else ``score`` refuses the count)."""
    strategies = (policy.plan(ex.history, ex.case).strategy for ex in examples)
    return [strategy for strategy in strategies if strategy is not None]


def baseline_scores(domain: Domain, train: Sequence[SFTExample], examples: Sequence[SFTExample],
                    seeds: int = RANDOM_BASELINE_SEEDS) -> dict[str, Scores]:
    """The majority baseline (training labels) and the uniform random one (mean over ``seeds`` seeds)."""
    gold = [ex.label for ex in examples]
    names = domain.strategy_names
    majority = MajorityPolicy.from_examples(domain, train)
    out = {"majority": score(gold, _chosen(majority, examples), names)}
    runs = []
    for seed in range(seeds):
        policy = RandomPolicy(domain, seed=seed)
        runs.append(score(gold, _chosen(policy, examples), names))
    out["random"] = mean_scores(runs)
    return out


# ---- training -----------------------------------------------------------------------------------------
@dataclass
class _State:
    step: int = 0
    best_macro_f1: float = -1.0
    best_step: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _save_checkpoint(path: Path, planner: PolicyPlanner, optimizer: torch.optim.Optimizer, scheduler: Any,
                     state: _State, config: SFTConfig, n_train: int) -> None:
    payload = {
        "format_version": CHECKPOINT_FORMAT,
        "state": asdict(state),
        "model": planner.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "config": config.resume_key(),
        "n_train": n_train,
    }

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)
        kill_point("sft.checkpoint")

    remove_stale_temporaries(path.parent, (path.name, BEST_DIR))  # what a kill while writing them left behind
    write_atomic(path, write)


def _load_checkpoint(path: Path, planner: PolicyPlanner, optimizer: torch.optim.Optimizer, scheduler: Any,
                     config: SFTConfig, n_train: int) -> _State:
    fix = "restore it, or delete it and pass no --resume to start the run over"
    try:
        payload = load_data_checkpoint(path, CHECKPOINT_FIELDS)
    except CheckpointError as exc:
        raise SFTError(f"{exc}: {fix}") from None
    version = payload.get("format_version", CHECKPOINT_FORMAT)
    if version != CHECKPOINT_FORMAT:
        raise SFTError(f"{path}: format_version {version!r}, but this ppdpp reads version {CHECKPOINT_FORMAT} "
                       "(written by another ppdpp version): resume with that version, or start a new run with "
                       "another --out")
    if not isinstance(payload["config"], dict) or not isinstance(payload["state"], dict):
        raise SFTError(f"{path}: 'config' and 'state' must be dicts: {fix}")
    # a setting added after the checkpoint was written counts as its default
    saved = {**SFTConfig(config.domain).resume_key(), **payload.get("config", {})}
    differing = sorted(k for k in set(saved) | set(config.resume_key())
                       if saved.get(k) != config.resume_key().get(k))
    if differing:
        raise SFTError(f"{path} was written with other settings ({', '.join(differing)} differ); resume with the "
                       "same options or start a new run directory")
    if payload.get("n_train") != n_train:
        raise SFTError(f"{path} was trained on {payload.get('n_train')} examples but the data now gives {n_train}")
    try:
        planner.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["torch_rng"])
        return _State(**payload["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise SFTError(f"{path}: does not fit this planner ({type(exc).__name__}: {first}): {fix}") from None


def train_sft(config: SFTConfig, out_dir: str | Path, *, data_dir: Path | None = None, resume: bool = False,
              domain: Domain | None = None, on_step: StepHook | None = None, progress: bool = True,
              run_settings: dict[str, Any] | None = None, data: SFTData | None = None) -> SFTResult:
    """Train, select on the selection set by macro-F1, and (when all epochs are done) score the best planner
    and the baselines on test. ``resume`` continues from ``out_dir/checkpoint.pt`` at the saved step.
    ``on_step(step, example_indices, loss)`` is called after every optimizer step. Training seeds a fork of
    torch's global generators: the caller's generator state is the same after the call as before.
    ``run_settings`` (e.g. the command line's resolved settings) go into ``config.json`` when the run starts.
    ``data``: the examples :func:`load_sft_data` read for ``config`` (none = read them here)."""
    with forked_torch_rng():
        return _train_sft(config, out_dir, data_dir=data_dir, resume=resume, domain=domain, on_step=on_step,
                          progress=progress, run_settings=run_settings, data=data)


def _train_sft(config: SFTConfig, out_dir: str | Path, *, data_dir: Path | None, resume: bool,
               domain: Domain | None, on_step: StepHook | None, progress: bool,
               run_settings: dict[str, Any] | None, data: SFTData | None = None) -> SFTResult:
    from ppdpp.planner.registry.manager import get_domain

    out = Path(out_dir)
    checkpoint = out / CHECKPOINT_FILE
    if resume and not checkpoint.is_file() and (out / METRICS_FILE).is_file():
        raise SFTError(f"nothing to resume: the run in {out} has finished ({METRICS_FILE}); its {CHECKPOINT_FILE} "
                       "was removed when it completed (--keep-checkpoint keeps it)")
    if resume and not checkpoint.is_file():
        raise SFTError(f"nothing to resume: {checkpoint} does not exist (a run stopped before its first checkpoint "
                       "has nothing to keep): run the same command without --resume to start it over")
    if not resume and (checkpoint.exists() or (out / METRICS_FILE).exists()):
        raise SFTError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    domain = domain or get_domain(config.domain)
    data = data or load_sft_data(domain, config, data_dir)

    torch.manual_seed(config.seed)
    planner = PolicyPlanner(domain, config.planner)
    names = planner.strategy_names
    inputs = [planner.encode(ex.history, ex.case) for ex in data.train]
    select_inputs = [planner.encode(ex.history, ex.case) for ex in data.select]
    targets = torch.tensor([names.index(ex.label) for ex in data.train])
    weights = class_weights(torch.bincount(targets, minlength=len(names)).tolist(), config.class_weighting)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(planner.device) if weights is not None else None,
                                        label_smoothing=config.label_smoothing)

    autocast_dtype = training_dtype(config.train_dtype, planner.device)
    steps_per_epoch = math.ceil(len(inputs) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    head = list(planner.head.parameters())
    encoder = [p for p in planner.parameters() if p.requires_grad and all(p is not h for h in head)]
    assert config.lr is not None  # SFTConfig.__post_init__ resolved it
    # no encoder group with freeze_encoder: the head alone learns
    groups: list[dict[str, Any]] = [{"params": encoder}] if encoder else []
    optimizer = torch.optim.AdamW([*groups, {"params": head, "lr": config.lr * config.head_lr_scale}],
                                  lr=config.lr, weight_decay=config.weight_decay)
    scheduler = linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    if resume:
        state = _load_checkpoint(checkpoint, planner, optimizer, scheduler, config, len(inputs))
    else:
        state = _State()
        write_json(out / CONFIG_FILE, {**(run_settings or {}), **config.resume_key(), "max_steps": config.max_steps,
                                       "data": {
            "train_examples": len(data.train), "select_examples": len(data.select),
            "test_examples": len(data.test), "select_source": data.select_source, "sources": data.sources,
            "skipped_rows": len(data.skipped),
            "train_label_counts": label_counts(data.train)}})
    tracker = open_trackers(config.report_to, out, out.name)
    if not resume:
        tracker.log_params({**(run_settings or {}), **config.resume_key()})
    logged = state.step  # the steps up to the checkpoint are with the trackers already

    def evaluate_and_select() -> None:
        scores = evaluate_planner(planner, data.select, select_inputs)
        state.evaluations.append({"step": state.step, "accuracy": scores.accuracy, "macro_f1": scores.macro_f1,
                                  "loss": scores.extra["loss"]})
        if scores.macro_f1 > state.best_macro_f1:
            state.best_macro_f1, state.best_step = scores.macro_f1, state.step
            planner.save_pretrained(out / BEST_DIR)
            kill_point("sft.best")

    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=state.step, desc=f"sft {domain.name}", unit="step", disable=not progress)
    try:
        while state.step < total_steps:
            epoch, offset = divmod(state.step, steps_per_epoch)
            order = torch.randperm(len(inputs), generator=torch_generator(config.seed, "sft-epoch", epoch))
            batch = order[offset * config.batch_size: (offset + 1) * config.batch_size].tolist()
            loss = optimizer_step(planner, optimizer, loss_fn, [inputs[i] for i in batch], targets[batch],
                                  autocast_dtype, config.max_grad_norm)
            scheduler.step()
            state.step += 1
            state.losses.append(loss.item())
            kill_point("sft.step")
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", best_f1=f"{max(state.best_macro_f1, 0):.3f}")
            if on_step is not None:
                on_step(state.step, batch, loss.item())
            evaluate = state.step % steps_per_epoch == 0 or (config.eval_every and state.step % config.eval_every == 0)
            if evaluate:
                evaluate_and_select()
            stopping = config.max_steps is not None and state.step >= config.max_steps
            if evaluate or stopping or (config.checkpoint_every and state.step % config.checkpoint_every == 0):
                state.seconds += time.perf_counter() - started
                started = time.perf_counter()
                _save_checkpoint(checkpoint, planner, optimizer, scheduler, state, config, len(inputs))
                _report_steps(tracker, state, logged)
                logged = state.step
            if stopping and state.step < total_steps:
                return SFTResult(out, state.step, total_steps, False,
                                 state.evaluations[-1] if state.evaluations else None)
        state.seconds += time.perf_counter() - started
        result = _finish(out, domain, data, state, total_steps, config)
        tracker.log_metrics({f"test/{name}/{key}": value for name, scores in result.test.items()
                             for key, value in _scalars(scores).items()}, state.step)
        return result
    finally:
        bar.close()
        tracker.close()


def _scalars(scores: Scores) -> dict[str, float]:
    return {"accuracy": scores.accuracy, "macro_f1": scores.macro_f1, **scores.extra}


def _report_steps(tracker: Tracker, state: _State, since: int) -> None:
    """Log the checkpointed steps after ``since``: ``train/loss`` per step, ``eval/*`` per evaluation."""
    for step in range(since + 1, state.step + 1):
        tracker.log_metrics({"train/loss": state.losses[step - 1]}, step)
    for evaluation in state.evaluations:
        if since < evaluation["step"] <= state.step:
            tracker.log_metrics({f"eval/{k}": v for k, v in evaluation.items() if k != "step"}, evaluation["step"])


def _finish(out: Path, domain: Domain, data: SFTData, state: _State, total_steps: int,
            config: SFTConfig) -> SFTResult:
    best = PolicyPlanner.from_pretrained(out / BEST_DIR, domain=domain)
    test = {"planner": evaluate_planner(best, data.test), **baseline_scores(domain, data.train, data.test)}
    best_eval = next(e for e in state.evaluations if e["step"] == state.best_step)
    metrics = {
        "domain": domain.name,
        "test": {name: s.to_dict() for name, s in test.items()},
        "best_select": best_eval,
        "select_source": data.select_source,
        "evaluations": state.evaluations,
        "train": {"steps": state.step, "examples": len(data.train), "epochs": config.epochs,
                  "seconds": state.seconds, "peak_rss_mb": _peak_rss_mb(),
                  "first_loss": state.losses[0] if state.losses else None,
                  "last_losses_mean": (sum(state.losses[-20:]) / len(state.losses[-20:])) if state.losses else None},
    }
    write_json(out / METRICS_FILE, metrics)
    settings = {k: v for k, v in asdict(config).items() if k in CARD_SETTINGS}
    update_card(out / BEST_DIR, "Training (ppdpp sft)", sft_section(metrics, data.source_lines(), settings))
    if not config.keep_checkpoint:  # the run is complete: best/ and metrics.json are what it leaves
        (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    return SFTResult(out, state.step, total_steps, True, best_eval, test, metrics)
