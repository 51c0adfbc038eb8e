"""Reading critic LLM outputs: which multiple-choice answer a text states, and which prices it names.

Critic LLMs rarely answer with the exact option sentence. They change case and punctuation, add words
("Based on the conversation, ..."), quote the option, answer with a letter ("(D)"), and negate keywords
("the issue has not been solved"). The paper's parser only looks for a keyword, so it reads
"No, the Patient's issue has not been solved." as *solved*. These parsers read negation.

Words and negation
    Text is split into lower-case word tokens (``don't`` -> ``do not``, ``can't`` -> ``can not``,
    ``Patient's`` -> ``patient s``) and clause breaks (``, . ; : ! ?`` and ``but``, ``however``,
    ``although``, ``though``, ``whereas``). A phrase occurrence is *negated* when a negator (``not``,
    ``never``, ``cannot``, ``without``, ``nor``, ``neither``, ``hardly``, ``no longer``) occurs among the
    :data:`NEGATION_WINDOW` words before it in the same clause, or when the word right before it is ``no``
    ("no better"). So "No, but the Patient feels better." is *not* negated (the comma ends the clause),
    nor is "has not only been solved, but ..." (``not only`` affirms). A phrase whose clause has ``whether``
    or ``if`` before it is *hypothetical*, neither stated nor negated: "I cannot tell whether they reached a
    deal", or a critic that echoes "please decide whether ... have reached a deal".

Choices
    :func:`parse_choice` finds every phrase of every choice. Where phrases overlap, the longer one wins
    (in "not reached a deal", "reached a deal" is part of the longer phrase and does not count on its own).
    A choice is stated by its phrases that are neither negated nor hypothetical, ranked: an option letter (``(D)``, ``D)`` or
    ``D.`` at the start, ``option D``, ``answer: D``, or the bare letter alone; ``D:`` at the start too,
    unless the text states another option's sentence, since "A: ..." is also a speaker label; the n-th
    letter names the n-th key) > the key's option sentence (its first phrase) > its other phrases > a negated phrase of
    another key mapped to it by ``negated_as``. The highest-ranked choice wins; two different choices at
    the same rank are a conflict (``None``), e.g. an LLM that echoes all the options.

Prices
    :func:`extract_prices` reads ``$1,200``, ``$45.50``, ``1.2k``, ``2 grand``, ``1200 dollars``,
    ``300 bucks``, ``USD 300``, ``300 USD``, ``300$``, ``EUR 40``, ``€40``, ``£40`` and bare numbers
    ("a deal at 150"). A bare number (no currency mark, no ``k``) is *not* a price when

    * it is a year: an integer 1900-2099 written without a comma or decimals that is directly followed by
      a word other than a currency word or a small set of function words ("2008 honda", "1999 model";
      but "for 2000 and" stays a price), or directly preceded by ``in``, ``since``, ``year``, ``model`` or
      ``circa``;
    * it is followed by a unit or count (``%``, ``percent``, ``years``, ``miles``, ``gb``, ``bedroom``, ...);
    * it is glued to letters or to a time (``i7``, ``mp3``, ``5:30``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

NEGATION_WINDOW = 4
"""How many words before a phrase a negator may stand and still negate it (within one clause)."""

_NEGATORS = frozenset({"not", "never", "cannot", "without", "nor", "neither", "hardly", "barely"})
_CLAUSE_WORDS = frozenset({"but", "however", "although", "though", "whereas"})
_HYPOTHETICAL = frozenset({"whether", "if"})
Mood = Literal["stated", "negated", "hypothetical"]
_CONTRACTION_STEMS = {"ca": "can", "wo": "will", "sha": "shall"}

_TOKEN = re.compile(
    r"(?P<neg>n['’]t\b)"  # the n't of don't / isn't / haven't
    r"|(?P<word>[^\W_]+?(?=n['’]t\b)|[^\W_]+)"
    r"|(?P<punct>[,.;:!?])",
    re.IGNORECASE,
)
_CONTRACTION = re.compile(r"n['’]t\b", re.IGNORECASE)


@dataclass(frozen=True)
class _Token:
    text: str  # lower-case word, or one punctuation mark
    start: int
    end: int
    is_word: bool


@dataclass(frozen=True)
class KeywordHit:
    """One occurrence of a phrase in a text: character offsets, and whether its clause states it, negates it,
    or only asks about it ("whether ..." / "if ...": ``hypothetical``)."""

    phrase: str
    start: int
    end: int
    mood: Mood

    @property
    def negated(self) -> bool:
        return self.mood == "negated"


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    for m in _TOKEN.finditer(text):
        if m.group("neg"):
            out.append(_Token("not", m.start(), m.end(), True))
        elif m.group("word"):
            word = m.group("word").lower()
            if _CONTRACTION.match(text, m.end()):
                word = _CONTRACTION_STEMS.get(word, word)
            out.append(_Token(word, m.start(), m.end(), True))
        else:
            out.append(_Token(m.group("punct"), m.start(), m.end(), False))
    return out


def words_of(text: str) -> list[str]:
    """The lower-case word tokens of ``text`` (contractions expanded, punctuation dropped)."""
    return [t.text for t in _tokens(text) if t.is_word]


def _is_clause_break(token: _Token) -> bool:
    return not token.is_word or token.text in _CLAUSE_WORDS


def _mood(tokens: Sequence[_Token], index: int) -> Mood:
    """How the clause before ``tokens[index]`` governs a phrase starting there (see the module docstring)."""
    negated = index > 0 and tokens[index - 1].text == "no"
    affirmed = False  # "not only": the negator does not apply
    for distance, i in enumerate(range(index - 1, -1, -1)):
        if _is_clause_break(tokens[i]):
            break
        word = tokens[i].text
        if word in _HYPOTHETICAL:
            return "hypothetical"
        if distance < NEGATION_WINDOW and not (negated or affirmed):
            following = tokens[i + 1].text
            if word == "not" and following == "only":
                affirmed = True
            elif word in _NEGATORS or (word == "no" and following == "longer"):
                negated = True
    return "negated" if negated else "stated"


def _phrase_hits(tokens: Sequence[_Token], phrase: str) -> list[tuple[int, int]]:
    """(first, last) token indices of each occurrence of ``phrase``; punctuation between words is skipped."""
    target = words_of(phrase)
    if not target:
        return []
    word_idx = [i for i, t in enumerate(tokens) if t.is_word]
    words = [tokens[i].text for i in word_idx]
    n = len(target)
    return [(word_idx[k], word_idx[k + n - 1]) for k in range(len(words) - n + 1) if words[k : k + n] == target]


def find_keywords(text: str, phrases: Sequence[str]) -> list[KeywordHit]:
    """Every occurrence of each phrase in ``text`` (case, punctuation and contractions ignored), in text
    order, each with its mood. Overlapping occurrences are all reported."""
    tokens = _tokens(text)
    hits = [
        KeywordHit(phrase, tokens[a].start, tokens[b].end, _mood(tokens, a))
        for phrase in phrases
        for a, b in _phrase_hits(tokens, phrase)
    ]
    return sorted(hits, key=lambda h: (h.start, -h.end))


def states(text: str, phrases: Sequence[str]) -> bool:
    """Whether ``text`` states any of ``phrases`` (not negated, not merely asked about)."""
    return any(hit.mood == "stated" for hit in find_keywords(text, phrases))


def denies(text: str, phrases: Sequence[str]) -> bool:
    """Whether ``text`` negates one of ``phrases`` ("has not been solved" denies "solved")."""
    return any(hit.negated for hit in find_keywords(text, phrases))


_LETTER_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (
        r"^\W*\(?([A-Z])\W*$",  # the bare letter: "D", "(D)", "D."
        r"\(([A-Z])\)",  # "(D)" anywhere
        r"^\W*([A-Z])[.)]\s",  # "D. Yes, ..." / "D) ..."
        # "option D", "Answer: D." (a capital standing alone: "Answer: A deal ..." is no letter)
        r"\b(?i:option|choice|answer)\s*(?i:is|:)?\s*\(?([A-Z])(?=\s*(?:$|[).,:;]))",
    )
)
# "D: ..." at the start is also how a speaker label looks ("A: I think ..."): it names an option only when the
# text does not state another option by its sentence.
_LABEL_LIKE_LETTER = re.compile(r"^\W*([A-Z]):\s")


def _option_letters(text: str, count: int, pattern_set: Sequence[re.Pattern[str]] = _LETTER_PATTERNS) -> set[int]:
    """Indices of the options named by letter in ``text`` (A = 0); letters beyond ``count`` are ignored."""
    found: set[int] = set()
    for pattern in pattern_set:
        for m in pattern.finditer(text.strip()):
            index = ord(m.group(1)) - ord("A")
            if index < count:
                found.add(index)
    return found


def _stated_strengths(
    text: str, choices: Mapping[str, Sequence[str]], negated_as: Mapping[str, str] | None
) -> dict[str, int]:
    """Key -> the strongest way ``text`` states it: 3 by letter, 2 by its option sentence (first phrase),
    1 by another phrase, 0 by a negated phrase of a key that ``negated_as`` maps to it."""
    tokens = _tokens(text)
    spans: list[tuple[int, int, str, int, Mood]] = []  # (first, last, key, tier, mood)
    for key, phrases in choices.items():
        for rank, phrase in enumerate(phrases):
            tier = 2 if rank == 0 else 1
            spans += [(a, b, key, tier, _mood(tokens, a)) for a, b in _phrase_hits(tokens, phrase)]
    accepted: list[tuple[int, int, str, int, Mood]] = []
    for span in sorted(spans, key=lambda s: (s[0] - s[1], -s[3])):  # longest first, option sentence first
        if all(span[1] < a or span[0] > b for a, b, *_ in accepted):
            accepted.append(span)

    strength: dict[str, int] = {}
    for _, _, key, tier, mood in accepted:
        if mood == "stated":
            strength[key] = max(strength.get(key, 0), tier)
        elif mood == "negated" and negated_as and key in negated_as:
            strength.setdefault(negated_as[key], 0)
    keys = list(choices)
    sentences = {key for key, tier in strength.items() if tier == 2}
    for index in _option_letters(text, len(keys), (_LABEL_LIKE_LETTER,)):
        if not sentences - {keys[index]}:
            strength[keys[index]] = 3
    for index in _option_letters(text, len(keys)):
        strength[keys[index]] = 3
    return strength


_ANSWER_MARKER = re.compile(r"\banswer\s*(?:is|:)", re.IGNORECASE)


def _choose(text: str, choices: Mapping[str, Sequence[str]], negated_as: Mapping[str, str] | None) -> str | None:
    strength = _stated_strengths(text, choices, negated_as)
    if not strength:
        return None
    best = max(strength.values())
    winners = [key for key, value in strength.items() if value == best]
    return winners[0] if len(winners) == 1 else None


def answer_part(
    text: str, choices: Mapping[str, Sequence[str]], *, negated_as: Mapping[str, str] | None = None
) -> str:
    """The part of ``text`` that :func:`parse_choice` reads: what follows the last "Answer:" / "answer is"
    marker when that part states a choice (an LLM that echoes the question first), else the whole text."""
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        tail = text[markers[-1].end() :]
        if _choose(tail, choices, negated_as) is not None:
            return tail
    return text


def parse_choice(
    text: str,
    choices: Mapping[str, Sequence[str]],
    *,
    negated_as: Mapping[str, str] | None = None,
) -> str | None:
    """Which key of ``choices`` the LLM output ``text`` states, or ``None`` when it states none or conflicting
    ones.

    ``choices`` maps each key to phrases that signal it; put the key's full option sentence first (it outranks
    the key's other phrases), and the n-th key is also option letter n ("(B)" = the second key).
    ``negated_as`` maps a key to the key that a *negated* phrase of it states ("not solved" -> the non-solved
    answer); such a reading counts only when nothing else is stated. When the text has an "Answer:" marker
    (an LLM that echoes the question), the part after the last marker is read first (:func:`answer_part`).
    Details, the negation and the whether/if rules are in the module docstring.
    """
    return _choose(answer_part(text, choices, negated_as=negated_as), choices, negated_as)


# ---- prices ---------------------------------------------------------------------------------------------

_CURRENCY_WORDS = frozenset({"dollar", "dollars", "bucks", "buck", "usd", "eur", "euro", "euros", "cash"})
_PRICE_FOLLOWERS = frozenset({
    "and", "or", "is", "it", "i", "we", "you", "would", "if", "then", "for", "please", "ok", "okay", "sounds",
    "works", "that", "to", "but", "so", "with", "each", "total", "flat", "firm", "obo", "max", "tops", "even",
    "only", "at", "as", "be", "will", "could", "can", "now", "today", "tomorrow", "deal",
})
_YEAR_PRECEDERS = frozenset({"in", "since", "year", "model", "circa"})
_UNITS = frozenset({
    "percent", "year", "years", "yr", "yrs", "month", "months", "week", "weeks", "day", "days", "hour", "hours",
    "hr", "hrs", "minute", "minutes", "min", "mins", "mile", "miles", "mi", "km", "kms", "inch", "inches", "ft",
    "feet", "foot", "gb", "tb", "mb", "mhz", "ghz", "mp", "sq", "sqft", "bedroom", "bedrooms", "br", "bd",
    "bath", "baths", "bathroom", "bathrooms", "times", "x", "people", "persons", "pieces", "pcs", "cc", "lbs",
    "kg", "mpg", "w", "watt", "watts", "v", "volt", "volts", "hp", "cylinder", "speed", "door", "doors",
})

_PRICE = re.compile(
    r"(?<![\w.:,$€£])"
    r"(?P<pre>(?:US\$|\$|USD|EUR|€|£)\s?)?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?!\d|[.,]\d|:\d)"
    r"(?P<k>\s?(?:[kK](?![A-Za-z])|grand\b))?"
    r"(?P<post>\s?(?:\$|%|(?:dollars?|bucks?|usd|eur|euros?)\b))?",
    re.IGNORECASE,
)
_NEXT_WORD = re.compile(r"\s*-?\s*([^\W\d_]+)")
_PREV_WORD = re.compile(r"([^\W\d_]+)\s*$")


@dataclass(frozen=True)
class PriceMention:
    """A price found in a text, with the character span of its whole expression."""

    value: float
    start: int
    end: int


def _is_glued(text: str, start: int) -> bool:
    """A number that continues a code (``i7-4790``, ``SM-950``, ``#5``); ``100-150`` is a range, not a code."""
    if start == 0 or text[start - 1] not in "-/#":
        return False
    if text[start - 1] == "#":
        return True
    run = re.search(r"[^\W_]*$", text[: start - 1])
    return bool(run and any(c.isalpha() for c in run.group()))


def _bare_number_is_not_price(text: str, m: re.Match[str], value: float) -> bool:
    after = _NEXT_WORD.match(text, m.end())
    next_word = after.group(1).lower() if after else None
    if next_word in _UNITS:
        return True
    before = _PREV_WORD.search(text, 0, m.start())
    prev_word = before.group(1).lower() if before else None
    plain_integer = m.group("num").isdigit() and len(m.group("num")) == 4
    if plain_integer and 1900 <= value <= 2099:
        if prev_word in _YEAR_PRECEDERS:
            return True
        if next_word is not None and next_word not in _CURRENCY_WORDS and next_word not in _PRICE_FOLLOWERS:
            return True
    return False


def find_prices(text: str) -> list[PriceMention]:
    """Every price in ``text`` in order, with its span (rules in the module docstring)."""
    out: list[PriceMention] = []
    for m in _PRICE.finditer(text):
        pre, k, post = m.group("pre"), m.group("k"), m.group("post")
        if post and post.strip() == "%":
            continue
        num_start = m.start("num")
        if not pre and _is_glued(text, num_start):
            continue
        value = float(m.group("num").replace(",", ""))
        if k:
            value *= 1000
        if not (pre or k or post) and _bare_number_is_not_price(text, m, value):
            continue
        out.append(PriceMention(value, m.start(), m.end()))
    return out


def extract_prices(text: str) -> list[float]:
    """All prices in ``text`` in order: ``$1,200``, ``1.2k``, ``1200 dollars``, ``$45.50``, ``USD 300``, bare
    numbers; years such as "2008 honda" and counts such as "3 bedrooms" are skipped (module docstring)."""
    return [p.value for p in find_prices(text)]
