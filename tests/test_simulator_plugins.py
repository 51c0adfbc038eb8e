"""Programmatic roles from a third-party plugin, used by `ppdpp evaluate` and `ppdpp rl` like the built-in ones.

The test plugin registers, for the real tutoring domain, a student that succeeds exactly when the teacher's turn
contains the target (an exact outcome) and a teacher that writes the target only under the strategy
"Correction". So the oracle's numbers are known in advance: a policy that always picks Correction succeeds at
turn 1 on every case, one that never picks it never succeeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from ppdpp.planner import hookimpl
from ppdpp.planner.cli.app import app
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.core.simulation import Outcome, ScriptedAgent, SimulatorSpec, UserSimulator
from ppdpp.planner.registry.manager import PluginError, get_simulator, register_plugin, simulators, unregister_plugin


class EchoStudent(UserSimulator):
    name = "echo-student"

    def reset(self, case, seed):
        self.target = case.fields["target"]
        self.resets = getattr(self, "resets", 0) + 1

    def respond(self, history):
        return self.target if self.target in history[-1].text else "I don't know."

    def outcome(self, case, history):
        solved = history[-1].text == self.target
        return Outcome(success=solved, reward=1.0 if solved else -0.5, metrics={"solved": float(solved)},
                       final=solved, detail="solved" if solved else "not yet")


class CorrectingTeacher(ScriptedAgent):
    name = "correcting-teacher"

    def reset(self, case, seed):
        self.target = case.fields["target"]

    def respond(self, history, strategy):
        return f'It is "{self.target}".' if strategy == "Correction" else "Try again."


class TestSimulators:
    @hookimpl
    def register_simulators(self, register):
        register(SimulatorSpec("tutoring", "echo-student", "user", lambda **_: EchoStudent()))
        register(SimulatorSpec("tutoring", "correcting-teacher", "agent", lambda **_: CorrectingTeacher()))


@pytest.fixture
def test_plugin() -> Iterator[None]:
    register_plugin(TestSimulators(), name="test-simulators")
    yield
    unregister_plugin("test-simulators")


def test_the_plugins_roles_are_found_by_name(test_plugin: None) -> None:
    assert get_simulator("tutoring", "user", "echo-student") is not None
    assert get_simulator("tutoring", "agent", "correcting-teacher") is not None
    assert get_simulator("tutoring", "user", "correcting-teacher") is None, "roles are looked up per role"
    assert get_simulator("negotiation", "user", "echo-student") is None, "and per domain"


def test_a_second_plugin_claiming_the_same_simulator_is_refused(test_plugin: None) -> None:
    register_plugin(TestSimulators(), name="test-simulators-again")
    try:
        with pytest.raises(PluginError, match="registered by two plugins, 'test-simulators' and 'test-simulators-again'"):
            simulators("tutoring")
    finally:
        unregister_plugin("test-simulators-again")


def test_evaluate_plays_a_third_party_simulator_with_the_oracle(test_plugin: None, data_dir: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "tutoring", "--data-dir", str(data_dir), "--agent", "correcting-teacher",
        "--user", "echo-student", "--critic", "oracle", "--baselines", "no-planner,random,majority",
        "--cases", "12", "--max-turns", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    rows = {p["policy"]: p for p in report["policies"]}
    assert rows["no-planner"]["successes"] == 0, "without a strategy the teacher never gives the answer"
    assert rows["majority"]["episodes"] == 12
    # majority picks the most frequent training label every turn: the oracle says exactly how that went
    majority_label = max(("Hint", "Question", "Correction", "Confirmation"),
                         key=lambda s: sum(1 for line in (data_dir / "cima" / "cima-train.txt").open()
                                           if json.loads(line)["strategy"] == s))
    expected = 12 if majority_label == "Correction" else 0
    assert rows["majority"]["successes"] == expected, (majority_label, rows["majority"])
    assert report["models"] == {"agent": "correcting-teacher", "user": "echo-student", "critic": "oracle"}
    assert "solved" in rows["random"]["metrics"], "the oracle's own metrics reach the report"
    transcripts = (out / "transcripts" / "random.jsonl").read_text().splitlines()
    assert len(transcripts) == 12


def test_a_scripted_agent_needs_a_named_user(test_plugin: None, data_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "tutoring", "--data-dir", str(data_dir), "--agent", "correcting-teacher",
        "--baselines", "no-planner", "--cases", "2", "--out", str(tmp_path / "e")])
    assert isinstance(result.exception, DomainError), result.output  # main() prints it as one line, exit 2
    assert "name a --user" in str(result.exception) and "echo-student" in str(result.exception)
    assert not (tmp_path / "e").exists(), "nothing is written before the roles are checked"


def test_the_oracle_needs_a_programmatic_user(test_plugin: None, data_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "evaluate", "-d", "tutoring", "--data-dir", str(data_dir), "--agent", "local/smollm2",
        "--critic", "oracle", "--baselines", "no-planner", "--cases", "2", "--out", str(tmp_path / "e")])
    assert isinstance(result.exception, DomainError), result.output
    assert "--critic oracle needs a programmatic --user" in str(result.exception)


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_every_baseline_row_reproduces_under_concurrency(data_dir: Path, tmp_path: Path) -> None:
    """The same evaluation with dialogues played 16 at a time and one at a time: every row of the report is
    identical (each policy and dialogue draws from its own seeded generator; with one generator shared by
    concurrent dialogues, the interleaving would change the random baseline's draws)."""
    def rows(out: Path, concurrency: int) -> list[dict]:
        result = CliRunner().invoke(app, [
            "evaluate", "-d", "tutoring", "--data-dir", str(data_dir), "--agent", "template", "--user", "scripted",
            "--critic", "oracle", "--baselines", "no-planner,random,majority", "--cases", "40", "--max-turns", "4",
            "--concurrency", str(concurrency), "--seed", "3", "--out", str(out)])
        assert result.exit_code == 0, result.output
        return json.loads((out / "report.json").read_text())["policies"]

    first, second = rows(tmp_path / "a", 16), rows(tmp_path / "b", 1)
    assert [p["policy"] for p in first] == ["no-planner", "random", "majority"]
    assert first == second
    random_row = next(p for p in first if p["policy"] == "random")
    assert 0 < random_row["successes"] < 40, "the random baseline must actually draw different strategies"
