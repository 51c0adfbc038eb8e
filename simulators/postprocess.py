"""Cleaning raw LLM replies into one dialogue turn, as PPDPP does, and normalising text for repeat detection.

PPDPP's ``postprocess_response`` cuts the reply where the model starts speaking for the other side ("Seller:
..."), drops an unfinished last sentence and trims. We do the same, and also strip leading role prefixes
("Buyer: Hi" -> "Hi", which small models add often). A reply that cleaning would empty falls back to the
trimmed raw text, and an empty reply becomes ``"..."`` so that prompts never carry an empty turn.
"""

from __future__ import annotations

import re
from typing import Iterable

_TERMINALS = (".", "!", "?", ":", '"', "'", ")", "…")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_QUOTES = "\"'`“”‘’"


def _role_pattern(roles: Iterable[str]) -> re.Pattern[str] | None:
    names = sorted({r.strip() for r in roles if r and r.strip()}, key=len, reverse=True)
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?:^|(?<=\s))[*\"'(\[]*(?:{alternatives})[*\"')\]]*\s*:[*]*", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation followed by whitespace (enough for short chat turns)."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text.strip())) if s]


def clean_response(text: str, *, own_role: str, other_roles: Iterable[str]) -> str:
    """One clean turn from a raw reply of the LLM playing ``own_role``.

    1. strip leading role prefixes such as ``Buyer:`` or ``**Seller:**`` (either side's);
    2. cut everything from the next role prefix on (the model writing the other side's lines, or a second
       turn of its own);
    3. keep only the first paragraph's worth of text and drop an unfinished last sentence when there is
       more than one sentence; a single unfinished sentence gets a full stop, as in PPDPP;
    4. trim whitespace and stray wrapping quotes.
    """
    raw = text.strip()
    roles = _role_pattern([own_role, *other_roles])
    out = raw
    if roles is not None:
        while (m := roles.match(out)) is not None:
            out = out[m.end():].lstrip()
        if (m := roles.search(out)) is not None:
            out = out[: m.start()]
    out = re.split(r"\n\s*\n", out.strip(), maxsplit=1)[0]
    out = " ".join(out.split())
    out = _strip_wrapping_quotes(out)
    sentences = split_sentences(out)
    if len(sentences) > 1 and not sentences[-1].endswith(_TERMINALS):
        out = " ".join(sentences[:-1])
    elif len(sentences) == 1 and not out.endswith(_TERMINALS):
        out = out + "."
    out = out.strip()
    if not out:
        out = " ".join(raw.split())
    return out or "..."


def _strip_wrapping_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        return text[1:-1].strip()
    if text and text[0] in _QUOTES and text.count(text[0]) == 1:
        return text[1:].strip()
    return text


def normalise(text: str) -> str:
    """Lower case, letters and digits only, single spaces: the form compared when detecting repeats."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())
