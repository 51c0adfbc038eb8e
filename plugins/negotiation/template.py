"""A scripted Buyer (``--agent template``): each of the 11 CraigslistBargain acts realised without an LLM.

Prices: the Buyer's *offer* starts at its target (``case.fields["buyer_price"]``). *propose* names the
current offer (the target until a *counter* raised it); *counter* raises the offer by :data:`STEP` (0.15) of
the gap between the target and the listing price, never above the Seller's last price (the last price the
Seller named, the listing until it named one), and names it; *agree* accepts the Seller's last price by
naming it. The other acts name no price: *counter-noprice* asks for a lower price with a comparative,
*inform* gives a reason (a tight budget), *inquire* and *confirm* ask about the item, *greet*, *affirm*,
*deny* and *disagree* are short fixed lines. ``None`` (no strategy) is the plain :data:`PLAIN` "What's your
best price?".

Wording varies between a few templates per act, picked with ``(seed, case.id, turn)``, so the reply depends
only on the case, the seed, the history and the act.
"""

from __future__ import annotations

from typing import Sequence

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.core.seeding import python_random
from ppdpp.planner.core.simulation import ScriptedAgent
from ppdpp.plugins.negotiation import CB_STRATEGIES
from ppdpp.plugins.negotiation.acts import parse_offer
from ppdpp.plugins.negotiation.seller import money, price_unit

STEP = 0.15
PLAIN = "What's your best price?"

TEMPLATES: dict[str, tuple[str, ...]] = {
    "greet": ("Hello! I'm interested in your {item}.", "Hi there, I saw your ad for the {item}."),
    "inquire": (
        "Could you tell me more about the {item}? How long have you had it?",
        "Is there anything wrong with the {item} I should know about?",
        "How old is the {item}?",
    ),
    "inform": ("I'm going to be honest, I am very limited by my budget.", "I am a school teacher on a small budget."),
    "propose": ("Would you take {offer} for it?", "Would you consider {offer}?"),
    "counter": ("Could you do {offer}?", "I could go up to {offer}.", "Would {offer} work for you?"),
    "counter-noprice": (
        "Can you do a little better on the price?",
        "That seems high for a used one; could you come down some?",
        "Could you go a bit lower on the price?",
    ),
    "confirm": ("Has the {item} ever been damaged?", "Is the {item} still under warranty?"),
    "affirm": ("Yes, exactly.", "Yes, I really like it."),
    "deny": ("No, not really.", "No, not at all.", "I'm not sure about that."),
    "agree": (
        "Okay, {seller} works for me. Deal.", "Sounds fine to me, {seller} it is.", "Deal! {seller} sounds fair.",
    ),
    "disagree": ("Sorry, that's too expensive for me.", "No, I can't agree to that price."),
}
"""A few wordings per act; in the trained act classifier each reads as its own act (except *disagree*, which
it reads as *counter-noprice*: the data has only 13 labelled *disagree* Buyer turns)."""
assert set(TEMPLATES) == set(CB_STRATEGIES), "every negotiation act needs a template"


class TemplateBuyer(ScriptedAgent):
    """The scripted Buyer of one dialogue (rules in the module docstring)."""

    name = "template"

    def __init__(self, data_dir: object = None) -> None:
        """``data_dir`` is accepted so that every negotiation factory takes the same options; the Buyer needs
        no data."""
        self._case: Case | None = None
        self._seed = 0

    def reset(self, case: Case, seed: int) -> None:
        self._case, self._seed = case, seed

    def respond(self, history: Sequence[Turn], strategy: str | None) -> str:
        case = self._case
        if case is None:
            raise ValueError("call reset(case, seed) before using the TemplateBuyer")
        if strategy is None:
            return PLAIN
        if strategy not in TEMPLATES:
            raise ValueError(f"unknown negotiation act {strategy!r}; known: {', '.join(TEMPLATES)}")
        seller_last = self.seller_last_price(history)
        offer = self.offer_before(history)
        if strategy == "counter":
            step = STEP * (float(case.fields["seller_price"]) - float(case.fields["buyer_price"]))
            unit = price_unit(float(case.fields["seller_price"]))
            offer = min(seller_last, round(round((offer + step) / unit) * unit, 2))
        rng = python_random(self._seed, "buyer-reply", case.id, len(history))
        return rng.choice(TEMPLATES[strategy]).format(
            item=case.fields["item_name"], offer=money(offer), seller=money(seller_last)
        )

    def seller_last_price(self, history: Sequence[Turn]) -> float:
        """The last price the Seller named (the listing price until it named one)."""
        assert self._case is not None
        for turn in reversed(history):
            if turn.speaker == "user":
                price = parse_offer(turn.text, self._case)
                if price is not None:
                    return price
        return float(self._case.fields["seller_price"])

    def offer_before(self, history: Sequence[Turn]) -> float:
        """The Buyer's standing offer: the last price it named other than in an *agree*, else its target."""
        assert self._case is not None
        for turn in reversed(history):
            if turn.speaker == "agent" and turn.strategy != "agree":
                price = parse_offer(turn.text, self._case)
                if price is not None:
                    return price
        return float(self._case.fields["buyer_price"])
