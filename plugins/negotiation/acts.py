"""Reading a Buyer's utterance as the rule-based Seller does: its dialogue act and its price offer.

:class:`ActClassifier` labels a Buyer turn with one of the 11 CraigslistBargain acts
(:data:`~ppdpp.plugins.negotiation.CB_STRATEGIES`) from its text alone, never from the planner's label. It is
TF-IDF word 1-2-grams plus char_wb 2-5-grams into a multinomial logistic regression (C=10). Before
vectorising, every price the project's parser finds is replaced by a ``PRICETOKEN`` word. (A context word
saying whether an earlier turn named a price lifts held-out accuracy to 0.669, but in self-play the opening
always names the listing price, and with it the classifier reads most *deny*, *disagree* and *affirm* lines
as *counter-noprice*; the text alone keeps them apart.)

Training data (:func:`classifier_for`): the labelled Buyer (``sys``) turns of the CraigslistBargain train and
valid splits (1114 turns, about 0.8 CPU s: :data:`SOLVER`), or, without a data dir, those of the bundled negotiation
cases (all splits). One classifier per data dir per process.

Held-out accuracy on the 710 Buyer turns of cb-test: **0.634**, against **0.224** for always answering the
majority act (``counter``); measured with::

    python -c "from pathlib import Path; from ppdpp.plugins.negotiation import DOMAIN; \
    from ppdpp.plugins.negotiation.acts import act_examples, classifier_for; d = Path('/work/shared/data'); \
    c = classifier_for(d); ex = act_examples(DOMAIN.load_cases('test', d)); \
    print(c.accuracy(ex), c.majority_accuracy(ex))"
"""

from __future__ import annotations

import collections
import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ppdpp.planner.core.domain import SPLITS, Case, DomainError, Split
from ppdpp.planner.toolkit.parsing import find_prices

TRAIN_SPLITS: tuple[Split, ...] = ("train", "valid")
"""The CraigslistBargain splits the classifier learns from; cb-test stays held out."""
PRICE_TOKEN = "PRICETOKEN"
SOLVER = "newton-cg"
"""The logistic regression's solver: the same optimum as scikit-learn's default lbfgs (every prediction on the
710 cb-test Buyer turns identical) in 9 Newton steps, 0.45 CPU s against lbfgs's 1.0 (one BLAS thread; lbfgs
took 5.5 CPU s with the default threads on a busy machine)."""
PREDICTION_CACHE = 4096
"""How many distinct utterances each classifier remembers the act of."""
OFFER_RANGE = (0.05, 2.0)
"""A price counts as an offer only within these multiples of the listing price: outside it the number is a
mileage, a model number, a year the parser kept ("bought in late 2013."), not a bid."""


ACCEPT_CUES = re.compile(
    r"(?:^|[.!,;]\s*)deal\b|\b(?:it'?s|it is|that'?s|we have|you'?ve got|you have) a deal\b"
    r"|\b(i'?ll take it|i will take it|i'?ll buy it|i will buy it|i accept|accepted|agreed|works for me"
    r"|that works|sounds (?:good|great|fair|fine|perfect)|let'?s do it|sold)\b|\bPRICETOKEN it is\b",
    re.IGNORECASE,
)
"""Words that state an acceptance: "Deal." (a sentence that starts with it), "it's a deal", "I'll take it",
"works for me", "$600 it is" (docs/simulators.md). "It's a great deal" is praise, not an acceptance."""
HEDGE_CUES = re.compile(
    r"\?|\b(consider|think|thinking|maybe|perhaps|might|may|could|would|should|possibly|probably"
    r"|unsure|if|but|however|though|although|unless|lower|cheaper|less|discount|too|no|not|don'?t|can'?t|cannot"
    r"|won'?t|hmm|wait|later|first)\b",
    re.IGNORECASE,
)
"""What makes an acceptance conditional or noncommittal: a question mark, a hedge ("I'll consider it", "maybe",
"could"), a condition ("if", "but"), a request for less ("lower", "discount") or a negation. A turn with one of
these never accepts by its words alone (it still closes a deal by naming a price at or above the ask)."""
CAN_PAY = re.compile(r"\bi (?:think i )?(?:can|could) (?:pay|do|afford|swing) (?:that|it|this)\b", re.IGNORECASE)
"""Saying one can pay the standing price ("I think I could pay that.", "I can do that."): an acceptance, whose
own "think" and "could" are not hedges (any other hedge, condition or question still is)."""
TENTATIVE = re.compile(r"\b(looking (?:for|at)|wondering|tell me|know more|more about|i'?m considering"
                       r"|i am considering|i'?ll consider|i will consider)\b",
                       re.IGNORECASE)
"""A turn that looks for something, wonders or asks to be told ("I'm looking at it for a price of 2100. Can you
tell me more about it?") names a price as a description: it is no bid the Buyer is held to at the ask."""
HEDGE_PHRASES = re.compile(
    r"\b(consider|considering|think about it|thinking about it|let me think|make a decision|decide|call you back"
    r"|get back to you|negotiate|keep (?:it|that) in mind|i'?ll see)\b",
    re.IGNORECASE,
)
ASKS_LESS = re.compile(r"\b(lower|cheaper|less|discount|better|come down|go down|reduce|knock|off)\b", re.IGNORECASE)
"""A turn with a hedge phrase and no price, question or request for less ("I'll consider it.", "I'm
considering buying it.", "I'll call you back soon.", "I'm willing to negotiate.") is noncommittal whatever the
act classifier reads: the Seller neither concedes nor closes (LLM agents hedge; a concession to a hedge paid
them for it)."""
PRICE_QUESTION = re.compile(
    r"\b(firm|final|lowest|best|negotiable|flexible|asking|include|includes|including|shipping|delivery)\b",
    re.IGNORECASE,
)
"""A question with one of these words asks about the Seller's price ("Is $600 firm?"): its price is no bid."""


def accepts(text: str) -> bool:
    """Whether the Buyer's ``text`` accepts unambiguously: an acceptance cue (:data:`ACCEPT_CUES`) and no
    hedge, condition, question or negation (:data:`HEDGE_CUES`). "Deal. I'll take it for $600." accepts;
    "I'll consider it.", "Okay.", "Sounds good, but can you do better?" do not."""
    text = features(text.replace("\u2019", "'"))
    cue = ACCEPT_CUES.search(text) is not None or CAN_PAY.search(text) is not None
    return cue and HEDGE_CUES.search(CAN_PAY.sub(" ", text)) is None


def hedges(text: str) -> bool:
    """Whether ``text`` only hedges: a hedge phrase (:data:`HEDGE_PHRASES`), no question, no request for less."""
    return "?" not in text and HEDGE_PHRASES.search(text) is not None and ASKS_LESS.search(text) is None


def asks_about_price(text: str) -> bool:
    """Whether ``text`` is a question about the Seller's price ("Is $600 your final price?"), not a bid."""
    return "?" in text and PRICE_QUESTION.search(text) is not None


@dataclass(frozen=True)
class BuyerReading:
    """How the Seller reads one Buyer turn: the act it acts on, the bid it holds the Buyer to (``None``: no
    bid), whether the words accept the standing price, and whether the price is only described
    (:data:`TENTATIVE`: the Seller does not close a deal on it). ``act`` is the classifier's act, except that an
    acceptance is always *agree* and a classifier *agree* that does not accept is a *counter* when it names a
    price, else ``"noncommittal"`` (no act of the 11: the Seller neither concedes nor closes)."""

    act: str
    offer: float | None
    accepts: bool
    tentative: bool = False


NONCOMMITTAL = "noncommittal"
BIDS = frozenset({"propose", "counter", "agree", "counter-noprice"})
"""The acts whose price is a bid."""


def read_buyer(text: str, case: Case, classifier: "ActClassifier") -> BuyerReading:
    """The Seller's reading of the Buyer's ``text`` (see :class:`BuyerReading` and docs/simulators.md)."""
    act = classifier.predict(text)
    accepted = accepts(text)
    bid = (act in BIDS or accepted) and not asks_about_price(text)
    offer = parse_offer(text, case) if bid else None
    if accepted:
        act = "agree"
    elif act == "agree":
        act = "counter" if offer is not None else NONCOMMITTAL
    elif hedges(text) and not find_prices(text):
        act, offer = NONCOMMITTAL, None
    return BuyerReading(act, offer, accepted, tentative=offer is not None and TENTATIVE.search(text) is not None)


@dataclass(frozen=True)
class ActExample:
    """One labelled Buyer turn: its text and its act."""

    text: str
    act: str


def parse_offer(text: str, case: Case) -> float | None:
    """The price the Buyer's ``text`` offers for ``case``'s item, or ``None`` when it names none.

    Prices are read by :func:`ppdpp.planner.toolkit.parsing.find_prices` (which already skips years such as
    "2008 honda" and counts such as "3 bedrooms"); of those within :data:`OFFER_RANGE` times the listing
    price, the lowest is the offer: a Buyer who names several ("I can't pay $200, but $150") is held to the
    lowest one.
    """
    listing = float(case.fields["seller_price"])
    low, high = OFFER_RANGE[0] * listing, OFFER_RANGE[1] * listing
    offers = [p.value for p in find_prices(text) if low <= p.value <= high]
    return min(offers) if offers else None


def features(text: str) -> str:
    """The string the classifier vectorises: ``text`` with each price replaced by :data:`PRICE_TOKEN`."""
    for price in reversed(find_prices(text)):
        text = f"{text[: price.start]} {PRICE_TOKEN} {text[price.end :]}"
    return text


def act_examples(cases: Iterable[Case]) -> list[ActExample]:
    """The labelled Buyer (agent) turns of ``cases``."""
    return [
        ActExample(turn.text, turn.strategy)
        for case in cases
        for turn in case.dialogue
        if turn.speaker == "agent" and turn.strategy is not None
    ]


class ActClassifier:
    """A trained Buyer-act classifier (see the module docstring). Predictions are memoised per text (a
    dialogue replays its turns, and scripted Buyers repeat their lines)."""

    def __init__(self, examples: Sequence[ActExample]) -> None:
        if len({ex.act for ex in examples}) < 2:
            raise DomainError(f"the act classifier needs turns of at least two acts, got {len(examples)} turns")
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizers = (
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        )
        texts = [features(ex.text) for ex in examples]
        for vectorizer in self.vectorizers:
            vectorizer.fit(texts)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # a multi-threaded BLAS spins against busy cores: 5x the CPU time
            self.model = LogisticRegression(C=10.0, solver=SOLVER, max_iter=2000).fit(
                self._matrix(texts), [ex.act for ex in examples])
        self.majority = collections.Counter(ex.act for ex in examples).most_common(1)[0][0]
        self.predict = functools.lru_cache(maxsize=PREDICTION_CACHE)(self._predict)

    def _matrix(self, texts: Sequence[str]):
        from scipy.sparse import hstack

        return hstack([vectorizer.transform(texts) for vectorizer in self.vectorizers]).tocsr()

    def _predict(self, text: str) -> str:
        """The act of one Buyer utterance."""
        return str(self.model.predict(self._matrix([features(text)]))[0])

    def accuracy(self, examples: Sequence[ActExample]) -> float:
        """The share of ``examples`` whose act this classifier predicts."""
        predicted = self.model.predict(self._matrix([features(ex.text) for ex in examples]))
        return sum(p == ex.act for p, ex in zip(predicted, examples)) / len(examples)

    def majority_accuracy(self, examples: Sequence[ActExample]) -> float:
        """The share of ``examples`` labelled with the training data's most common act (the baseline)."""
        return sum(ex.act == self.majority for ex in examples) / len(examples)


_CLASSIFIERS: dict[str | None, ActClassifier] = {}
_LOCK = threading.Lock()


def classifier_for(data_dir: Path | None) -> ActClassifier:
    """The classifier trained on ``data_dir``'s CraigslistBargain train+valid Buyer turns (``None``: the
    bundled cases), trained once per data dir per process."""
    from ppdpp.plugins.negotiation import DOMAIN

    key = None if data_dir is None else str(Path(data_dir).resolve())
    with _LOCK:
        if key not in _CLASSIFIERS:
            splits = TRAIN_SPLITS if data_dir is not None else SPLITS
            cases = [case for split in splits for case in DOMAIN.load_cases(split, data_dir)]
            _CLASSIFIERS[key] = ActClassifier(act_examples(cases))
        return _CLASSIFIERS[key]
