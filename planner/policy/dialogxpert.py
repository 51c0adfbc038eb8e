"""DialogXpert (after Rakib et al., AAAI 2026, *DialogXpert: Driving Intelligent and Emotion-Aware Conversations
through Online Value-Based Reinforcement Learning with LLM Priors*; code: github.com/declare-lab/dialogxpert): a
proposer offers the top-k strategies and a small Q-network over a frozen encoder picks one, trained by
temporal-difference learning from self-play rewards.

Here the proposer is the SFT planner of ``--planner DIR`` (a scripted agent has no LLM to ask; the paper's
proposer is a frozen LLM), frozen; the state is the dialogue's last four turns embedded by MiniLM (frozen,
:mod:`~ppdpp.planner.policy.sentence_encoder`); the Q-network is a two-layer MLP giving a value per strategy,
masked to the proposer's top ``dialogxpert_top_k``. Greedy at evaluation; during ``ppdpp rl`` self-play
epsilon-greedy within the top-k (``dialogxpert_epsilon``, drawn from the episode's seeded generator).

Training: ``ppdpp rl --policy dialogxpert`` (``learning_rule = "td"``: :class:`~ppdpp.planner.training.rl.RLTrainer`
calls :meth:`DialogXpertPolicy.td_loss` instead of the REINFORCE loss) minimises the Huber loss between
``Q(s_t, a_t)`` and ``r_t + gamma * max_{a in top-k(s_{t+1})} Q(s_{t+1}, a)`` (no bootstrap after the last
turn; the target detached), ``dialogxpert_td_steps`` optimizer steps on each update's episodes. The saved folder holds the proposer
(``proposer/``), the Q-network (``q_network.safetensors``) and ``dialogxpert.json`` (with the top-k it was trained
with: a folder played with another top-k logs a warning, since the Q-network then chooses among strategies it
may never have valued); a plain SFT planner folder starts a fresh Q-network (seeded).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ppdpp.planner.core.domain import Case, Domain, DomainError, Turn
from ppdpp.planner.core.plan import Plan
from ppdpp.planner.policy.dialogxpert_config import DialogXpertConfig

FORMAT = "ppdpp-dialogxpert/1"
META_FILE = "dialogxpert.json"
Q_FILE = "q_network.safetensors"
PROPOSER_DIR = "proposer"
ENCODER_DIM = 384  # all-MiniLM-L6-v2
log = logging.getLogger(__name__)


def state_text(domain: Domain, conversation: Sequence[Turn]) -> str:
    """What the Q-network sees of a dialogue: its last four turns, with the roles' names."""
    return " | ".join(f"{domain.role_name(t.speaker)}: {t.text}" for t in list(conversation)[-4:]) or "(start)"


class DialogXpertPolicy(nn.Module):
    """The top-k proposer and the Q-network (see the module)."""

    learning_rule = "td"
    proposer: Any  # the frozen SFT planner, set in __init__ outside nn.Module's parameters

    def __init__(self, domain: Domain, proposer: Any, config: DialogXpertConfig | None = None,
                 hidden: int | None = None, name: str = "dialogxpert") -> None:
        super().__init__()
        self.domain, self.config, self.name = domain, config or DialogXpertConfig(), name
        object.__setattr__(self, "proposer", proposer)  # frozen, not one of this module's parameters
        width = hidden or self.config.dialogxpert_hidden
        self.head = nn.Sequential(nn.Linear(ENCODER_DIM, width), nn.ReLU(),
                                  nn.Linear(width, len(domain.strategy_names)))
        self._embeddings: dict[str, torch.Tensor] = {}
        self._proposed: dict[tuple, torch.Tensor] = {}
        self.td_steps = self.config.dialogxpert_td_steps
        self.eval()

    # ---- the parts -----------------------------------------------------------------------------------------
    def embed(self, conversations: Sequence[Sequence[Turn]]) -> torch.Tensor:
        """The frozen MiniLM states, cached by text."""
        from ppdpp.planner.policy.sentence_encoder import embed

        texts = [state_text(self.domain, c) for c in conversations]
        missing = list(dict.fromkeys(t for t in texts if t not in self._embeddings))
        if missing:
            for text, row in zip(missing, embed(missing)):
                self._embeddings[text] = row.clone()
        return torch.stack([self._embeddings[t] for t in texts])

    def proposals(self, conversations: Sequence[Sequence[Turn]], cases: Sequence[Case | None]) -> torch.Tensor:
        """A mask ``[batch, n_strategies]``: True on the proposer's top-k strategies of each state."""
        names = self.domain.strategy_names
        k = min(self.config.dialogxpert_top_k, len(names))
        keys = [(None if case is None else case.id, tuple((t.speaker, t.text) for t in conversation))
                for conversation, case in zip(conversations, cases)]
        missing = [i for i, key in enumerate(keys) if key not in self._proposed]
        if missing:  # the frozen proposer answers each state once
            plans = self.proposer.plan_batch([conversations[i] for i in missing], [cases[i] for i in missing])
            for i, plan in zip(missing, plans):
                top = sorted(names, key=lambda s: -plan.distribution.get(s, 0.0))[:k]  # ties: the domain's order
                row = torch.zeros(len(names), dtype=torch.bool)
                row[[names.index(s) for s in top]] = True
                self._proposed[keys[i]] = row
        return torch.stack([self._proposed[key] for key in keys])

    def logits(self, conversations: Sequence[Sequence[Turn]],
               cases: Sequence[Case | None] | None = None) -> torch.Tensor:
        """Q-values ``[batch, n_strategies]``, -inf outside the proposer's top-k (differentiable)."""
        cases = list(cases) if cases is not None else [None] * len(conversations)
        q = self.head(self.embed(conversations))
        return q.masked_fill(~self.proposals(conversations, cases), float("-inf"))

    # ---- acting ------------------------------------------------------------------------------------------
    blocking = True  # MiniLM and the proposer run in a worker thread

    def plan(self, conversation: Sequence[Turn], case: Case | None = None, *, sample: bool = False,
             generator: torch.Generator | None = None) -> Plan:
        names = self.domain.strategy_names
        with torch.no_grad():
            q = self.logits([conversation], [case])[0]
        offered = [i for i in range(len(names)) if q[i] != float("-inf")]
        choice = max(offered, key=lambda i: float(q[i]))  # ties: the domain's order
        if sample and float(torch.rand(1, generator=generator)) < self.config.dialogxpert_epsilon:
            choice = offered[int(torch.randint(len(offered), (1,), generator=generator))]
        probs = torch.softmax(q, dim=-1)
        distribution = {n: float(p) for n, p in zip(names, probs)}
        return Plan(names[choice], self.domain.instruction(names[choice]), distribution[names[choice]], distribution)

    # ---- learning ----------------------------------------------------------------------------------------
    def td_loss(self, episodes: Sequence[Any], cases: dict[str, Case], gamma: float) -> torch.Tensor:
        """The mean Huber TD error over every transition of ``episodes`` (``states``, ``strategies``,
        ``rewards``, ``case_id``; see the module)."""
        states, actions, rewards, nexts, next_cases, live = [], [], [], [], [], []
        for e in episodes:
            case = cases[e.case_id]
            for t, (state, action, reward) in enumerate(zip(e.states, e.strategies, e.rewards)):
                states.append(state)
                actions.append(self.domain.strategy_index(action))
                rewards.append(float(reward))
                last = t == len(e.states) - 1
                nexts.append(state if last else e.states[t + 1])
                next_cases.append(case)
                live.append(0.0 if last else 1.0)
        q = self.head(self.embed(states)).gather(1, torch.tensor(actions)[:, None]).squeeze(1)
        with torch.no_grad():
            following = self.logits(nexts, next_cases).max(dim=1).values
            target = torch.tensor(rewards) + gamma * torch.tensor(live) * torch.nan_to_num(following, neginf=0.0)
        return nn.functional.smooth_l1_loss(q, target)

    # ---- saving ------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.proposer.save_pretrained(directory / PROPOSER_DIR)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(directory / Q_FILE))
        (directory / META_FILE).write_text(json.dumps({
            "format": FORMAT, "domain": self.domain.name, "strategies": self.domain.strategy_names,
            "hidden": self.head[0].out_features, "encoder": "all-MiniLM-L6-v2",
            "top_k": self.config.dialogxpert_top_k}, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def from_directory(cls, directory: str | Path, domain: Domain, config: DialogXpertConfig | None = None,
                       seed: int = 0) -> "DialogXpertPolicy":
        """A saved DialogXpert folder, or an SFT planner folder (the proposer) with a fresh, seeded Q-network."""
        from safetensors.torch import load_file

        from ppdpp.planner.policy.policy_planner import PolicyPlanner

        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            proposer = PolicyPlanner.from_pretrained(directory, domain=domain)
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                return cls(domain, proposer, config)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("strategies") != domain.strategy_names:
            raise DomainError(f"{meta_path}: not a DialogXpert folder of domain {domain.name!r} with its current "
                              f"strategies (format {meta.get('format')!r}, domain {meta.get('domain')!r})")
        policy = cls(domain, PolicyPlanner.from_pretrained(directory / PROPOSER_DIR, domain=domain), config,
                     hidden=int(meta["hidden"]))
        policy.head.load_state_dict(load_file(str(directory / Q_FILE)))
        trained_k = meta.get("top_k")
        if trained_k is not None and trained_k != policy.config.dialogxpert_top_k:
            log.warning("%s was trained with --dialogxpert-top-k %s and is played with %s: pass "
                        "--dialogxpert-top-k %s to play it as trained", directory, trained_k,
                        policy.config.dialogxpert_top_k, trained_k)
        return policy
