"""A rule-based CraigslistBargain Seller (``--user rule-based``) that knows the exact deal price.

After the rule-based bots of He et al. (2018), "Decoupling strategy and generation in negotiation dialogues":
a hidden bottom price, an asking price that starts at the listing price, and concessions driven by what the
Buyer does. The Seller reads each Buyer turn as text: its act from
:class:`~ppdpp.plugins.negotiation.acts.ActClassifier` (never the planner's label) and its offer from
:func:`~ppdpp.plugins.negotiation.acts.parse_offer`.

Bottom price
    ``bottom = listing * U(0.65, 0.80)``, drawn per dialogue from ``(seed, case.id)`` and rounded up to the
    price unit (whole dollars from a listing of 100 up, else cents). Checked against the human deals: of the
    489 CraigslistBargain dialogues (train+valid+test), 259 end with an *agree* act (last or second-to-last
    turn) and name a price; their deal price (the last price within 0.2-1.5x the listing) over the listing
    has deciles 0.66 / 0.73 / 0.77 / 0.81 / 0.84 (median) / 0.88 / 0.90 / 0.92 / 0.96, and 80% of those deals
    lie at or above a bottom drawn from this range.

Each Buyer turn, in order
    1. After a deal or a walk-away the Seller only repeats how it ended.
    2. ``c``, the concession, is a share of the gap between the asking price and the bottom, by act
       (:data:`CONCESSION`): reasons concede most (*inform* 0.25, *counter-noprice* 0.20), a priced bid less
       (*propose*/*counter* 0.10), pushback a little (*disagree*/*deny* 0.05), small talk and questions
       nothing. The same act as the Buyer's previous turn(s) halves ``c`` for each repeat in a row
       (:data:`REPEAT_DECAY`). A bid below :data:`LOWBALL` (0.6) times the listing concedes only 0.02.
    3. The new asking price is ``ask - c * (ask - bottom)`` rounded to the price unit, at least one unit
       below the old one when ``c > 0`` (so the bottom is reached), and never below the bottom.
    4. A bid (an offer in a *propose*, *counter* or *agree* turn, or a priced *counter-noprice* turn; never
       the price of a question about the Seller's price, "Is $600 firm?") at or above the new asking price is
       accepted: a deal at ``min(offer, previous ask)``, unless the turn only describes the price
       (:data:`~ppdpp.plugins.negotiation.acts.TENTATIVE`: "I'm looking at it for a price of $2100. Can you tell
       me more?"). An unambiguous acceptance in words
       (:func:`~ppdpp.plugins.negotiation.acts.accepts`: "Deal.", "I'll take it", "works for me", "I think I
       could pay that", with no hedge,
       question, condition or negation) without a price, or with the Seller's last price or more, is a deal at
       the previous asking price. Nothing else closes a deal: "I'll consider it.", "Okay.", "Sounds good, but
       can you do better?" are noncommittal, even when the classifier reads them as *agree*
       (:func:`~ppdpp.plugins.negotiation.acts.read_buyer`). A bid below
       :data:`INSULT` (0.4) times the listing gets a warning and no concession the first time, and the Seller
       walks away the second time. Prices in other acts ("is $200 firm?") are not bids.
    5. After ``patience`` Buyer turns (10; the domain's own opening question counts) without a deal the Seller
       walks away.

So a deal is never below the bottom, and a bid at or above the asking price threshold of its turn is always
accepted; that threshold never goes below the bottom, and once it has reached it every bid at or above the
bottom is a deal. Replies come from several templates per situation, picked with ``(seed, case.id,
turn)``; each names at most one price, the asking or deal price, as ``$<price>``. State is replayed from the
history (only the new turns, when the history extends the last one), so a reply and an
:meth:`RuleBasedSeller.outcome` depend only on the case, the seed and the history.

Outcome: a deal is final, ``success``, ``reward = metrics["sl"] =`` :func:`sale_to_list_ratio` of the deal
price; a walk-away is final with :data:`NO_DEAL_REWARD` and ``sl`` 0; otherwise the same no-deal values,
not final.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ppdpp.planner.core.domain import Case, DomainError, Turn
from ppdpp.planner.core.seeding import python_random
from ppdpp.planner.core.simulation import Outcome, UserSimulator
from ppdpp.planner.toolkit.parsing import find_prices
from ppdpp.plugins.negotiation import NO_DEAL_REWARD, format_price, sale_to_list_ratio
from ppdpp.plugins.negotiation.acts import NONCOMMITTAL, ActClassifier, classifier_for, read_buyer

BOTTOM_RANGE = (0.65, 0.80)
"""The hidden bottom price is ``listing * U(*BOTTOM_RANGE)``."""
CONCESSION = {
    "inform": 0.25, "counter-noprice": 0.20, "propose": 0.10, "counter": 0.10, "disagree": 0.05, "deny": 0.05,
}
"""Share of the gap between asking price and bottom conceded after each Buyer act (absent acts: 0)."""
LOWBALL_CONCESSION = 0.02
REPEAT_DECAY = 0.5
LOWBALL = 0.6
INSULT = 0.4
PATIENCE = 10

TEMPLATES: dict[str, tuple[str, ...]] = {
    "greet": (
        "Hello! Yes, the {item} is still available. {fact} I'm asking {ask}.",
        "Hi there! Thanks for your interest in the {item}. {fact} The price is {ask}.",
    ),
    "inform": (
        "{fact} That's why I'm asking {ask}.",
        "Sure. {fact} I think {ask} is a fair price.",
        "Good question. {fact} It's {ask}.",
    ),
    "concede": (
        "I can come down to {ask}.",
        "Okay, I could do {ask}.",
        "How about {ask}? That's a good deal for this {item}.",
        "I hear you. Let's say {ask}.",
    ),
    "hold": (
        "Sorry, I can't go lower than {ask}.",
        "{ask} is already a fair price for this {item}.",
        "I'll stay at {ask} for now.",
    ),
    "lowball": (
        "That's a lowball offer. The best I can do right now is {ask}.",
        "That's way too low for this {item}. I'm at {ask}.",
    ),
    "bottom": (
        "{ask} is my final price, I can't go any lower.",
        "I really can't do better than {ask}. That's my lowest.",
    ),
    "insult": (
        "That offer is insulting for this {item}. I'm asking {ask}; make me a serious offer.",
        "Come on, that's not a serious offer. The price is {ask}.",
    ),
    "accept": (
        "Deal! {price} it is.",
        "Okay, you've got a deal at {price}.",
        "Alright, {price} works for me. It's yours.",
    ),
    "walk_away": (
        "Sorry, I don't think we can make a deal. Good luck with your search.",
        "I think we're too far apart. I'll wait for another buyer.",
    ),
}
CLOSED = {
    "deal": "We already have a deal at {price}. Thanks!",
    "walked_away": "Sorry, I've decided not to sell it to you.",
}
_SENTENCE = re.compile(r"[^.!?]+[.!?]?")


def price_unit(listing: float) -> float:
    """Whole dollars from a listing of 100 up, else cents."""
    return 1.0 if listing >= 100 else 0.01


def round_up(value: float, unit: float) -> float:
    """``value`` rounded up to a multiple of ``unit`` (a small tolerance absorbs float noise)."""
    return round(math.ceil(value / unit - 1e-9) * unit, 2)


def conceded(ask: float, bottom: float, share: float, unit: float) -> float:
    """The asking price after conceding ``share`` of the gap to ``bottom``: rounded to ``unit``, at least one
    unit lower, never below ``bottom``."""
    lower = round(round((ask - share * (ask - bottom)) / unit) * unit, 2)
    return max(bottom, min(lower, round(ask - unit, 2)))


def money(value: float) -> str:
    """A price as the replies write it: ``$6200``, ``$18.50``."""
    return f"${format_price(value)}"


def item_facts(description: str, limit: int = 120) -> list[str]:
    """Sentences of a seller description that name no price (so that a reply names only its own price),
    each cut to about ``limit`` characters at a word boundary."""
    facts = []
    for sentence in _SENTENCE.findall(description):
        sentence = sentence.strip()
        if len(sentence) > limit:
            sentence = sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:-")
        if len(sentence) >= 10 and not find_prices(sentence):
            facts.append(sentence if sentence[-1] in ".!?" else f"{sentence}.")
    return facts or ["It's in good condition."]


def concession_share(act: str, offer: float | None, listing: float, repeats: int) -> float:
    """The share of the gap between asking price and bottom that the Seller concedes after a Buyer turn of
    ``act`` (a bid when ``offer`` is set) that repeats the Buyer's previous act ``repeats`` times in a row."""
    share = CONCESSION.get("counter" if offer is not None else act, 0.0)
    if offer is not None and offer < LOWBALL * listing:
        share = LOWBALL_CONCESSION
    return share * REPEAT_DECAY**repeats


@dataclass
class SellerState:
    """What the Seller holds after some Buyer turns (replayed from the history)."""

    ask: float
    acts: list[str] = field(default_factory=list)
    deal_price: float | None = None
    walked_away: bool = False
    insults: int = 0
    reply: str = ""


class RuleBasedSeller(UserSimulator):
    """The rule-based Seller of one dialogue (rules in the module docstring)."""

    name = "rule-based"

    def __init__(
        self, data_dir: Path | str | None = None, *, classifier: ActClassifier | None = None, patience: int = PATIENCE
    ) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.classifier = classifier or classifier_for(Path(data_dir) if data_dir is not None else None)
        self.patience = patience
        self._case: Case | None = None
        self._seed = 0
        self.bottom = 0.0
        self._facts: list[str] = []
        self._memo: tuple[tuple[Turn, ...], SellerState] = ((), SellerState(ask=0.0))

    def reset(self, case: Case, seed: int) -> None:
        listing = float(case.fields["seller_price"])
        self._case, self._seed = case, seed
        share = python_random(seed, "seller-bottom", case.id).uniform(*BOTTOM_RANGE)
        self.bottom = min(listing, round_up(listing * share, price_unit(listing)))
        self._facts = item_facts(case.fields["seller_item_description"])
        self._memo = ((), SellerState(ask=listing))

    def respond(self, history: Sequence[Turn]) -> str:
        if not history or history[-1].speaker != "agent":
            raise ValueError("RuleBasedSeller.respond needs a history that ends with the Buyer's turn")
        return self.replay(history).reply

    def outcome(self, case: Case, history: Sequence[Turn]) -> Outcome | None:
        state = self.replay(history, case)
        if state.deal_price is not None:
            ratio = sale_to_list_ratio(case, state.deal_price)
            return Outcome(True, ratio, {"sl": ratio}, final=True, detail=f"deal at {money(state.deal_price)}")
        detail = "the Seller walked away" if state.walked_away else f"no deal yet; asking {money(state.ask)}"
        return Outcome(False, NO_DEAL_REWARD, {"sl": 0.0}, final=state.walked_away, detail=detail)

    def read_strategy(self, case: Case, history: Sequence[Turn], text: str) -> str | None:
        """The act the Seller acts on (:func:`~ppdpp.plugins.negotiation.acts.read_buyer`): *agree* only for an
        unambiguous acceptance, *counter* for any priced bid (:meth:`realised_as`); ``None`` for a
        noncommittal turn."""
        act = read_buyer(text, case, self.classifier).act
        return None if act == NONCOMMITTAL else self.realised_as(act)

    def realised_as(self, strategy: str) -> str:
        """A *propose* is realised when read as a priced bid, *counter* (the classifier does not tell a first
        bid from a later one, and the Seller concedes the same to both)."""
        return "counter" if strategy == "propose" else strategy

    def concession(self, state: SellerState, act: str, offer: float | None, share: float, index: int) -> float:
        """The share of the gap between asking price and bottom conceded after Buyer turn ``index``: the rule's
        ``share``. A subclass may choose another share in [0, 1] (the resister,
        :mod:`~ppdpp.plugins.negotiation.resister`); the asking price still never goes below the bottom, and what
        is accepted stays the rule's."""
        return share

    # ---- the rules ----------------------------------------------------------------------------------------
    def replay(self, history: Sequence[Turn], case: Case | None = None) -> SellerState:
        """The Seller's state after answering every Buyer turn of ``history``. The state after the longest
        history seen so far is kept, so a history that extends it only replays the new turns."""
        if self._case is None:
            raise ValueError("call reset(case, seed) before using the RuleBasedSeller")
        if case is not None and case.id != self._case.id:
            raise DomainError(f"this RuleBasedSeller was reset on case {self._case.id}, not {case.id}")
        history = tuple(history)
        seen, known = self._memo
        if history[: len(seen)] != seen:
            seen, known = (), SellerState(ask=float(self._case.fields["seller_price"]))
        state = dataclasses.replace(known, acts=list(known.acts))
        for i in range(len(seen), len(history)):
            if history[i].speaker == "agent":
                self._answer(state, history[i].text, i)
        if len(history) >= len(self._memo[0]):
            self._memo = (history, dataclasses.replace(state, acts=list(state.acts)))
        return state

    def _answer(self, state: SellerState, text: str, index: int) -> None:
        case = self._case
        assert case is not None
        rng = python_random(self._seed, "seller-reply", case.id, index)
        listing = float(case.fields["seller_price"])
        unit = price_unit(listing)

        def say(kind: str, price: float | None = None) -> None:
            state.reply = rng.choice(TEMPLATES[kind]).format(
                item=case.fields["item_name"], ask=money(state.ask), fact=rng.choice(self._facts),
                price=money(state.ask if price is None else price),
            )

        if state.deal_price is not None:
            state.reply = CLOSED["deal"].format(price=money(state.deal_price))
            return
        if state.walked_away:
            state.reply = CLOSED["walked_away"]
            return

        reading = read_buyer(text, case, self.classifier)
        act, offer = reading.act, reading.offer
        repeats = len(state.acts) - len(list(itertools.dropwhile(lambda a: a == act, reversed(state.acts))))
        state.acts.append(act)
        previous_ask = state.ask

        if reading.accepts and (offer is None or offer >= previous_ask):
            state.deal_price = previous_ask
            say("accept", previous_ask)
            return
        if offer is not None and offer < INSULT * listing:
            state.insults += 1
            if state.insults >= 2:
                state.walked_away = True
                say("walk_away")
            else:
                say("insult")
            return

        share = self.concession(state, act, offer, concession_share(act, offer, listing, repeats), index)
        if share > 0:
            state.ask = conceded(previous_ask, self.bottom, share, unit)

        if offer is not None and offer >= state.ask and not reading.tentative:
            state.deal_price = min(offer, previous_ask)
            say("accept", state.deal_price)
        elif len(state.acts) >= self.patience:
            state.walked_away = True
            say("walk_away")
        elif offer is not None and offer < LOWBALL * listing:
            say("lowball")
        elif state.ask <= self.bottom and share > 0:
            say("bottom")
        elif state.ask < previous_ask:
            say("concede")
        elif share > 0 or offer is not None:
            say("hold")
        else:
            say("greet" if act == "greet" else "inform")
