"""Built-in plugin: price negotiation on CraigslistBargain, as in PPDPP.

Our agent is the Buyer (``sys`` in the data), the user simulator the Seller. The planner picks one of the
11 dialogue acts; its instruction goes into the Buyer's role-play setup message, as in PPDPP.

Data: ``craigslistbargain/cb-{train,valid,test}.txt`` (113 / 188 / 188 scenarios). Seven valid and seven
test scenarios have an empty dialogue: they are cases (self-play starts from the scenario, not the
dialogue) but give no SFT example. A user's own file (``--cases-file``, e.g. from ``ppdpp data convert``)
holds the same objects, read by :meth:`~ppdpp.planner.toolkit.dialog_data.DialogDataDomain.load_cases_file`.

Judging: the critic answers "They have reached a deal at [price]." or "They have not reached a deal."
Each sample is read as a :class:`DealReading` (``None`` when it states neither, states both, or states a
deal without a price). The n samples are combined by ``deal_rule``:

* ``"majority"`` (default): a deal when more than half of ALL samples (parsed or not) read a deal with a
  price; the deal price is the median of their prices. A noisy critic cannot veto a clear deal with one
  stray sample, and one parsable "deal" among ten samples, nine unparsable, is no deal. When neither side
  has that quorum (more than half of all samples read a deal, or more than half read no deal) the result is
  no deal and the judgement's metrics carry ``critic_quorum_failed: 1.0`` (the evaluation report averages it
  over episodes: the share of dialogues whose last verdict had no quorum).
* ``"any_no_deal"``: PPDPP's rule: any no-deal sample means no deal; else the most common deal price.

No parsed sample means no deal. With a deal, ``reward`` and the metric ``sl`` are the sale-to-list ratio
``(deal price - seller target) / (buyer target - seller target)`` (1 = the Buyer's target, 0 = the list
price), and ``success`` is True. A deal outside the two targets keeps its raw ratio, negative above the list
price and above 1 below the Buyer's target, as PPDPP computes it (PPDPP's evaluation later clips a negative
ratio to 0; we do not). Without a deal, ``reward`` is PPDPP's small penalty :data:`NO_DEAL_REWARD` and
``sl`` is 0.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from ppdpp.planner import hookimpl
from ppdpp.planner.core.domain import QUORUM_FAILED, Case, DomainError, Judgement, Message, Turn

from ppdpp.planner.toolkit.chat import role_play_messages
from ppdpp.planner.toolkit.datafiles import lazy_data_root
from ppdpp.planner.toolkit.dialog_data import DialogDataDomain
from ppdpp.planner.toolkit.parsing import answer_part, find_keywords, find_prices, parse_choice

DealRule = Literal["any_no_deal", "majority"]
DEAL_RULES: tuple[DealRule, ...] = ("any_no_deal", "majority")
NO_DEAL_REWARD = -0.1

CB_STRATEGIES = {
    "greet": "Please say hello or chat randomly.",
    "inquire": "Please ask any question about product, year, price, usage, etc.",
    "inform": "Please provide information about the product, year, usage, etc.",
    "propose": "Please initiate a price or a price range for the product.",
    "counter": "Please propose a new price or a new price range.",
    "counter-noprice": "Please propose a vague price by using comparatives with existing price.",
    "confirm": "Please ask a question about the information to be confirmed.",
    "affirm": "Please give an affirmative response to a confirm.",
    "deny": "Please give a negative response to a confirm.",
    "agree": "Please agree with the proposed price.",
    "disagree": "Please disagree with the proposed price.",
}

BUYER_SYSTEM = (
    "Now enter the role-playing mode. In the following conversation, you will play as a buyer in a price "
    "bargaining game."
)
SELLER_SYSTEM = (
    "Now enter the role-playing mode. In the following conversation, you will play as a seller in a price "
    "bargaining game."
)
READY = "Yes, I'm ready to play the game!"
CRITIC_SYSTEM = (
    "Given a conversation between a Buyer and a Seller, please decide whether the Buyer and the Seller have "
    "reached a deal at the end of the conversation."
)
CRITIC_QUESTION = (
    "Please decide whether the Buyer and the Seller have reached a deal at the end of the conversation. If they "
    "have reached a deal, please extract the deal price as [price]. You can only reply with one of the following "
    "sentences: They have reached a deal at [price]. They have not reached a deal.\n\n"
    "The following is the conversation:\nBuyer: Can we meet in the middle at $15?\n"
    "Seller: Sure, let's meet at $15 for this high-quality balloon.\n"
    "Question: Have they reached a deal? Answer: They have reached a deal at $15.\n\n"
    "The following is the conversation:\nBuyer: That's still a bit high, can you go any lower?\n"
    "Seller: Alright, I can sell it to you for $15.\n"
    "Question: Have they reached a deal? Answer: They have not reached a deal.\n\n"
    "The following is the conversation:\n{dialogue}\nQuestion: Have they reached a deal? Answer: "
)

# Phrases that state each critic verdict; the first is the option sentence (see parsing.parse_choice).
DEAL_CHOICES: dict[str, list[str]] = {
    "deal": [
        "They have reached a deal", "reached a deal", "reached an agreement", "deal at", "deal was reached",
        "deal has been reached", "deal is reached", "made a deal", "struck a deal", "agreed on", "agreed to",
        "agreed upon", "settled on", "settled at", "sold for", "sold at",
    ],
    "no_deal": [
        "They have not reached a deal", "not reached", "not reach", "no deal", "no agreement", "not agreed",
        "not agree", "not made a deal", "not yet", "still negotiating",
    ],
}
_NEGATED_DEAL = {"deal": "no_deal"}


@dataclass(frozen=True)
class DealReading:
    """What one critic sample says: a deal (with its price) or no deal."""

    deal: bool
    price: float | None = None


def read_deal(text: str) -> DealReading | None:
    """One critic sample as a :class:`DealReading`, or ``None`` when it states no verdict, conflicting ones,
    or a deal without a price. The deal price is the first price after the deal phrase (else the last
    price before it): "They have reached a deal at $150 (asked $200)" reads 150."""
    text = answer_part(text, DEAL_CHOICES, negated_as=_NEGATED_DEAL)
    verdict = parse_choice(text, DEAL_CHOICES, negated_as=_NEGATED_DEAL)
    if verdict is None:
        return None
    if verdict == "no_deal":
        return DealReading(deal=False)
    prices = find_prices(text)
    stated = [hit.start for hit in find_keywords(text, DEAL_CHOICES["deal"]) if hit.mood == "stated"]
    anchor = min(stated, default=0)
    after = [p.value for p in prices if p.start >= anchor]
    if after:
        return DealReading(deal=True, price=after[0])
    return DealReading(deal=True, price=prices[-1].value) if prices else None


def sale_to_list_ratio(case: Case, price: float) -> float:
    """``(price - seller target) / (buyer target - seller target)``: 1 at the Buyer's target, 0 at the list
    price; not clamped."""
    buyer, seller = case.fields["buyer_price"], case.fields["seller_price"]
    if buyer == seller:
        raise DomainError(f"case {case.id}: buyer_price equals seller_price ({buyer}); the ratio is undefined")
    return (price - seller) / (buyer - seller)


def format_price(value: float) -> str:
    """A price as PPDPP prints it: ``6200`` for whole numbers, else two decimals."""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


class NegotiationDomain(DialogDataDomain):
    """CraigslistBargain price negotiation: the Buyer (our agent) bargains with the Seller."""

    name = "negotiation"
    description = "Price bargaining on CraigslistBargain: the agent is the Buyer; success = a deal, metric SL."
    agent_role = "Buyer"
    user_role = "Seller"
    strategies = CB_STRATEGIES
    max_turns = 8
    critic_samples = 10

    dataset_file = "craigslistbargain/cb-{split}.txt"
    document_hint = ("if it is the original CraigslistBargain release, convert it first: ppdpp data convert "
                     "craigslistbargain {path} (docs/data.md)")
    dataset_name = "CraigslistBargain as processed by PPDPP"
    id_prefix = "cb"
    case_fields = {
        "item_name": str,
        "buyer_item_description": str,
        "buyer_price": (int, float),
        "seller_item_description": str,
        "seller_price": (int, float),
    }

    def __init__(self, deal_rule: DealRule = "majority", *, few_shot: bool = True, price_hint: bool = False,
                 examples_dir: str | None = None) -> None:
        """``few_shot``/``price_hint``: the agent prompt's levers (:mod:`~ppdpp.plugins.negotiation.prompting`),
        in the role reminder (the last message; the setup keeps PPDPP's instruction), so they act only with
        ``reminder=True`` (the default); both off = PPDPP's prompt word for word; ``examples_dir``: the data root
        the few-shot lines come from
        (``None``: :func:`~ppdpp.planner.toolkit.datafiles.resolve_data_dir` at first use)."""
        super().__init__()
        if deal_rule not in DEAL_RULES:
            raise ValueError(f"deal_rule must be one of {DEAL_RULES}, got {deal_rule!r}")
        self.deal_rule = deal_rule
        self.few_shot, self.price_hint, self.examples_dir = few_shot, price_hint, examples_dir

    def check_fields(self, fields: dict[str, Any], where: str) -> None:
        if fields["buyer_price"] == fields["seller_price"]:
            raise DomainError(f"{where}: buyer_price equals seller_price ({fields['buyer_price']}): nothing to bargain")

    def background(self, case: Case) -> str:
        f = case.fields
        return f"Item: {f['item_name']}. Buyer's target price: {format_price(f['buyer_price'])}."

    # ---- self-play ------------------------------------------------------------------------------------
    def opening(self, case: Case) -> list[Turn]:
        item, price = case.fields["item_name"], format_price(case.fields["seller_price"])
        return [
            Turn("agent", f"Hi, how much is the {item}?"),
            Turn("user", f"Hi, this is a good {item} and its price is {price}."),
        ]

    def agent_messages(
        self, case: Case, history: Sequence[Turn], strategy: str | None, *, reminder: bool = True
    ) -> list[Message]:
        f = case.fields
        item, target = f["item_name"], format_price(f["buyer_price"])
        instruction = f"{self.instruction(strategy)} " if strategy is not None else ""
        levers = instruction
        if strategy is not None and (self.few_shot or self.price_hint):
            from ppdpp.plugins.negotiation.prompting import strategy_note

            levers = strategy_note(case, history, strategy, self.instruction(strategy), few_shot=self.few_shot,
                                   price_hint=self.price_hint, data_dir=lazy_data_root(self)) + " "
        setup = (
            f"You are the buyer who is trying to buy the {item} with the price of {target}. "
            f"Product description: {f['buyer_item_description']}\n"
            f"Please reply with only one short and succinct sentence. {instruction}Now start the game."
        )
        note = (
            f"(Remember: you are the Buyer, not an assistant. You want to buy the {item} for a price as close "
            f"to {target} as possible. {levers}Reply as the Buyer with one short sentence.)"
        )
        return role_play_messages(
            BUYER_SYSTEM, [{"role": "user", "content": setup}], history, "agent", note if reminder else None
        )

    def user_messages(self, case: Case, history: Sequence[Turn], *, reminder: bool = True) -> list[Message]:
        f = case.fields
        item, target = f["item_name"], format_price(f["seller_price"])
        setup = (
            f"You are the seller who is trying to sell the {item} with the price of {target}. "
            f"Product description: {f['seller_item_description']}\n"
            "Please reply with only one short and succinct sentence. Are you ready to play the game?"
        )
        note = (
            f"(Remember: you are the Seller, not an assistant. You want to sell the {item} for a price as close "
            f"to {target} as possible; accept an offer only if it is good for you. Reply as the Seller with one "
            "short sentence.)"
        )
        exchange = [{"role": "user", "content": setup}, {"role": "assistant", "content": READY}]
        return role_play_messages(SELLER_SYSTEM, exchange, history, "user", note if reminder else None)

    def critic_messages(self, case: Case, history: Sequence[Turn]) -> list[Message]:
        return [
            {"role": "system", "content": CRITIC_SYSTEM},
            {"role": "user", "content": CRITIC_QUESTION.format(dialogue=self.format_history(history))},
        ]

    # ---- judging ----------------------------------------------------------------------------------------
    def judge(self, case: Case, samples: Sequence[str]) -> Judgement:
        readings = [read_deal(text) for text in samples]
        prices = [r.price for r in readings if r is not None and r.deal and r.price is not None]
        refusals = sum(1 for r in readings if r is not None and not r.deal)
        if self.deal_rule == "any_no_deal":
            deal = bool(prices) and refusals == 0
            price = statistics.multimode(prices)[0] if deal else None
        else:
            deal = len(prices) * 2 > len(samples)
            price = statistics.median(prices) if deal else None
            if not deal and refusals * 2 <= len(samples):
                return Judgement(NO_DEAL_REWARD, False, list(samples), readings,
                                 {"sl": 0.0, QUORUM_FAILED: 1.0})
        if price is None:
            return Judgement(NO_DEAL_REWARD, False, list(samples), readings, {"sl": 0.0})
        ratio = sale_to_list_ratio(case, price)
        return Judgement(ratio, True, list(samples), readings, {"sl": ratio})

    def no_outcome_metrics(self) -> dict[str, float]:
        return {"sl": 0.0}


DOMAIN = NegotiationDomain()
"""The registered instance: one per process, so parsed splits stay cached across ``get_domain`` calls."""


@hookimpl
def register_domains(register) -> None:
    register(DOMAIN)


@hookimpl
def register_simulators(register) -> None:
    from ppdpp.planner.core.simulation import SimulatorSpec
    from ppdpp.plugins.negotiation.resister import ResisterSeller
    from ppdpp.plugins.negotiation.seller import RuleBasedSeller
    from ppdpp.plugins.negotiation.template import TemplateBuyer

    register(SimulatorSpec("negotiation", "rule-based", "user", RuleBasedSeller,
                           "A Seller with a hidden bottom price that concedes by the Buyer's act; exact deal price."))
    register(SimulatorSpec("negotiation", "resister", "user", ResisterSeller,
                           "The rule-based Seller with trained resisters (GAIA) choosing its concessions within its "
                           "limits: --user-checkpoints DIR,...; exact deal price."))
    register(SimulatorSpec("negotiation", "template", "agent", TemplateBuyer,
                           "A Buyer realising each act with a fixed template and price policy."))


@hookimpl
def register_data_converters(register) -> None:
    from ppdpp.planner.registry.manager import DataConverter
    from ppdpp.plugins.negotiation.convert import convert_file

    register(DataConverter("craigslistbargain", "negotiation", convert_file,
                           "The original CraigslistBargain JSON release (Stanford CoCoA) -> evaluation cases."))
