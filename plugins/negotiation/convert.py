"""Converting the original CraigslistBargain release (Stanford CoCoA, He et al. 2018) into the negotiation
domain's line format; ``ppdpp data convert craigslistbargain FILE`` runs :func:`convert_file`.

The release is one JSON list of examples ``{"uuid", "scenario": {"kbs": [kb, kb], ...}, "events": [...],
...}``; each kb is ``{"personal": {"Role": "buyer"|"seller", "Target": price, ...}, "item": {"Category",
"Title", "Description": [lines], ...}}`` and each event ``{"agent": 0|1, "action", "data", ...}``, where
``agent`` indexes ``kbs``. Each example becomes one line:

* ``item_name``: the item's ``Category`` (``car``, ``bike``, ... as in PPDPP's files);
* ``buyer_item_description`` / ``seller_item_description``: ``Title`` and the ``Description`` lines of the
  buyer's / seller's kb, stripped and joined by single spaces;
* ``buyer_price`` / ``seller_price``: the ``Target`` of the buyer's / seller's kb (whole floats as ints);
* ``dialog``: ``[]``. The release has no dialogue-act labels, and the domain needs one on every Buyer turn, so
  the file serves as evaluation cases (self-play starts from the scenario) and gives no SFT examples;
* ``transcript``: the conversation as unlabelled turns ``{"speaker": "sys"|"usr", "text"}`` (the buyer is
  ``sys``), in the ``dialog`` turn format: label each Buyer turn with an act and move them to ``dialog`` to
  train on them. A ``message`` is its text (empty ones are dropped); the deal actions become text:
  ``offer`` -> "I make a formal offer of $P." ("I make a formal offer." without a price), ``accept`` ->
  "I accept the offer.", ``reject`` -> "I reject the offer.", ``quit`` -> "I quit the negotiation.";
  the web interface's ``join``, ``leave``, ``typing`` and ``eval`` events are dropped;
* ``id``: the example's ``uuid``, when it has one (a cases file's ``id`` names the case).

A bad example is an error naming the file, the example's index and uuid, and the field (a path such as
``scenario.kbs[1].personal.Target``); with ``skip_bad_rows`` it is skipped and its message kept instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.registry.manager import Conversion
from ppdpp.plugins.negotiation import format_price

SPEAKERS = {"buyer": "sys", "seller": "usr"}
DEAL_TEXT = {
    "accept": "I accept the offer.",
    "reject": "I reject the offer.",
    "quit": "I quit the negotiation.",
}
INTERFACE_ACTIONS = frozenset({"join", "leave", "typing", "eval"})
ACTIONS = ("message", "offer", *DEAL_TEXT, *sorted(INTERFACE_ACTIONS))


class _BadField(Exception):
    """A problem with one field of one example; :func:`convert_file` adds the file and the example."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}" if field else problem)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "object", list: "list", str: "string", int: "number", float: "number"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _get(obj: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    """``obj[key]`` of JSON type ``kind`` (a bool is never a number), else :class:`_BadField` naming it."""
    field = f"{where}.{key}" if where else key
    if key not in obj:
        raise _BadField(field, "is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _BadField(field, f"has type {type(value).__name__}, expected {_kind_name(kind)}")
    return value


def _price(kb: dict[str, Any], where: str) -> int | float:
    personal = _get(kb, "personal", where, dict)
    value = _get(personal, "Target", f"{where}.personal", (int, float))
    if not math.isfinite(value):
        raise _BadField(f"{where}.personal.Target", f"is {value}, expected a finite price")
    return int(value) if float(value).is_integer() else value


def _description(item: dict[str, Any], where: str) -> str:
    title = _get(item, "Title", where, str)
    lines = _get(item, "Description", where, list)
    for j, line in enumerate(lines):
        if not isinstance(line, str):
            raise _BadField(f"{where}.Description[{j}]", f"has type {type(line).__name__}, expected string")
    return " ".join(part.strip() for part in (title, *lines) if part.strip())


def _offer_text(data: Any, field: str) -> str:
    if isinstance(data, str):  # some dumps store the offer as a JSON string
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            raise _BadField(field, f"is {data!r}, expected an offer object {{\"price\": ...}}") from None
    if not isinstance(data, dict):
        raise _BadField(field, f"has type {type(data).__name__}, expected an offer object {{\"price\": ...}}")
    price = data.get("price")
    if price is None:
        return "I make a formal offer."
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price):
        raise _BadField(f"{field}.price", f"is {price!r}, expected a number")
    return f"I make a formal offer of ${format_price(price)}."


def _turn(event: Any, j: int, speakers: dict[int, str]) -> dict[str, str] | None:
    where = f"events[{j}]"
    if not isinstance(event, dict):
        raise _BadField(where, f"has type {type(event).__name__}, expected object")
    action = _get(event, "action", where, str)
    if action not in ACTIONS:
        raise _BadField(f"{where}.action", f"is {action!r}, expected one of {', '.join(ACTIONS)}")
    if action in INTERFACE_ACTIONS:
        return None
    agent = _get(event, "agent", where, int)
    if agent not in speakers:
        raise _BadField(f"{where}.agent", f"is {agent}, expected 0 or 1 (an index into scenario.kbs)")
    if action == "message":
        text = _get(event, "data", where, str).strip()
    elif action == "offer":
        text = _offer_text(event.get("data"), f"{where}.data")
    else:
        text = DEAL_TEXT[action]
    return {"speaker": speakers[agent], "text": text} if text else None


def _row(example: Any) -> dict[str, Any]:
    """One example of the release as a negotiation line (module docstring); raises :class:`_BadField`."""
    if not isinstance(example, dict):
        raise _BadField(None, f"is a JSON {type(example).__name__}, expected an object")
    scenario = _get(example, "scenario", "", dict)
    kbs = _get(scenario, "kbs", "scenario", list)
    if len(kbs) != 2:
        raise _BadField("scenario.kbs", f"has {len(kbs)} entries, expected 2 (the buyer's and the seller's)")
    sides: dict[str, int] = {}
    for i, kb in enumerate(kbs):
        where = f"scenario.kbs[{i}]"
        if not isinstance(kb, dict):
            raise _BadField(where, f"has type {type(kb).__name__}, expected object")
        role = _get(_get(kb, "personal", where, dict), "Role", f"{where}.personal", str)
        if role not in SPEAKERS or role in sides:
            raise _BadField(f"{where}.personal.Role", f"is {role!r}; expected one 'buyer' and one 'seller' kb")
        sides[role] = i
    buyer, seller = (f"scenario.kbs[{sides[r]}]" for r in ("buyer", "seller"))
    buyer_kb, seller_kb = kbs[sides["buyer"]], kbs[sides["seller"]]
    buyer_item, seller_item = _get(buyer_kb, "item", buyer, dict), _get(seller_kb, "item", seller, dict)
    row: dict[str, Any] = {}
    if isinstance(example.get("uuid"), str) and example["uuid"]:
        row["id"] = example["uuid"]
    row["item_name"] = _get(seller_item, "Category", f"{seller}.item", str).strip()
    if not row["item_name"]:
        raise _BadField(f"{seller}.item.Category", "is empty")
    row["buyer_item_description"] = _description(buyer_item, f"{buyer}.item")
    row["buyer_price"] = _price(buyer_kb, buyer)
    row["seller_item_description"] = _description(seller_item, f"{seller}.item")
    row["seller_price"] = _price(seller_kb, seller)
    if row["buyer_price"] == row["seller_price"]:
        raise _BadField(f"{buyer}.personal.Target", f"equals the seller's Target ({row['seller_price']}): "
                                                    "nothing to bargain")
    speakers = {i: SPEAKERS[role] for role, i in sides.items()}
    events = _get(example, "events", "", list)
    turns = (_turn(event, j, speakers) for j, event in enumerate(events))
    row["dialog"] = []
    row["transcript"] = [turn for turn in turns if turn is not None]
    return row


def convert_file(path: Path, *, skip_bad_rows: bool = False) -> Conversion:
    """Convert the release file ``path`` (a JSON list of examples) into negotiation lines."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        try:
            examples = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DomainError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(examples, list):
        raise DomainError(f"{path}: expected a JSON list of CraigslistBargain examples, got "
                          f"{type(examples).__name__} (is this the original release's train/dev/test .json?)")
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for index, example in enumerate(examples):
        try:
            rows.append(_row(example))
        except _BadField as exc:
            uuid = example.get("uuid") if isinstance(example, dict) else None
            message = f"{path}: example {index}{f' (uuid {uuid})' if isinstance(uuid, str) else ''}: {exc}"
            if not skip_bad_rows:
                raise DomainError(f"{message} (--skip-bad-rows skips such examples)") from None
            skipped.append(message)
    return Conversion(rows, skipped)
