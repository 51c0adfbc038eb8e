"""Strategy instructions that a small instruct model follows (issue #26): few-shot Buyer lines per act and an
optional price hint.

PPDPP's instruction alone ("Please initiate a price ...") did not reach the text of a 1.5B model: given
*inquire*, Qwen2.5-Coder-1.5B wrote "Thank you for the offer. I'll consider it.". Two levers, both in the Buyer's
last message (:meth:`~ppdpp.plugins.negotiation.NegotiationDomain.agent_messages`):

* **Few-shot lines** (:func:`act_examples`, on by default: ``NegotiationDomain.few_shot``): up to
  :data:`FEW_SHOT` Buyer turns of the act from the CraigslistBargain **train** dialogues, 3 to 20 words long,
  that the act classifier (:mod:`~ppdpp.plugins.negotiation.acts`) reads as that act, the most confidently
  read first (the human labels are noisy: the prototypes of an act are the lines the reader is surest of), naming
  no item (:func:`item_free`: a line about a BMW was copied for a bike), and accepting the price in words
  (:func:`~ppdpp.plugins.negotiation.acts.accepts`) exactly when the act is *agree* ("Sure. I can swing that."
  was a *counter-noprice* prototype). Their
  prices are rescaled to this case (``example price / its listing x this listing``), so a line never names
  another item's price.
* **Price hint** (off by default: ``NegotiationDomain.price_hint``; it tells the agent a number that PPDPP's
  agent had to find itself, so it changes the setting and runs say which they used): for the bid acts
  (*propose*, *counter*, *agree*) the price the template Buyer's price policy would name
  (:class:`~ppdpp.plugins.negotiation.template.TemplateBuyer`).
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Sequence

from ppdpp.planner.core.domain import Case, Turn
from ppdpp.planner.toolkit.parsing import find_prices

FEW_SHOT = 3
"""Example lines per act."""
WORDS = (3, 20)
"""An example line has this many words (inclusive)."""
ITEM_WORDS = frozenset(
    "car cars truck vehicle hyundai honda toyota bmw bike bicycle apartment house housing home room rooms lease "
    "phone iphone samsung furniture couch sofa table chair desk bed dresser electronics tv laptop camera "
    "battery washer dryer schools neighborhood miles mileage accident accidents screen keys rent utilities "
    "remodeled tires tire".split()
)
"""Words that tie a line to its own item (the train dialogue's category, brand or parts): such a line shown for
another item is copied with the wrong item ("I'm not offering a BMW" for a bike)."""
BID_ACTS = ("propose", "counter", "agree")
"""The acts that name a price, and so get the price hint when it is on."""

_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def act_examples(data_dir: str | None) -> dict[str, tuple[tuple[str, float], ...]]:
    """Act -> up to :data:`FEW_SHOT` (Buyer line, its case's listing price) from the train split of ``data_dir``
    (``None``: the bundled cases), each read as its own act by the act classifier."""
    from ppdpp.plugins.negotiation import DOMAIN
    from ppdpp.plugins.negotiation.acts import accepts, classifier_for, features

    root = Path(data_dir) if data_dir else None
    with _LOCK:
        classifier = classifier_for(root)
        candidates: dict[str, tuple[str, float]] = {}
        for case in DOMAIN.load_cases("train", root):
            for turn in case.dialogue:
                text = " ".join(turn.text.split())
                if turn.speaker == "agent" and turn.strategy in DOMAIN.strategies \
                        and WORDS[0] <= len(text.split()) <= WORDS[1] and item_free(text) \
                        and (turn.strategy == "agree") == accepts(text):
                    candidates.setdefault(text, (turn.strategy, float(case.fields["seller_price"])))
        texts = list(candidates)
        probabilities = classifier.model.predict_proba(classifier._matrix([features(t) for t in texts]))
        column = {act: k for k, act in enumerate(classifier.model.classes_)}
        found: dict[str, list[tuple[float, int, str, float]]] = {act: [] for act in DOMAIN.strategies}
        for k, text in enumerate(texts):
            act, listing = candidates[text]
            row = probabilities[k]
            if act in column and row.argmax() == column[act]:
                found[act].append((-float(row[column[act]]), k, text, listing))
    return {act: tuple((text, listing) for _, _, text, listing in sorted(rows)[:FEW_SHOT])
            for act, rows in found.items()}


def item_free(text: str) -> bool:
    """Whether ``text`` names no item: no :data:`ITEM_WORDS` and no proper noun (a capitalised word other than
    "I..." that does not start a sentence)."""
    if any(w.lower() in ITEM_WORDS for w in re.findall(r"[A-Za-z]+", text)):
        return False
    words = text.replace("?", ".").replace("!", ".").split()
    for k, word in enumerate(words):
        starts = k == 0 or words[k - 1].endswith(".")
        if word[:1].isupper() and not starts and not word.startswith("I") and not word.startswith("OK"):
            return False
    return True


def rescaled(text: str, listing: float, case: Case) -> str:
    """``text`` (a line about an item listed at ``listing``) with every price moved to ``case``'s listing scale."""
    from ppdpp.plugins.negotiation.seller import money, price_unit

    target = float(case.fields["seller_price"])
    unit = price_unit(target)
    for price in reversed(find_prices(text)):
        value = round(round(price.value / listing * target / unit) * unit, 2)
        text = f"{text[: price.start]}{money(value)}{text[price.end :]}"
    return text


def hint_price(case: Case, history: Sequence[Turn], strategy: str) -> float | None:
    """The price the template Buyer's policy names for a bid act (``None`` for the other acts)."""
    if strategy not in BID_ACTS:
        return None
    from ppdpp.plugins.negotiation.acts import parse_offer
    from ppdpp.plugins.negotiation.template import TemplateBuyer

    buyer = TemplateBuyer()
    buyer.reset(case, 0)
    return parse_offer(buyer.respond(history, strategy), case)


def strategy_note(case: Case, history: Sequence[Turn], strategy: str, instruction: str, *, few_shot: bool,
                  price_hint: bool, data_dir: str | None) -> str:
    """The instruction for this turn: PPDPP's sentence, then (when on) the price and the example lines."""
    from ppdpp.plugins.negotiation.seller import money

    parts = [f"Your next move is to {strategy.replace('-', ' ')}: {instruction}"]
    price = hint_price(case, history, strategy) if price_hint else None
    if price is not None:
        parts.append(f"Name the price {money(price)}.")
    if few_shot:
        lines = act_examples(data_dir).get(strategy, ())
        if lines:
            shown = " / ".join(f'"{rescaled(text, listing, case)}"' for text, listing in lines)
            parts.append(f"Buyers making this move wrote, for example: {shown}. Write a new line like these for "
                         f"the {case.fields['item_name']}.")
    return " ".join(parts)
