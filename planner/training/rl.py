"""REINFORCE for the policy planner from self-play, as in PPDPP, with checkpoints, exact resume and curves.

Each episode is a simulated dialogue (``simulators.env.SelfPlayEnv``) whose per-turn rewards come from the
critic. PPDPP's update (``agent.py``, ``optimize_model``): discounted returns ``G_t = r_t + gamma G_{t+1}``,
normalised within the episode to zero mean and unit standard deviation (only when the episode has more
than one turn), loss ``-sum_t log pi(a_t|s_t) G_t``, AdamW. That is ``normalize="episode"``.

The default, ``normalize="turn"``, normalises the returns at turn ``t`` across the update's episodes that
reached turn ``t`` (a per-turn baseline); ``"batch"`` normalises all turns of the update together; ``"none"``
keeps raw returns; ``"group"`` is GRPO's outcome advantage (Shao et al. 2024, DeepSeekMath): with
``group_size`` G > 1 the update's dialogues come in groups of G that play one case with one seed (the user's,
the agent's and the critic's draws are shared: common random numbers), so they differ only where the planner's
own draws differ; each dialogue's return is compared with its group's (minus the group mean, over the group's
standard deviation) and that one weight goes on every turn. A group whose dialogues all end alike teaches
nothing; a choice that wins against its own group on the same case and draws does.

``branch_strategies`` replaces the sampled-action estimate altogether: after an update's dialogues are played,
each decision ``t`` of each dialogue is played again with every other strategy at ``t`` (the same seed, so
the same state: common random numbers; the planner samples after ``t``), which gives a return ``Q(s_t, a)`` for
every strategy ``a``, and the step moves the logits by the gaps ``Q(s_t, a) - mean_a Q(s_t, a)`` (the natural
policy gradient of a softmax policy, with Monte Carlo returns: see :meth:`RLTrainer.branch_update`): a strategy
the planner rarely samples is still tried, and still moved, at every state the planner reaches.

Why the default departs from PPDPP: normalising within an episode makes each episode's
weights sum to zero, so an episode that succeeds after neutral turns (rewards 0, 0, 1: returns 1, 1, 1)
teaches nothing; normalising the whole batch favours late turns, whose reward-to-go sums fewer penalties.
On the scripted check (docs/selfplay.md) only "turn" learns. ``entropy_coef`` adds an entropy bonus
(0 in PPDPP) that keeps the planner exploring.

Episodes are played ``episodes_per_update`` at a time, concurrently, with the planner's parameters fixed;
then one update. The log-probabilities are recomputed for the update (the planner in train mode, dropout
seeded per update), so rollouts keep no autograd graph.

Run directory::

    config.json          the RLConfig and what was trained
    transcripts.jsonl    one line per finished episode (also the journal that resume reads)
    checkpoints/latest.json -> checkpoints/update-NNNNNN/{planner/, state.pt}
    checkpoints/update-NNNNNN/{head.safetensors, state.pt}, checkpoints/frozen/planner/
                         when only the head trains (a frozen encoder, --head-only): each checkpoint holds the head
                         (a few KB), and the planner with its untrained weights is written once per run
    curve.json, curve.png  per update: mean reward, success rate, average turns (the PNG at the end, and at
                           checkpoints at most once a minute)
    final/               the trained planner (save_pretrained)

Resume is exact: the checkpoint records the finished updates and episode ids; finished episodes after it are
read back from the transcripts (full batches are replayed as updates without calling any LLM, a partial
batch keeps its finished episodes), so no finished episode is repeated or lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from safetensors.torch import load_file, save_file

from ppdpp.planner.core.checkpoints import CheckpointError, load_data_checkpoint
from ppdpp.planner.core.atomic import atomic_directory, remove_stale_temporaries, write_atomic, write_json
from ppdpp.planner.core.bounds import check_fields
from ppdpp.planner.core.domain import Case, Domain, DomainError, Turn
from ppdpp.planner.core.faults import kill_point
from ppdpp.planner.core.plan import Plan, TrainablePolicy
from ppdpp.planner.core.seeding import derive_seed, forked_torch_rng, python_random
from ppdpp.planner.training.tracking import Tracker, check_report_to, open_trackers, report_to_field
from ppdpp.simulators.critic import Critic
from ppdpp.simulators.env import EnvConfig

Normalize = Literal["episode", "batch", "turn", "group", "none"]
Branches = list[dict[str, float] | None]
"""One dialogue's branches: per decision, each strategy's return there (``None``: a replay missed the state)."""
STATE_FILE = "state.pt"
LATEST_FILE = "latest.json"
HEAD_FILE = "head.safetensors"  # a head-only checkpoint: the trained head alone
FROZEN_DIR = "frozen"  # checkpoints/frozen/planner: the untrained weights that every head-only checkpoint uses
STATE_FIELDS = ("format_version", "updates_done", "finished", "curve", "optimizer", "config")
CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a directory name, never a path
RESUME_FIX = "point it at an intact checkpoints/update-NNNNNN, or delete it to replay the run from its transcripts"
NEW_RUN_FIX = "start a new run with another --out"
TRANSCRIPT_FIELDS = {"episode": int, "case_id": str, "opening": list, "steps": list, "success": bool}
TURN_STD_FLOOR = 1e-3  # "turn" normalisation: returns that differ by less (discounting alone) stay ~0
PLOT_EVERY_S = 60.0  # curve.png at a checkpoint at most this often (always at the end)
UPDATE_CHUNK = 32  # dialogue states per forward/backward pass in an update (gradients accumulate)
FORMAT_VERSION = 1


class RLError(RuntimeError):
    """A run directory that cannot be resumed or written as asked."""


@dataclass
class RLConfig:
    """REINFORCE settings. Defaults follow PPDPP (gamma 0.999, lr 1e-6, 8 turns, agent and user sampled at 0.7
    while training) except ``normalize`` (see the module docstring) and the critic (greedy, see
    ``simulators.critic``). ``env`` is what every training dialogue is played with: the trainer hands it to
    ``make_env``. ``split`` names the cases the dialogues are played on (the caller loads them)."""

    episodes: int = field(default=200, metadata={"min": 1, "help": "Training dialogues in total."})
    episodes_per_update: int = field(default=8, metadata={"min": 1, "help": "Dialogues per REINFORCE step."})
    gamma: float = field(default=0.999, metadata={"min": 0, "max": 1, "help": "Discount factor."})
    lr: float = field(default=1e-6, metadata={"gt": 0, "help": "Learning rate (PPDPP: 1e-6)."})
    normalize: Normalize = field(default="turn", metadata={
        "help": "Return normalisation: turn, episode (PPDPP), batch, group (GRPO: against the dialogue's group, "
                "needs --group-size above 1) or none."})
    group_size: int = field(default=1, metadata={"min": 1, "help": (
        "Dialogues per group: a group plays one case with one seed (user, agent and critic draws shared), so its "
        "dialogues differ only in the planner's draws (1 = each dialogue its own case and seed; GRPO: 8-16).")})
    concurrency: int = field(default=8, metadata={"min": 1, "help": "Dialogues played at once."})
    seed: int = field(default=0, metadata={"min": 0, "help": "Seed for case order, sampling and dropout."})
    checkpoint_every: int = field(default=1, metadata={"min": 1, "help": "Checkpoint every N updates."})
    keep_checkpoints: int = field(default=2, metadata={"min": 1, "help": "Checkpoints kept on disk."})
    grad_clip: float | None = field(default=1.0, metadata={"gt": 0, "help": "Gradient norm clip (none = off)."})
    entropy_coef: float = field(default=0.0, metadata={"min": 0, "help": "Entropy bonus weight."})
    branch_strategies: bool = field(default=False, metadata={"help": (
        "At every decision of each played dialogue, play it again with every other strategy there (same seed; "
        "the planner samples after it) and move the planner's logits by every strategy's return, not only the "
        "sampled one's (a natural policy-gradient step; --normalize is then unused). Needs seeded players "
        "(docs/selfplay.md).")})
    decision_bias_lr: float = field(default=1.0, metadata={"gt": 0, "help": (
        "Step size of the planner's per-decision bias (a planner trained with --decision-bias): plain gradient "
        "steps, as Adam would move every entry by about the same amount whatever its gradient.")})
    decision_bias_decay: float = field(default=0.0, metadata={"min": 0, "lt": 1, "help": (
        "Share of the per-decision bias forgotten at every update, before its step: the bias then follows the "
        "recent returns of each decision, not what the first, untrained updates said (0 = keep all).")})
    train_backbone: bool = field(default=True, metadata={"help": "Update the encoder too (else the head only).",
                                                         "negative": ["--head-only"]})
    split: str = field(default="train", metadata={"help": "Which cases to train on."})
    report_to: tuple[str, ...] = report_to_field()
    env: EnvConfig = field(default_factory=lambda: EnvConfig(temperature=0.7))

    def __post_init__(self) -> None:
        if isinstance(self.env, dict):
            self.env = EnvConfig(**self.env)
        self.report_to = check_report_to(self.report_to)
        check_fields(self)
        if self.normalize == "group" and self.group_size == 1:  # (its bound, at least 1, is checked above)
            raise ValueError("normalize='group' compares each dialogue with its group: set group_size to 2 or more "
                             f"(got {self.group_size})")
        if self.episodes_per_update % self.group_size:
            raise ValueError(f"episodes_per_update ({self.episodes_per_update}) must be a multiple of group_size "
                             f"({self.group_size}): a group is trained in one update")

    @property
    def updates(self) -> int:
        return math.ceil(self.episodes / self.episodes_per_update)


# ---- REINFORCE math ---------------------------------------------------------------------------------------
def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """``G_t = r_t + gamma * G_{t+1}``, computed backwards from the last turn."""
    out: list[float] = []
    running = 0.0
    for r in reversed(rewards):
        running = float(r) + gamma * running
        out.append(running)
    return out[::-1]


def normalise_returns(returns: Sequence[float]) -> list[float]:
    """Zero mean, unit (sample) standard deviation, as PPDPP; one value is left as it is."""
    if len(returns) <= 1:
        return [float(r) for r in returns]
    t = torch.tensor(returns, dtype=torch.float64)
    eps = float(torch.finfo(torch.float32).eps)
    return ((t - t.mean()) / (t.std() + eps)).tolist()


def advantages(episode_rewards: Sequence[Sequence[float]], gamma: float, normalize: Normalize,
               groups: Sequence[int] | None = None) -> list[list[float]]:
    """The weight of each turn's log-probability, per episode, for the chosen normalisation (``"group"`` needs
    ``groups``, each episode's group id)."""
    returns = [discounted_returns(r, gamma) for r in episode_rewards]
    if normalize == "group":
        if groups is None or len(groups) != len(returns):
            raise ValueError("normalize='group' needs one group id per episode")
        return group_advantages(returns, groups)
    if normalize == "episode":
        return [normalise_returns(g) for g in returns]
    if normalize == "batch":
        flat = normalise_returns([g for ep in returns for g in ep])
        out, i = [], 0
        for ep in returns:
            out.append(flat[i:i + len(ep)])
            i += len(ep)
        return out
    if normalize == "turn":
        out = [[0.0] * len(ep) for ep in returns]
        for t in range(max((len(ep) for ep in returns), default=0)):
            rows = [i for i, ep in enumerate(returns) if len(ep) > t]
            column = torch.tensor([returns[i][t] for i in rows], dtype=torch.float64)
            if len(rows) > 1:
                column = (column - column.mean()) / (column.std() + TURN_STD_FLOOR)
            else:
                column = column * 0
            for i, value in zip(rows, column.tolist()):
                out[i][t] = value
        return out
    return returns


def group_advantages(returns: Sequence[Sequence[float]], groups: Sequence[int]) -> list[list[float]]:
    """GRPO's outcome advantage: each episode's whole return (its turn-0 return-to-go) minus the mean of its
    group's, over their sample standard deviation (floored at :data:`TURN_STD_FLOOR`), on every turn; an episode
    alone in its group gets 0."""
    members: dict[int, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    out = [[0.0] * len(ep) for ep in returns]
    for rows in members.values():
        if len(rows) < 2:
            continue
        totals = torch.tensor([returns[i][0] if returns[i] else 0.0 for i in rows], dtype=torch.float64)
        scaled = (totals - totals.mean()) / (totals.std() + TURN_STD_FLOOR)
        for i, value in zip(rows, scaled.tolist()):
            out[i] = [value] * len(returns[i])
    return out


def reinforce_loss(log_probs: torch.Tensor, weights: torch.Tensor, episodes: int) -> torch.Tensor:
    """``-sum_t log pi(a_t|s_t) * A_t``, averaged over the update's episodes (PPDPP: one episode each)."""
    return -(log_probs * weights).sum() / max(episodes, 1)


# ---- episodes as the trainer records them ----------------------------------------------------------------
def _chosen(strategies: Sequence[str | None], episode: str) -> list[str]:
    """The strategies an episode's planner chose: every turn of a trained planner has one."""
    if any(strategy is None for strategy in strategies):
        raise ValueError(f"episode {episode}: a turn without a strategy cannot be trained on")
    return [strategy for strategy in strategies if strategy is not None]


@dataclass
class Episode:
    """A finished training episode: enough to recompute its update without any LLM call."""

    index: int
    case_id: str
    states: list[tuple[Turn, ...]]
    strategies: list[str]
    rewards: list[float]
    success: bool
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        return len(self.rewards)


def episode_from_transcript(row: dict[str, Any]) -> Episode:
    """Rebuild the states the planner saw from a transcript line (opening + earlier exchanges)."""
    history = [Turn(t["speaker"], t["text"]) for t in row["opening"]]
    states, strategies, rewards = [], [], []
    for step in row["steps"]:
        states.append(tuple(history))
        strategies.append(step["strategy"])
        rewards.append(float(step["reward"]))
        history += [Turn("agent", step["agent"], step["strategy"]), Turn("user", step["user"])]
    return Episode(int(row["episode"]), row["case_id"], states, strategies, rewards, bool(row["success"]),
                   {k: float(v) for k, v in row.get("metrics", {}).items()})


def curve_point(update: int, episodes: Sequence[Episode]) -> dict[str, float]:
    """Learning-curve numbers of one update's episodes: reward, SR, AT and the mean of each episode metric
    (e.g. ``sl``; 0 for an episode that lacks it)."""
    n = len(episodes)
    names = sorted({k for e in episodes for k in e.metrics} - {"update", "episodes", "reward", "sr", "at"})
    return {
        "update": update,
        "episodes": n,
        "reward": sum(sum(e.rewards) for e in episodes) / n,
        "sr": sum(e.success for e in episodes) / n,
        "at": sum(e.turns for e in episodes) / n,
        **{k: sum(e.metrics.get(k, 0.0) for e in episodes) / n for k in names},
    }


def plot_curve(curve: Sequence[dict[str, float]], path: Path, title: str = "") -> None:
    """Reward, SR and AT per update as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    xs = [p["update"] for p in curve]
    for ax, key, label in zip(axes, ("reward", "sr", "at"), ("mean episode reward", "success rate", "average turns")):
        ax.plot(xs, [p[key] for p in curve], marker="o", markersize=3)
        ax.set_xlabel("update")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # updates are whole numbers
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def read_transcript_journal(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of each finished episode in a transcript file. A last line cut short by a kill
    (not valid JSON, or missing its newline) is dropped and the file rewritten without it, so that the episode
    is played again; a bad line elsewhere, or a row without the fields resume needs, is an error naming the
    line."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RLError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}): the transcript journal is "
                      f"damaged; restore it, or {NEW_RUN_FIX}") from None
    lines = text.split("\n")
    cut = lines[-1] != ""  # a killed write: the last line has no newline (it may even be valid JSON)
    if not cut:
        lines.pop()
    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(lines, 1):
        if lineno == len(lines) and cut:
            kept = "".join(f"{raw}\n" for raw in lines[:-1])
            write_atomic(path, lambda tmp: tmp.write_text(kept, encoding="utf-8"))
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RLError(f"{path}:{lineno}: not valid JSON ({exc.msg}); the transcript journal is damaged: "
                          f"delete that line to play its episode again, or {NEW_RUN_FIX}") from None
        bad = [k for k, kind in TRANSCRIPT_FIELDS.items() if not isinstance(row, dict) or not isinstance(row.get(k), kind)]
        if bad:
            raise RLError(f"{path}:{lineno}: not a transcript line of this ppdpp version ({', '.join(bad)} missing "
                          f"or of the wrong type); delete that line to play its episode again, or {NEW_RUN_FIX}")
        rows.append((lineno, row))
    return rows


def latest_checkpoint(pointer: Path) -> Path:
    """The checkpoint directory that ``checkpoints/latest.json`` names: a plain name of a directory inside
    ``checkpoints/`` (no ``/``, no ``..``) that holds a state file."""
    try:
        meta = json.loads(pointer.read_text(encoding="utf-8"))
        name = meta["checkpoint"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise RLError(f"{pointer}: not a checkpoint pointer ({type(exc).__name__}: {exc}); "
                      f'it should read {{"checkpoint": "update-NNNNNN"}}: {RESUME_FIX}') from None
    version = meta.get("format_version", FORMAT_VERSION)  # pointers before format_version are version 1
    if version != FORMAT_VERSION:
        raise RLError(f"{pointer}: format_version {version!r}, but this ppdpp reads version {FORMAT_VERSION} "
                      f"(written by another ppdpp version): resume with that version, or {NEW_RUN_FIX}")
    if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
        raise RLError(f"{pointer}: checkpoint {name!r} is not a plain directory name inside {pointer.parent}; "
                      f"{RESUME_FIX}")
    directory = pointer.parent / name
    if not (directory / STATE_FILE).is_file():
        raise RLError(f"{pointer}: checkpoint {name!r} has no {STATE_FILE} in {pointer.parent}; {RESUME_FIX}")
    return directory


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """A checkpoint's ``state.pt``, loaded with ``weights_only=True`` (tensors and plain data only: a pickled
    object is refused, never constructed)."""
    pointer = path.parent.parent / LATEST_FILE
    try:
        return load_data_checkpoint(path, STATE_FIELDS)
    except CheckpointError as exc:
        raise RLError(f"{exc}. In {pointer}: {RESUME_FIX}") from None


def case_order(cases: Sequence[Case], seed: int, episode: int) -> Case:
    """Episode ``episode``'s case: the cases in a fresh seeded shuffle per pass, so resume finds the same."""
    n = len(cases)
    order = list(range(n))
    python_random(seed, "case-order", episode // n).shuffle(order)
    return cases[order[episode % n]]


# ---- the trainer -------------------------------------------------------------------------------------------
class _Sampler:
    """The planner as a Policy that samples its strategy with a per-episode generator, off the event loop.

    A planner with ``aplan`` (PolicyPlanner) answers the concurrent dialogues' requests together on its worker
    thread; each dialogue still draws from its own generator, so its choices do not depend on which others
    share a batch (exact resume relies on it). Other planners run ``plan`` in a worker thread.
    """

    def __init__(self, planner: TrainablePolicy, seed: int) -> None:
        self.planner = planner
        self.name = getattr(planner, "name", "planner")
        self.generator = torch.Generator().manual_seed(seed)

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Any:
        kill_point("rl.plan")
        method = getattr(self.planner, "aplan", None)
        if method is not None:
            return await method(conversation, case, sample=True, generator=self.generator)
        return await asyncio.to_thread(self.plan, conversation, case)

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Any:
        kill_point("rl.plan")
        return self.planner.plan(conversation, case, sample=True, generator=self.generator)


class _Branch:
    """Plays ``forced`` (one strategy per decision, counted from the end of the case's opening), then samples
    from ``sampler``: the replay of a played dialogue up to a decision, with another strategy there."""

    def __init__(self, domain: Domain, forced: Sequence[str], sampler: _Sampler) -> None:
        self.domain, self.forced, self.sampler = domain, list(forced), sampler
        self.name = sampler.name

    def _forced(self, conversation: Sequence[Turn], case: Case | None) -> Plan | None:
        if case is None:
            raise RLError("a branch counts its decisions from the case's opening: it needs the case")
        turn = self.domain.decision_index(conversation, case)
        if turn >= len(self.forced):
            return None
        return Plan.certain(self.forced[turn], self.domain.instruction(self.forced[turn]))

    async def aplan(self, conversation: Sequence[Turn], case: Case | None = None) -> Any:
        forced = self._forced(conversation, case)
        return forced if forced is not None else await self.sampler.aplan(conversation, case)

    def plan(self, conversation: Sequence[Turn], case: Case | None = None) -> Any:
        forced = self._forced(conversation, case)
        return forced if forced is not None else self.sampler.plan(conversation, case)


class RLTrainer:
    """Trains ``planner`` with REINFORCE on ``cases`` of ``domain``; ``make_env(config.env)`` builds one
    SelfPlayEnv with those settings (its critic from ``config.env.make_critic``), so the dialogues are played as
    ``config.json`` says; an environment whose settings or critic differ from ``config.env`` is an error.

    ``load_planner(directory)`` loads a planner saved by ``save_pretrained`` (resume needs it; default:
    ``type(planner).from_pretrained``). ``on_episode`` is called with each finished episode's result.
    """

    def __init__(
        self,
        planner: TrainablePolicy,
        domain: Domain,
        cases: Sequence[Case],
        make_env: Callable[[EnvConfig], Any],
        config: RLConfig,
        out_dir: str | Path,
        *,
        load_planner: Callable[[Path], TrainablePolicy] | None = None,
        progress: bool = True,
        on_episode: Callable[[Any], Any] | None = None,
        run_settings: dict[str, Any] | None = None,
    ) -> None:
        if not cases:
            raise RLError("RL needs at least one case to play")
        self.planner = planner
        self.domain = domain
        self.cases = list(cases)
        self.make_env = make_env
        self.config = config
        self.out = Path(out_dir)
        self.load_planner = load_planner or getattr(type(planner), "from_pretrained", None)
        self.progress = progress
        self.on_episode = on_episode
        self.run_settings = dict(run_settings or {})
        self.updates_done = 0
        self.finished: set[int] = set()
        self.curve: list[dict[str, float]] = []
        self._cases_by_id = {c.id: c for c in self.cases}
        self._plotted = time.monotonic()  # the first plot waits PLOT_EVERY_S (or the end of the run)
        self._frozen_saved = False  # checkpoints/frozen/planner written by this trainer (or loaded from)
        self.optimizer = self._make_optimizer()

    # -- configuration and bookkeeping ---------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        module = self.planner
        if not self.config.train_backbone:
            head = getattr(module, "head", None)
            if head is None:
                raise RLError("train_backbone=False needs a planner with a `head` module")
            for p in module.parameters():
                p.requires_grad_(False)
            for p in head.parameters():
                p.requires_grad_(True)
        bias = self._decision_bias()
        if bias is not None:
            bias.requires_grad_(True)  # part of the head
        params = [p for p in module.parameters() if p.requires_grad and p is not bias]
        if not params:
            raise RLError("the planner has no trainable parameters")
        return torch.optim.AdamW(params, lr=self.config.lr)

    def _decision_bias(self) -> torch.nn.Parameter | None:
        """The planner's per-decision bias (``PlannerConfig.decision_bias``), which :meth:`_step` moves by plain
        gradient steps outside the optimizer; ``None`` for other planners."""
        return getattr(self.planner, "decision_bias", None)

    @property
    def transcripts_path(self) -> Path:
        return self.out / "transcripts.jsonl"

    def group_of(self, episode: int) -> int:
        """Episode ``i``'s group (``i // group_size``; each episode its own when ``group_size`` is 1)."""
        return episode // self.config.group_size

    def case_of(self, episode: int) -> Case:
        """Episode ``i``'s case (:func:`case_order` of its group)."""
        return case_order(self.cases, self.config.seed, self.group_of(episode))

    def episode_seed(self, episode: int) -> int:
        """The seed of episode ``i``'s planner draws (its own, also in a group)."""
        return derive_seed(self.config.seed, "episode", episode)

    def play_seed(self, episode: int) -> int:
        """The seed episode ``i`` is played with (user, agent, critic): the group's, shared by its members;
        the episode's own seed when ``group_size`` is 1."""
        if self.config.group_size == 1:
            return self.episode_seed(episode)
        return derive_seed(self.config.seed, "group", self.group_of(episode))

    def batch_of(self, update: int) -> range:
        size = self.config.episodes_per_update
        return range(update * size, min((update + 1) * size, self.config.episodes))

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/update-N`` (planner + optimizer + progress) and point ``latest.json`` at it."""
        root = self.out / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(root)  # what a kill while writing an earlier checkpoint left behind
        final = root / f"update-{self.updates_done:06d}"
        head_only = self.trains_head_only()
        if head_only and not self._frozen_saved:  # the untrained weights, once (they never change in a run)
            self.planner.save_pretrained(root / FROZEN_DIR / "planner")
            self._frozen_saved = True
        with atomic_directory(final) as tmp:
            if head_only:
                head = self.planner.head.state_dict()  # type: ignore[attr-defined]  # a head-only planner has a head (trains_head_only)
                save_file({k: v.detach().to("cpu").contiguous() for k, v in head.items()}, str(tmp / HEAD_FILE))
            else:
                self.planner.save_pretrained(tmp / "planner")
            kill_point("rl.checkpoint.files")
            torch.save({
                "format_version": FORMAT_VERSION,
                "updates_done": self.updates_done,
                "finished": sorted(self.finished),
                "curve": self.curve,
                "optimizer": self.optimizer.state_dict(),
                "config": dataclasses.asdict(self.config),
            }, tmp / STATE_FILE)
        kill_point("rl.checkpoint.pointer")
        write_json(root / LATEST_FILE, {"format_version": FORMAT_VERSION, "checkpoint": final.name,
                                        "updates_done": self.updates_done})
        kept = sorted(p for p in root.glob("update-*") if p.is_dir())
        for old in kept[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self) -> bool:
        """Restore the latest checkpoint if there is one; ``False`` when the run has none yet. Only data is
        read (see :func:`read_checkpoint_state`), so a crafted run directory cannot run code on resume."""
        pointer = self.out / "checkpoints" / LATEST_FILE
        if not pointer.exists():
            return False
        if self.load_planner is None:
            raise RLError(f"cannot resume {self.out}: the planner type has no from_pretrained; pass load_planner")
        directory = latest_checkpoint(pointer)
        state_file = directory / STATE_FILE
        state = read_checkpoint_state(state_file)
        if state.get("format_version") != FORMAT_VERSION:
            raise RLError(f"{state_file}: checkpoint format_version {state.get('format_version')!r}, but this "
                          f"ppdpp reads version {FORMAT_VERSION} (written by another ppdpp version): resume with "
                          f"that version, or {NEW_RUN_FIX}")
        if not isinstance(state["config"], dict):
            raise RLError(f"{state_file}: 'config' is not a dict; in {pointer}: {RESUME_FIX}")
        saved = {k: state["config"].get(k) for k in ("seed", "episodes_per_update", "gamma", "normalize")}
        saved["group_size"] = state["config"].get("group_size", 1)  # runs from before groups had none
        saved["branch_strategies"] = state["config"].get("branch_strategies", False)  # (nor branches)
        mine = {k: getattr(self.config, k) for k in saved}
        saved_env = state["config"].get("env")
        if isinstance(saved_env, dict) and "user_personas" in saved_env:  # the user simulators the episodes met
            saved["user_personas"] = saved_env["user_personas"]
            mine["user_personas"] = self.config.env.user_personas
        if saved != mine:
            raise RLError(f"cannot resume {self.out}: it was run with {saved}, now asked for {mine}")
        head_file = directory / HEAD_FILE
        try:
            if head_file.is_file():
                self.planner = self._load_head_checkpoint(head_file)
            else:
                self.planner = self.load_planner(directory / "planner")
        except DomainError as exc:
            raise RLError(f"{exc}. In {pointer}: {RESUME_FIX}") from None
        self.optimizer = self._make_optimizer()
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.updates_done = int(state["updates_done"])
            self.finished = {int(i) for i in state["finished"]}
            self.curve = [dict(p) for p in state["curve"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise RLError(f"{state_file}: does not fit this planner and trainer ({type(exc).__name__}: {exc}); "
                          f"in {pointer}: {RESUME_FIX}") from None
        return True

    def trains_head_only(self) -> bool:
        """Whether the optimizer trains the planner's ``head`` and nothing else (a frozen encoder, or
        ``train_backbone=False``): then a checkpoint saves only the head."""
        head = getattr(self.planner, "head", None)
        if head is None or self._decision_bias() is not None:  # the bias is saved with the whole planner
            return False
        trained = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        return trained <= {id(p) for p in head.parameters()}

    def _load_head_checkpoint(self, head_file: Path) -> TrainablePolicy:
        """The planner of a head-only checkpoint: ``checkpoints/frozen/planner`` with the head of ``head_file``."""
        from safetensors import SafetensorError

        assert self.load_planner is not None  # checked by resume() before it reads a checkpoint
        planner: Any = self.load_planner(head_file.parent.parent / FROZEN_DIR / "planner")  # has a head
        try:
            planner.head.load_state_dict(load_file(str(head_file)))
        except (SafetensorError, OSError, RuntimeError, KeyError) as exc:
            raise DomainError(f"{head_file}: not this planner's head ({type(exc).__name__}: "
                              f"{str(exc).strip()[:200]})") from None
        self._frozen_saved = True
        return planner

    def read_journal(self) -> dict[int, Episode]:
        """The finished episodes that the checkpoint has not trained on yet, from the transcript journal,
        checked against the run: each episode once, on the case this run's order gives it, and every episode
        the checkpoint trained on present (the file is the run's transcript record)."""
        path = self.transcripts_path
        if self.finished and not path.exists():
            raise RLError(f"{path} is missing, but the checkpoint has trained on {len(self.finished)} episodes: "
                          f"restore the file, or {NEW_RUN_FIX}")
        journal: dict[int, Episode] = {}
        first_line: dict[int, int] = {}
        for lineno, row in read_transcript_journal(path):
            index = row["episode"]
            if index in first_line:
                raise RLError(f"{path}:{lineno}: episode {index} appears again (first on line {first_line[index]}): "
                              f"delete the repeated line, or {NEW_RUN_FIX}")
            first_line[index] = lineno
            if not 0 <= index < self.config.episodes or row["case_id"] != self.case_of(index).id:
                raise RLError(f"{path}:{lineno}: episode {index} on case {row['case_id']!r} is not an episode of "
                              f"this run (other episodes, cases or seed): resume with the run's own settings, or "
                              f"{NEW_RUN_FIX}")
            if index not in self.finished:
                journal[index] = episode_from_transcript(row)
        lost = sorted(self.finished - set(first_line))
        if lost:
            raise RLError(f"{path} lacks episodes {lost[:10]}{'...' if len(lost) > 10 else ''} that the checkpoint "
                          f"trained on: restore the file, or {NEW_RUN_FIX}")
        return journal

    # -- the loop --------------------------------------------------------------------------------------
    def update(self, episodes: Sequence[Episode], branches: Sequence[Branches] = ()) -> float:
        """One step over ``episodes``: REINFORCE, the all-action step on ``branches`` (each decision's return
        per strategy, from :meth:`play_branches`) with ``branch_strategies``, or the planner's own TD loss for a
        planner whose ``learning_rule`` is ``"td"`` (:meth:`td_update`). Dropout draws from a fork of torch's
        global generator seeded by the update number (replays are exact; the caller's generator state is left as
        it was)."""
        if getattr(self.planner, "learning_rule", "reinforce") == "td":
            return self.td_update(episodes)
        if self.config.branch_strategies:
            return self.branch_update(episodes, branches)
        weights = advantages([e.rewards for e in episodes], self.config.gamma, self.config.normalize,
                             [self.group_of(e.index) for e in episodes])
        states = [s for e in episodes for s in e.states]
        cases = [self._cases_by_id[e.case_id] for e in episodes for _ in e.states]
        actions = torch.tensor([self.domain.strategy_index(a) for e in episodes for a in e.strategies])
        flat_weights = torch.tensor([w for ws in weights for w in ws], dtype=torch.float32)

        def chunk_loss(part: slice, logits: torch.Tensor) -> torch.Tensor:
            log_probs = torch.log_softmax(logits, dim=-1).gather(1, actions[part, None]).squeeze(1)
            return reinforce_loss(log_probs, flat_weights[part], len(episodes))

        return self._step(states, cases, len(episodes), chunk_loss)

    def _step(self, states: Sequence[Sequence[Turn]], cases: Sequence[Case], episodes: int,
              chunk_loss: Callable[[slice, torch.Tensor], torch.Tensor]) -> float:
        """One optimizer step: ``chunk_loss(part, logits)`` (float logits of ``states[part]``) plus the entropy
        bonus, per :data:`UPDATE_CHUNK` states with gradients accumulated, then the clip and the step; the summed
        loss. The planner is in train mode meanwhile, its dropout drawing from a fork seeded by the update."""
        self.planner.train()
        self.optimizer.zero_grad()
        bias = self._decision_bias()
        if bias is not None:
            bias.grad = None
        total = 0.0
        try:
            with forked_torch_rng(derive_seed(self.config.seed, "update-dropout", self.updates_done)):
                for start in range(0, len(states), UPDATE_CHUNK):
                    part = slice(start, start + UPDATE_CHUNK)
                    logits = self.planner.logits(states[part], cases[part]).float()
                    loss = chunk_loss(part, logits)
                    if self.config.entropy_coef:
                        log_probs = torch.log_softmax(logits, dim=-1)
                        entropy = -(log_probs.exp() * log_probs).sum(-1)
                        loss = loss - self.config.entropy_coef * entropy.sum() / episodes
                    loss.backward()
                    total += float(loss.detach())
            kill_point("rl.update")
            if self.config.grad_clip:
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.optimizer.step()
            if bias is not None and bias.grad is not None:
                with torch.no_grad():
                    bias.mul_(1 - self.config.decision_bias_decay).add_(bias.grad, alpha=-self.config.decision_bias_lr)
        finally:
            self.planner.train(False)
        return total

    def branch_update(self, episodes: Sequence[Episode], branches: Sequence[Branches]) -> float:
        """The natural step on every strategy's return: at each decision whose every strategy has a return, the
        loss is ``-sum_a A(s, a) z_a(s)`` on the planner's logits ``z``, with ``A = Q - mean_a Q`` scaled by the
        batch's standard deviation of ``A`` (a decision with a diverged replay is left out). For a softmax
        policy that is the natural policy gradient step (Kakade 2001; Agarwal et al. 2021: logits += A), which
        keeps moving a strategy the planner has all but dropped; the plain expected gradient
        ``sum_a grad pi(a|s) Q(s, a)`` vanishes there, as ``pi(a|s)`` does (measured: docs/simulators.md)."""
        names = list(self.domain.strategy_names)
        states, cases, q_rows = [], [], []
        for episode, per_turn in zip(episodes, branches, strict=True):
            for t, q in enumerate(per_turn):
                if q is not None and set(q) == set(names):
                    states.append(episode.states[t])
                    cases.append(self._cases_by_id[episode.case_id])
                    q_rows.append([q[name] for name in names])
        if not states:
            return 0.0
        q_all = torch.tensor(q_rows, dtype=torch.float32)
        gaps = q_all - q_all.mean(-1, keepdim=True)
        gaps = gaps / (gaps.std() + TURN_STD_FLOOR)
        n = len(episodes)
        return self._step(states, cases, n, lambda part, logits: -(logits * gaps[part]).sum() / n)

    async def play_branches(self, episodes: Sequence[Episode]) -> list[Branches]:
        """Each decision's return per strategy: the played one from the dialogue itself, every other one from a
        replay with that strategy there (the episode's play seed, so the same state; the planner samples after
        it with a seed of its own). ``None`` for a decision whose replay reached another state (an unseeded
        player)."""
        from ppdpp.simulators.runner import EpisodeJob, run_episodes

        names = self.domain.strategy_names
        out: list[Branches] = []
        jobs, slots = [], []
        for i, episode in enumerate(episodes):
            returns = discounted_returns(episode.rewards, self.config.gamma)
            out.append([{chosen: returns[t]} for t, chosen in enumerate(episode.strategies)])
            for t, chosen in enumerate(episode.strategies):
                for other in names:
                    if other == chosen:
                        continue
                    seed = derive_seed(self.config.seed, "branch", episode.index, t, other)
                    policy = _Branch(self.domain, [*episode.strategies[:t], other], _Sampler(self.planner, seed))
                    jobs.append(EpisodeJob(f"{episode.index}/{t}/{other}", self.case_of(episode.index), policy,
                                           self.play_seed(episode.index)))
                    slots.append((i, t, other))
        results = await run_episodes(jobs, self.new_env, concurrency=self.config.concurrency, progress=False)
        for (i, t, other), result in zip(slots, results, strict=True):
            row = out[i][t]
            if row is None:
                continue
            if len(result.states) <= t or tuple(result.states[t]) != tuple(episodes[i].states[t]):
                out[i][t] = None  # the replay did not reach the dialogue's state
                continue
            row[other] = discounted_returns(result.rewards, self.config.gamma)[t]
        return out

    def td_update(self, episodes: Sequence[Episode]) -> float:
        """Temporal-difference steps: ``planner.td_steps`` (default 1) optimizer steps on the planner's
        ``td_loss(episodes, cases_by_id, gamma)`` (a value-based planner such as DialogXpert's Q-network), each
        clipped; the mean loss."""
        self.planner.train()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        steps, total = int(getattr(self.planner, "td_steps", 1)), 0.0
        try:
            with forked_torch_rng(derive_seed(self.config.seed, "update-dropout", self.updates_done)):
                for _ in range(steps):
                    self.optimizer.zero_grad()
                    loss = self.planner.td_loss(episodes, self._cases_by_id, self.config.gamma)  # type: ignore[attr-defined]  # learning_rule "td" policies have td_loss
                    loss.backward()
                    if self.config.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
                    self.optimizer.step()
                    total += float(loss.detach())
            kill_point("rl.update")
        finally:
            self.planner.train(False)
        return total / steps

    def _apply(self, update: int, episodes: list[Episode],
               branches: Sequence[Branches] = ()) -> bool:
        """Train on one update's episodes (sorted by index, as ``branches`` is); ``True`` when a checkpoint was
        written."""
        episodes.sort(key=lambda e: e.index)
        loss = self.update(episodes, branches)
        self.updates_done = update + 1
        self.finished.update(e.index for e in episodes)
        self.curve.append({**curve_point(update, episodes), "loss": loss})
        checkpointed = self.updates_done % self.config.checkpoint_every == 0 or self.updates_done == self.config.updates
        if checkpointed:
            self.save_checkpoint()
            self.write_curve(final=False)
        return checkpointed

    def _report(self, tracker: Tracker, since: int) -> None:
        """Log the curve rows of the updates after ``since`` (``rl/<key>``, step = update index)."""
        for row in self.curve[since:]:
            tracker.log_metrics({f"rl/{k}": v for k, v in row.items() if k != "update"}, int(row["update"]))

    def write_curve(self, *, final: bool = True) -> None:
        """``curve.json`` always; ``curve.png`` at the end of the run, and at a checkpoint (``final=False``) when
        the last plot is :data:`PLOT_EVERY_S` old (a plot costs about a CPU second: a fast run's updates are
        quicker than that)."""
        write_json(self.out / "curve.json", self.curve)
        now = time.monotonic()
        if self.curve and (final or now - self._plotted >= PLOT_EVERY_S):
            plot_curve(self.curve, self.out / "curve.png", f"{self.domain.name}: REINFORCE")
            self._plotted = now

    def new_env(self) -> Any:
        """One environment from ``make_env(config.env)``, checked against ``config.env`` (an LLM critic's mode
        and samples too; another critic, such as a scripted simulator's oracle, judges by its own rule)."""
        env, wanted = self.make_env(self.config.env), self.config.env
        critic = env.critic
        judged = (critic.mode, critic.samples) if isinstance(critic, Critic) else None
        if env.config != wanted or judged not in (None, (wanted.critic_mode, wanted.critic_samples)):
            raise RLError(f"make_env built an environment with {env.config} and critic {critic!r}, "
                          f"but the run's config.env is {wanted}")
        return env

    async def play(self, indices: Sequence[int]) -> list[Episode]:
        """Play episodes ``indices`` of this run (their cases and seeds) with the planner sampling, writing each
        to the transcript journal; the episodes in order."""
        from ppdpp.simulators.runner import EpisodeJob, run_episodes

        size = self.config.episodes_per_update
        jobs = [
            EpisodeJob(str(i), self.case_of(i), _Sampler(self.planner, self.episode_seed(i)), self.play_seed(i),
                       tags={"episode": i, "update": i // size})
            for i in indices
        ]
        results = await run_episodes(
            jobs, self.new_env, concurrency=self.config.concurrency, transcript=self.transcripts_path,
            progress=self.progress, desc=f"RL update {self.updates_done + 1}/{self.config.updates}",
            on_result=self.on_episode,
        )
        return [
            Episode(int(r.episode_id), r.case_id, list(r.states), _chosen(r.strategies, r.episode_id), list(r.rewards),
                    r.success, dict(r.metrics))
            for r in results
        ]

    async def train(self, *, resume: bool = False) -> list[dict[str, float]]:
        """Run (or continue) training; returns the learning curve. Writes ``final/`` at the end."""
        self.out.mkdir(parents=True, exist_ok=True)
        config_path = self.out / "config.json"
        if not resume and (config_path.exists() or self.transcripts_path.exists()):
            raise RLError(f"{self.out} already holds a run: pass --resume to continue it, or choose another --out")
        if self.config.branch_strategies and getattr(self.planner, "learning_rule", "reinforce") == "td":
            raise RLError("branch_strategies steps a policy on every strategy's return; this planner learns by its "
                          "own TD loss (learning_rule 'td'): train it without --branch-strategies")
        if resume:
            self.load_checkpoint()
        settings = {**self.run_settings, "domain": self.domain.name, **dataclasses.asdict(self.config)}
        write_json(config_path, settings)
        journal = self.read_journal()
        self.planner.train(False)
        tracker = await asyncio.to_thread(open_trackers, self.config.report_to, self.out, self.out.name)
        try:
            if not resume:
                await asyncio.to_thread(tracker.log_params, settings)
            logged = self.updates_done  # the checkpointed updates are with the trackers already
            for update in range(self.updates_done, self.config.updates):
                batch = self.batch_of(update)
                done = [journal.pop(i) for i in batch if i in journal]
                missing = [i for i in batch if all(e.index != i for e in done)]
                if missing:
                    done += await self.play(missing)
                done.sort(key=lambda e: e.index)
                branches = await self.play_branches(done) if self.config.branch_strategies else []
                if self._apply(update, done, branches):
                    await asyncio.to_thread(self._report, tracker, logged)
                    logged = self.updates_done
        finally:
            await asyncio.to_thread(tracker.close)
        self.write_curve()
        self.write_strategy_shift()
        self.planner.save_pretrained(self.out / "final")
        return self.curve

    def write_strategy_shift(self) -> dict[str, Any]:
        """``strategy_shift.json``: the strategies sampled in the first update's self-play (by the starting, SFT
        planner) against those of the last update (by the planner before its last step), each with its
        distribution and entropy, and each strategy's share shift (:func:`~ppdpp.simulators.report.strategy_shift`)."""
        from ppdpp.simulators.report import strategy_counts, strategy_shift

        size, last = self.config.episodes_per_update, self.config.updates - 1
        played: dict[int, list[str | None]] = {0: [], last: []}
        for _, row in read_transcript_journal(self.transcripts_path):
            update = int(row["episode"]) // size
            if update in played:
                played[update] += [step["strategy"] for step in row["steps"]]
        shift = strategy_shift(strategy_counts(played[0], self.domain), strategy_counts(played[last], self.domain))
        data = {"basis": f"self-play strategies sampled in update 1 (the starting planner) and update {last + 1} "
                         "(the planner before its last step), at the run's temperature", **shift}
        write_json(self.out / "strategy_shift.json", data)
        return data


def train_sync(trainer: RLTrainer, *, resume: bool = False) -> list[dict[str, float]]:
    """``RLTrainer.train`` for callers without an event loop."""
    return asyncio.run(trainer.train(resume=resume))
