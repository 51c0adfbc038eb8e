"""The resister Seller (``--user resister``): the rule-based Seller whose concession sizes a trained policy chooses.

After GAIA (ACL 2025): a user-side policy trained in zero-sum self-play to hold out against the planner
(:mod:`ppdpp.planner.policy.resister`, trained by ``ppdpp resister``). Everything but the concession is the
:class:`~ppdpp.plugins.negotiation.seller.RuleBasedSeller`'s: how a Buyer turn is read, the bottom price, when a
bid is accepted and at what price, insults, patience, the replies. On each Buyer turn after which the rules
concede something (``share > 0``), the resister picks one of :data:`ACTIONS`, a multiple of the rule's share
(capped at the whole gap). Its hard limits are the Seller's own:

- the asking price never goes below the bottom (:func:`~ppdpp.plugins.negotiation.seller.conceded`), and each
  concession is still at least one price unit, so the bottom is still reached;
- a deal is still made only by the rules (a bid at or above the new asking price, at ``min(bid, previous
  ask)``; an acceptance in words at the previous ask), so a deal is never below the bottom and the outcome
  stays exact;
- it never holds outright: the smallest action concedes half the rule's share. A resister that may refuse
  every concession wins the zero-sum game by never dealing (the Buyer's reward -0.1 per turn), which trains
  nothing a real seller does.

``user_checkpoints`` (``--user-checkpoints DIR,DIR,rule-based``) is the population: each dialogue plays one
member, drawn from the dialogue's seed and case id; ``rule-based`` stands for the plain Seller. Each decision
samples the member's policy with a generator seeded by ``(seed, case id, turn)``, so a reply depends only on the
case, the seed and the history, as for every user simulator. For training,
:mod:`ppdpp.planner.training.resister` hands a live policy as ``resister`` and reads :meth:`decisions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ppdpp.planner.core.domain import Case
from ppdpp.planner.core.seeding import python_random
from ppdpp.planner.policy.resister import Decision, LinearSoftmax
from ppdpp.plugins.negotiation.acts import ActClassifier
from ppdpp.plugins.negotiation.seller import PATIENCE, RuleBasedSeller, SellerState

ACTIONS = {"firm": 0.5, "rule": 1.0, "soft": 1.5, "generous": 2.0}
"""Each action's multiple of the rule's concession share (the result capped at 1: the whole gap)."""
PLAIN = "rule-based"
"""A population member that is the plain rule-based Seller."""
ACT_GROUPS = {"inform": "inform", "counter-noprice": "vague", "propose": "bid", "counter": "bid", "agree": "bid",
              "disagree": "pushback", "deny": "pushback"}
FEATURES = ("bias", "turn", "gap", "rule_share", "bid", "bid_vs_ask", "act_inform", "act_vague", "act_bid",
            "act_pushback")
"""What the resister sees at a decision: the Buyer turn's index over the patience, the gap left between the
asking price and the bottom over the listing's, the rule's share, whether the turn bids and how far below the
asking price (over the listing), and the Buyer act's group."""


def features(state: SellerState, act: str, offer: float | None, share: float, listing: float,
             bottom: float) -> tuple[float, ...]:
    """The :data:`FEATURES` of one decision."""
    span = max(listing - bottom, 1e-9)
    group = ACT_GROUPS.get(act, "")
    return (1.0, len(state.acts) / PATIENCE, (state.ask - bottom) / span, share, float(offer is not None),
            (state.ask - offer) / listing if offer is not None else 0.0,
            float(group == "inform"), float(group == "vague"), float(group == "bid"), float(group == "pushback"))


def fresh_resister() -> LinearSoftmax:
    """An untrained resister over this Seller's actions and features (uniform over the actions)."""
    return LinearSoftmax(tuple(ACTIONS), FEATURES)


class ResisterSeller(RuleBasedSeller):
    """The rule-based Seller with a resister choosing its concessions (rules in the module docstring)."""

    name = "resister"
    fresh_resister = staticmethod(fresh_resister)

    def __init__(self, data_dir: Path | str | None = None, *, user_checkpoints: Sequence[str] = (),
                 resister: LinearSoftmax | None = None, classifier: ActClassifier | None = None,
                 patience: int = PATIENCE) -> None:
        super().__init__(data_dir, classifier=classifier, patience=patience)
        if resister is not None and user_checkpoints:
            raise ValueError("give a live resister or user_checkpoints, not both")
        if resister is None and not user_checkpoints:
            raise ValueError("--user resister needs --user-checkpoints: saved resister directories (`ppdpp resister` "
                             f"writes one), or {PLAIN!r} for the plain Seller")
        members: list[LinearSoftmax | None] = []
        for entry in user_checkpoints:
            if str(entry) == PLAIN:
                members.append(None)
                continue
            policy = LinearSoftmax.load(entry)
            policy.check_matches(tuple(ACTIONS), FEATURES, f"--user-checkpoints {entry}")
            members.append(policy)
        self.population: list[LinearSoftmax | None] = [resister] if resister is not None else members
        self.resister: LinearSoftmax | None = self.population[0]
        self._decisions: dict[int, Decision] = {}

    def reset(self, case: Case, seed: int) -> None:
        super().reset(case, seed)
        pick = python_random(seed, "resister-member", case.id).randrange(len(self.population))
        self.resister = self.population[pick]
        self._decisions = {}

    def decisions(self) -> list[Decision]:
        return [self._decisions[i] for i in sorted(self._decisions)]

    def concession(self, state: SellerState, act: str, offer: float | None, share: float, index: int) -> float:
        if self.resister is None or share <= 0:
            return share
        assert self._case is not None
        listing = float(self._case.fields["seller_price"])
        x = features(state, act, offer, share, listing, self.bottom)
        action = self.resister.sample(x, python_random(self._seed, "resister", self._case.id, index))
        self._decisions[index] = Decision(x, action)  # a replay of the same turn records the same decision
        return min(1.0, share * ACTIONS[self.resister.actions[action]])
