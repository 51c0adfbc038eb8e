"""Issue #26: strategy prompts a small LLM follows (few-shot lines from the training dialogues, the negotiation price
hint), the tutoring realisation reader, and benchmarks/llm_agent_eval.py end to end at a tiny size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ppdpp.planner.core.domain import Turn
from ppdpp.plugins.negotiation import CB_STRATEGIES, NegotiationDomain
from ppdpp.plugins.negotiation.acts import classifier_for
from ppdpp.plugins.negotiation.prompting import act_examples, rescaled
from ppdpp.plugins.tutoring import TutoringDomain
from ppdpp.plugins.tutoring.prompting import read_strategy, strategy_examples
from ppdpp.plugins.tutoring.template import TemplateTeacher

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def negotiation(data_dir):
    return NegotiationDomain(examples_dir=str(data_dir))


def test_every_negotiation_act_has_lines_the_seller_reads_as_that_act(data_dir):
    classifier = classifier_for(data_dir)
    examples = act_examples(str(data_dir))
    assert set(examples) == set(CB_STRATEGIES)
    for act, lines in examples.items():
        assert 1 <= len(lines) <= 3, act
        for text, _ in lines:
            assert classifier.predict(text) == act, (act, text)


def test_example_prices_move_to_the_case_scale(negotiation, data_dir):
    case = negotiation.load_cases("valid", data_dir)[0]
    listing = float(case.fields["seller_price"])
    assert rescaled("Would you take $50 for it?", 100.0, case) == f"Would you take ${round(listing / 2):.0f} for it?"


def test_few_shot_prompt_names_the_move_and_examples_but_no_price_by_default(negotiation, data_dir):
    case = negotiation.load_cases("valid", data_dir)[0]
    history = negotiation.opening(case)
    text = negotiation.agent_messages(case, history, "inquire")[-1]["content"]
    assert CB_STRATEGIES["inquire"] in text and "Your next move is to inquire" in text
    assert "Buyers making this move wrote" in text and "Name the price" not in text


def test_price_hint_is_an_option_and_names_the_template_buyers_price(data_dir):
    hinted = NegotiationDomain(price_hint=True, examples_dir=str(data_dir))
    case = hinted.load_cases("valid", data_dir)[0]
    history = hinted.opening(case)
    text = hinted.agent_messages(case, history, "propose")[-1]["content"]
    target = case.fields["buyer_price"]
    assert f"Name the price ${target:g}." in text, text
    assert "Name the price" not in hinted.agent_messages(case, history, "inquire")[-1]["content"]


def test_without_the_levers_the_prompt_is_ppdpps(data_dir):
    plain = NegotiationDomain(few_shot=False)
    case = plain.load_cases("valid", data_dir)[0]
    messages = plain.agent_messages(case, plain.opening(case), "counter")
    assert f"sentence. {CB_STRATEGIES['counter']} Now start the game." in messages[1]["content"]
    assert "Buyers making" not in json.dumps(messages)
    tutoring = TutoringDomain(few_shot=False)
    tcase = tutoring.load_cases("valid", data_dir)[0]
    assert "Teachers making" not in json.dumps(tutoring.agent_messages(tcase, tutoring.opening(tcase), "Hint"))


def test_word_hint_is_an_option_naming_the_template_teachers_line_and_the_key(data_dir):
    """Off by default; on, the reminder carries the template Teacher's line for the move at this point (its
    Italian right for this sentence), the setup names the translation, and Others gets no line."""
    plain = TutoringDomain(examples_dir=str(data_dir))
    hinted = TutoringDomain(word_hint=True, examples_dir=str(data_dir))
    case = hinted.load_cases("valid", data_dir)[0]
    target = case.fields["target"]
    words = target.split()
    attempt = " ".join(["sbagliato", *words[1:]])
    history = [*hinted.opening(case), Turn("agent", "Try it."), Turn("user", f'Is it "{attempt}"?')]
    teacher = TemplateTeacher()
    teacher.reset(case, 0)
    for strategy in ("Hint", "Correction", "Question", "Confirmation"):
        messages = hinted.agent_messages(case, history, strategy)
        line = teacher.respond(history, strategy)
        assert f"the move with the right Italian words is: {line}" in messages[-1]["content"], (strategy, messages[-1])
        assert f'The correct translation is "{target}"' in messages[1]["content"], messages[1]
        assert target not in json.dumps(plain.agent_messages(case, history, strategy)), "the hint is off by default"
    assert words[0] in teacher.respond(history, "Correction"), "the correction names the wrong word's fix"
    assert "right Italian words" not in hinted.agent_messages(case, history, "Others")[-1]["content"]
    assert "right Italian words" not in json.dumps(hinted.agent_messages(case, history, None))


def test_tutoring_reader_reads_the_template_teachers_own_lines(data_dir):
    """The realisation reader returns the strategy on the template Teacher's texts (after an attempt, where every
    strategy has its full form)."""
    domain = TutoringDomain()
    for case in domain.load_cases("valid", data_dir)[:20]:
        teacher = TemplateTeacher()
        teacher.reset(case, 0)
        words = case.fields["target"].split()
        attempt = " ".join([words[0], "sbagliato", *words[2:]]) if len(words) > 2 else "sbagliato"
        history = [*domain.opening(case), Turn("agent", "Try it."), Turn("user", f'Is it "{attempt}"?')]
        for strategy in ("Hint", "Correction", "Question", "Others"):
            line = teacher.respond(history, strategy)
            assert read_strategy(line, case.fields["target"]) == strategy, (strategy, line)
        opening = teacher.respond(domain.opening(case), "Correction")
        assert read_strategy(opening, case.fields["target"]) == "Correction", ("the whole translation", opening)
    assert read_strategy('Yes, "e accanto al" is right.', "e accanto al letto") == "Confirmation"
    assert read_strategy("How is your day going?", "e accanto al letto") == "Others"


def test_tutoring_examples_are_read_as_their_strategy(data_dir):
    examples = strategy_examples(str(data_dir))
    for strategy in ("Hint", "Question", "Correction", "Confirmation"):
        assert examples[strategy], strategy
    rows = TutoringDomain().load_cases("train", data_dir)
    targets = {" ".join(t.text.split()): c.fields["target"] for c in rows for t in c.dialogue}
    for strategy, lines in examples.items():
        for line in lines:
            assert read_strategy(line, targets[line]) == strategy, (strategy, line)


@pytest.mark.slow
def test_llm_agent_eval_runs_end_to_end_with_smollm2(tmp_path, data_dir):
    """Realisation, a baseline's evaluation and the LLM critic at a tiny size, then the table from the pieces:
    one process runs the four pieces (a comma list), the way the pieces read each other's folders; the eval
    piece still starts a true ``ppdpp evaluate`` subprocess (random: a planned strategy each turn, so the
    table's strategy, entropy and realisation columns have something to count), with the word hint on, so its
    folders and realisation variant are the hinted ones."""
    script = [sys.executable, str(REPO / "benchmarks" / "llm_agent_eval.py"), "--out", str(tmp_path),
              "--data-dir", str(data_dir), "--model", "local/smollm2", "--domains", "tutoring", "--cases", "1",
              "--policies", "random", "--realisation-models", "local/smollm2", "--realisation-cases", "1",
              "--variants", "ppdpp,fewshot,fewshot+price,fewshot+words", "--max-tokens", "8", "--word-hint"]
    done = subprocess.run([*script, "--piece", "realisation,eval,critic,table"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "tutoring" / "realisation" / "local_smollm2__fewshot.jsonl").read_text().splitlines()
    assert len(rows) == len(TutoringDomain().strategies)
    made = sorted(path.name for path in (tmp_path / "tutoring" / "realisation").iterdir())
    assert made == ["local_smollm2__fewshot+words.jsonl", "local_smollm2__fewshot.jsonl",
                    "local_smollm2__ppdpp.jsonl"], f"the price variant is negotiation's only: {made}"
    assert (tmp_path / "tutoring" / "eval-random+words" / "report.json").is_file()
    critic = (tmp_path / "tutoring" / "eval-random+words" / "llm-critic.jsonl").read_text().splitlines()
    assert len(critic) == 1
    table = (tmp_path / "table.md").read_text()
    row = next((line for line in table.splitlines() if line.startswith("| random | 1 |")), None)
    assert row is not None, table
    cells = [cell.strip() for cell in row.split("|")]
    assert cells[5] != "-" and "none" not in cells[6], f"random plans every turn, each read back: {row}"
    assert "local_smollm2 / fewshot" in table and "word hint ON" in table
