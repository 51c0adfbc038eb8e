"""`ppdpp data convert craigslistbargain FILE`: the original CraigslistBargain release (Stanford CoCoA JSON) into
negotiation cases. The input is built from real scenarios of cb-test.txt mapped back into the release's kbs and
events (plus offer and accept events); the output is checked field by field, a broken example is reported by
file, index, uuid and field (or skipped and counted), and the converted cases are played against the grounded
Seller."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ppdpp.planner.cli import main
from ppdpp.planner.core.domain import DomainError, Turn
from ppdpp.planner import hookimpl
from ppdpp.planner.registry.manager import DataConverter, PluginError, get_converter, register_plugin, unregister_plugin
from ppdpp.plugins.negotiation import NegotiationDomain, sale_to_list_ratio
from ppdpp.plugins.negotiation.convert import convert_file
from ppdpp.plugins.negotiation.seller import RuleBasedSeller
from ppdpp.plugins.negotiation.template import TemplateBuyer

PICKED = (0, 2, 3)  # non-empty cb-test dialogues: a car and a furniture item with trailing spaces, a bike
DEAL = {0: 5000, 2: 450, 3: 60}  # the offer each dialogue ends with (then accepted)


def as_item(category: str, description: str) -> dict[str, Any]:
    """``description`` as the release stores it: a title (its first three words) and two description lines."""
    title_words, rest = description.split(" ")[:3], description.split(" ", 3)[3]
    cut = rest.find(" ", len(rest) // 2)
    item = {"Category": category, "Title": " ".join(title_words), "Description": [rest[:cut], rest[cut + 1:]],
            "Price": None, "Images": []}
    assert " ".join([item["Title"], *item["Description"]]) == description  # the mapping back is lossless
    return item


def as_release(row: dict[str, Any], uuid: str, buyer_first: bool, deal: float) -> dict[str, Any]:
    """One cb-test line as an example of the original release; the buyer's kb first or second."""
    buyer = {"personal": {"Role": "buyer", "Target": row["buyer_price"], "Bottomline": None},
             "item": as_item(row["item_name"], row["buyer_item_description"])}
    seller = {"personal": {"Role": "seller", "Target": float(row["seller_price"]), "Bottomline": None},
              "item": as_item(row["item_name"], row["seller_item_description"])}
    kbs = [buyer, seller] if buyer_first else [seller, buyer]
    agent = {"sys": kbs.index(buyer), "usr": kbs.index(seller)}
    events = [{"action": "join", "agent": 0, "data": None, "time": 1.0}]
    events += [{"action": "message", "agent": agent[t["speaker"]], "data": t["text"], "time": 2.0 + j}
               for j, t in enumerate(row["dialog"])]
    events += [{"action": "offer", "agent": agent["sys"], "data": {"price": deal, "sides": ""}, "time": 90.0},
               {"action": "accept", "agent": agent["usr"], "data": None, "time": 91.0}]
    return {"uuid": uuid, "scenario": {"uuid": f"S_{uuid}", "kbs": kbs, "post_id": "1", "category": row["item_name"]},
            "events": events, "outcome": {"reward": 1, "offer": {"price": deal, "sides": ""}},
            "agents": {"0": "human", "1": "human"}}


@pytest.fixture()
def release(data_dir, tmp_path) -> tuple[Path, list[dict[str, Any]]]:
    """A release file of the PICKED scenarios and one broken example (a Target that is text), and the rows."""
    lines = (data_dir / "craigslistbargain" / "cb-test.txt").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(lines[i]) for i in PICKED]
    examples = [as_release(row, f"C_{i}", buyer_first=i % 2 == 0, deal=DEAL[i]) for i, row in zip(PICKED, rows)]
    broken = as_release(json.loads(lines[5]), "C_broken", buyer_first=True, deal=19)
    broken["scenario"]["kbs"][1]["personal"]["Target"] = "twenty dollars"
    examples.insert(2, broken)
    path = tmp_path / "test.json"
    path.write_text(json.dumps(examples), encoding="utf-8")
    return path, rows


def ppdpp(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_broken_example_names_file_index_uuid_and_field_and_nothing_is_written(release, tmp_path, capsys):
    path, _ = release
    out = tmp_path / "cases.jsonl"
    code, text = ppdpp(capsys, "data", "convert", "craigslistbargain", str(path), "--out", str(out))
    assert code == 2
    assert text.startswith("error: ") and len(text.strip().splitlines()) == 1
    assert f"{path}: example 2 (uuid C_broken): field 'scenario.kbs[1].personal.Target' has type str" in text
    assert "--skip-bad-rows" in text
    assert not out.exists()


def test_the_release_converts_field_by_field_skipping_the_broken_example(release, tmp_path, capsys):
    path, rows = release
    out = tmp_path / "cases.jsonl"
    code, text = ppdpp(capsys, "data", "convert", "craigslistbargain", str(path), "--out", str(out),
                       "--skip-bad-rows")
    assert code == 0, text
    assert "converted 3 examples" in text and "1 skipped as bad" in text
    assert "example 2 (uuid C_broken)" in text
    assert f"--domain negotiation --cases-file {out}" in text
    converted = read_jsonl(out)
    assert [c["id"] for c in converted] == [f"C_{i}" for i in PICKED]
    for i, row, case in zip(PICKED, rows, converted):
        for name in ("item_name", "buyer_item_description", "buyer_price", "seller_item_description", "seller_price"):
            assert case[name] == row[name], (i, name)
        assert type(case["seller_price"]) is int  # 6200.0 in the release is written as 6200
        assert case["dialog"] == []  # no act labels in the release: cases, not SFT examples
        expected = [{"speaker": t["speaker"], "text": t["text"].strip()} for t in row["dialog"]]
        expected += [{"speaker": "sys", "text": f"I make a formal offer of ${DEAL[i]}."},
                     {"speaker": "usr", "text": "I accept the offer."}]
        assert case["transcript"] == expected, i


def test_the_default_output_sits_beside_the_input(release, capsys):
    path, _ = release
    code, text = ppdpp(capsys, "data", "convert", "craigslistbargain", str(path), "--skip-bad-rows")
    assert code == 0, text
    assert len(read_jsonl(path.with_suffix(".jsonl"))) == 3


def test_the_converted_cases_play_against_the_grounded_seller(release, data_dir, tmp_path, capsys):
    path, rows = release
    folder = tmp_path / "data" / "craigslistbargain"
    code, text = ppdpp(capsys, "data", "convert", "craigslistbargain", str(path), "--out",
                       str(folder / "cb-test.txt"), "--skip-bad-rows")
    assert code == 0, text
    cases = NegotiationDomain().load_cases("test", tmp_path / "data")
    assert [c.fields["seller_price"] for c in cases] == [r["seller_price"] for r in rows]
    assert NegotiationDomain().sft_examples("test", tmp_path / "data") == []
    case = cases[0]
    seller, buyer = RuleBasedSeller(data_dir), TemplateBuyer()
    seller.reset(case, 0)
    buyer.reset(case, 0)
    history = list(NegotiationDomain().opening(case))
    for strategy in ["greet", "inquire", "propose", "counter", "counter", "counter", "agree", "agree"]:
        history += [Turn("agent", buyer.respond(history, strategy), strategy)]
        history += [Turn("user", seller.respond(history))]
        if seller.outcome(case, history).final:
            break
    outcome = seller.outcome(case, history)
    assert outcome.final and outcome.success, [t.text for t in history]
    deal = seller.replay(history).deal_price
    assert outcome.reward == sale_to_list_ratio(case, deal)
    assert case.fields["buyer_price"] <= deal <= case.fields["seller_price"]


def test_the_converted_file_evaluates_through_cases_file(release, tmp_path, capsys):
    path, rows = release
    cases_file = tmp_path / "cases.jsonl"
    code, text = ppdpp(capsys, "data", "convert", "craigslistbargain", str(path), "--out", str(cases_file),
                       "--skip-bad-rows")
    assert code == 0, text
    out = tmp_path / "evaluate"
    code, text = ppdpp(capsys, "evaluate", "--domain", "negotiation", "--cases-file", str(cases_file),
                       "--agent", "template", "--user", "rule-based", "--critic", "oracle",
                       "--baselines", "no-planner", "--cases", "2", "--out", str(out))
    assert code == 0, text
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["cases"] == ["C_0", "C_2"]  # the release's uuids name the cases
    episodes = read_jsonl(out / "transcripts" / "no-planner.jsonl")
    assert [e["case_id"] for e in episodes] == ["C_0", "C_2"]
    for episode, row in zip(episodes, rows):
        assert episode["opening"][1]["text"].endswith(f"its price is {row['seller_price']}.")


def example(**changes: Any) -> dict[str, Any]:
    """A small valid example of the release, with ``changes`` applied by path ("events.0.data" = ...)."""
    item = {"Category": "bike", "Title": "Road bike", "Description": ["Light frame."]}
    ex = {"uuid": "C_x", "scenario": {"kbs": [{"personal": {"Role": "buyer", "Target": 50}, "item": item},
                                              {"personal": {"Role": "seller", "Target": 80}, "item": item}]},
          "events": [{"action": "message", "agent": 0, "data": "Hi"}]}
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = ex
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return ex


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"scenario.kbs.1.personal.Role": "buyer"}, "'scenario.kbs[1].personal.Role' is 'buyer'"),
        ({"scenario.kbs.0.personal.Target": True}, "'scenario.kbs[0].personal.Target' has type bool"),
        ({"scenario.kbs.0.personal.Target": 80}, "'scenario.kbs[0].personal.Target' equals"),
        ({"scenario.kbs.0.item.Description": "Light frame."}, "'scenario.kbs[0].item.Description' has type str"),
        ({"events.0.action": "wave"}, "'events[0].action' is 'wave'"),
        ({"events.0.agent": 2}, "'events[0].agent' is 2"),
        ({"events.0": {"action": "offer", "agent": 0, "data": {"price": "lots"}}}, "'events[0].data.price'"),
        ({"scenario.kbs": []}, "'scenario.kbs' has 0 entries"),
    ],
)
def test_each_bad_field_is_named(tmp_path, changes, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([example(), example(**changes)]), encoding="utf-8")
    with pytest.raises(DomainError, match=r"bad\.json: example 1 \(uuid C_x\): field ") as raised:
        convert_file(path)
    assert field in str(raised.value)
    kept = convert_file(path, skip_bad_rows=True)
    assert len(kept.rows) == 1 and len(kept.skipped) == 1 and field in kept.skipped[0]


def test_not_a_list_and_unknown_converters_are_clear_errors(tmp_path, capsys):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(example()), encoding="utf-8")
    with pytest.raises(DomainError, match="expected a JSON list of CraigslistBargain examples, got dict"):
        convert_file(path)
    with pytest.raises(PluginError, match="unknown data converter 'cocoa'; known converters: .*craigslistbargain"):
        get_converter("cocoa")
    code, text = ppdpp(capsys, "plugins")
    assert code == 0 and "craigslistbargain" in text


class _Claims:
    """An in-process plugin that registers ``what`` as a data converter."""

    def __init__(self, what: object) -> None:
        self.what = what

    @hookimpl
    def register_data_converters(self, register) -> None:
        register(self.what)


@pytest.mark.parametrize(
    ("what", "message"),
    [
        (DataConverter("craigslistbargain", "negotiation", convert_file),
         "data converter 'craigslistbargain' is registered by two plugins, 'negotiation' and 'rival'"),
        ("craigslistbargain", "plugin 'rival' registered 'craigslistbargain', which is not a DataConverter"),
    ],
)
def test_a_clashing_or_malformed_converter_names_the_plugins(what, message):
    register_plugin(_Claims(what), name="rival")
    try:
        with pytest.raises(PluginError, match=message):
            get_converter("craigslistbargain")
    finally:
        unregister_plugin("rival")
    assert get_converter("craigslistbargain").domain == "negotiation"
