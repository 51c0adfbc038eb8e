"""Comparisons that hold up (simulators/evaluate.py): McNemar's exact test against hand-computed values, the
cluster bootstrap, paired comparisons of every two policies in report.json and the table, and evaluation over
several seeds (pooled report, per-seed numbers that match each seed's own report)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.simulators.evaluate import cluster_bootstrap_interval, mcnemar_exact, paired_difference


def outcomes(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return a, b


@pytest.mark.parametrize("a_only, b_only, p", [
    (0, 10, 2 / 1024),                         # 2 * P[X <= 0], X ~ Bin(10, 1/2)
    (1, 6, 2 * (1 + 7) / 128),                 # 2 * (C(7,0) + C(7,1)) / 2^7 = 0.125
    (8, 2, 2 * (1 + 10 + 45) / 1024),          # 0.109375
    (3, 3, 1.0),                               # 2 * 42/64 > 1: capped
    (0, 0, 1.0),                               # no discordant pair: no evidence
    (5, 0, 2 / 32),                            # 0.0625: five of five is not significant at 0.05
])
def test_mcnemar_exact_against_hand_computed_values(a_only, b_only, p):
    a, b = outcomes(4, a_only, b_only, 3)
    test = mcnemar_exact(a, b)
    assert (test.both, test.a_only, test.b_only, test.neither, test.n) == (4, a_only, b_only, 3, 7 + a_only + b_only)
    assert test.p_value == pytest.approx(p, abs=1e-12)
    assert mcnemar_exact(b, a).p_value == pytest.approx(p, abs=1e-12), "symmetric in A and B"


def test_mcnemar_matches_scipys_binomial_test():
    scipy_stats = pytest.importorskip("scipy.stats")
    for a_only, b_only in ((2, 9), (7, 3), (12, 20), (0, 1)):
        ours = mcnemar_exact(*outcomes(0, a_only, b_only, 0)).p_value
        theirs = scipy_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue
        assert math.isclose(ours, theirs, rel_tol=1e-9), (a_only, b_only)


def test_cluster_bootstrap_resamples_whole_clusters():
    values = [1.0, 1.0, 0.0, 0.0]
    # two clusters whose members agree: the interval is that of 2 values, [0, 1], not of 4
    assert cluster_bootstrap_interval(values, ["a", "a", "b", "b"], resamples=2000, seed=1) == (0.0, 1.0)
    lo, hi = cluster_bootstrap_interval([0.0, 1.0] * 20, list(range(40)), seed=3)
    assert lo < 0.5 < hi
    d = paired_difference([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], clusters=[0, 1, 0, 1])
    assert d.mean == 0.5 and d.low <= 0.5 <= d.high and 0 < d.p_value <= 1
    with pytest.raises(ValueError, match="one cluster per value"):
        cluster_bootstrap_interval([1.0], [0, 1])


GROUNDED = ["evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
            "--cases", "6", "--baselines", "no-planner,random,majority", "--max-turns", "4"]


def successes(path) -> dict[str, bool]:
    return {json.loads(line)["case_id"]: json.loads(line)["success"] for line in path.read_text().splitlines()}


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_evaluation_over_seeds_pools_and_compares_every_two_policies(tmp_path):
    out = tmp_path / "seeds"
    result = CliRunner().invoke(app, [*GROUNDED, "--seeds", "0,1,2", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "paired comparisons" in result.output and "SR per seed" in result.output
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1, 2]
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [0, 1, 2]
    names = [p["policy"] for p in report["policies"]]
    assert names == ["no-planner", "random", "majority"]
    for p in report["policies"]:
        assert p["episodes"] == 18 and [row["seed"] for row in p["per_seed"]] == [0, 1, 2]
        for row in p["per_seed"]:  # each seed's numbers are its own evaluation's
            own = json.loads((out / f"seed-{row['seed']}" / "report.json").read_text())
            mine = next(q for q in own["policies"] if q["policy"] == p["policy"])
            assert (row["sr"], row["at"], row["reward"]) == (mine["sr"]["mean"], mine["at"]["mean"],
                                                            mine["reward"]["mean"])
        assert p["sr"]["mean"] == pytest.approx(sum(r["sr"] for r in p["per_seed"]) / 3)
        assert p["sr"]["low"] <= p["sr"]["mean"] <= p["sr"]["high"]
        assert set(p["seed_std"]) == {"sr", "at", "reward"}
    pairs = [(c["a"], c["b"]) for c in report["comparisons"]]
    assert pairs == [("no-planner", "random"), ("no-planner", "majority"), ("random", "majority")]
    for c in report["comparisons"]:  # McNemar's counts are the transcripts' paired outcomes over (seed, case)
        a_only = b_only = 0
        for seed in (0, 1, 2):
            sa = successes(out / f"seed-{seed}" / "transcripts" / f"{c['a']}.jsonl")
            sb = successes(out / f"seed-{seed}" / "transcripts" / f"{c['b']}.jsonl")
            a_only += sum(sa[k] and not sb[k] for k in sa)
            b_only += sum(sb[k] and not sa[k] for k in sa)
        test = c["sr"]["mcnemar"]
        assert (c["n"], test["a_only"], test["b_only"]) == (18, a_only, b_only), c
        assert c["sr"]["p_value"] == pytest.approx(mcnemar_exact(*outcomes(0, a_only, b_only, 0)).p_value)
        assert c["sr"]["difference"] == pytest.approx((a_only - b_only) / 18)
        assert 0 < c["sr"]["permutation_p_value"] <= 1, "the by-case sign-flip test of SR is reported too"
        for key in ("sr", "reward", "at"):
            assert c[key]["low"] <= c[key]["difference"] <= c[key]["high"] and 0 < c[key]["p_value"] <= 1


def test_a_single_seed_report_has_the_comparisons_too(tmp_path):
    out = tmp_path / "one"
    result = CliRunner().invoke(app, [*GROUNDED, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [0] and len(report["comparisons"]) == 3
    assert all(c["n"] == 6 for c in report["comparisons"]) and report["policies"][0]["per_seed"] == []
    assert "paired comparisons" in result.output and "no-planner - random" in result.output
    assert "…" not in result.output, "nothing is cut at 80 columns"
    # the domain's headline metric (negotiation: SL) is compared too, as the policy rows' means differ
    assert report["headline_metrics"] == ["sl"] and "SL diff" in result.output
    sl = {p["policy"]: p["metrics"]["sl"]["mean"] for p in report["policies"]}
    for c in report["comparisons"]:
        row = c["metrics"]["sl"]
        assert row["difference"] == pytest.approx(sl[c["a"]] - sl[c["b"]])
        assert row["low"] <= row["difference"] <= row["high"] and 0 < row["p_value"] <= 1
    # strategy use: none without a planner; one strategy for majority, whose KL from the humans is -ln(its share)
    human = report["human_strategies"]
    assert human["split"] == "train" and human["examples"] > 0
    assert sum(human["distribution"].values()) == pytest.approx(1.0)
    use = {p["policy"]: p["strategies"] for p in report["policies"]}
    assert use["no-planner"]["decisions"] == 0 and use["no-planner"]["entropy_nats"] is None
    (picked,) = [k for k, v in use["majority"]["distribution"].items() if v > 0]
    assert use["majority"]["entropy_nats"] == pytest.approx(0.0)
    assert use["majority"]["kl_from_human_nats"] == pytest.approx(-math.log(human["distribution"][picked]))
    assert use["random"]["decisions"] > 0 and use["random"]["entropy_nats"] > 0
    assert "KL human nats" in result.output


def test_bad_seeds_are_refused_clearly():
    result = CliRunner().invoke(app, [*GROUNDED, "--seeds", "0,x"])
    assert result.exit_code == 2 and "--seeds" in result.output, result.output
