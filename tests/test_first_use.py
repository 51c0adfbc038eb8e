"""What a new user meets first on their own data (#28): one test per numbered item of the issue that is not
covered next to its code (item 1: tests/test_user_data.py; the documented commands: test_documented_commands.py).
Each test gives the failing input and checks the clear error or the corrected output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppdpp.planner.cli import main


def _run(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    """``ppdpp ARGS`` in this process: (exit code, what it printed)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    out = capsys.readouterr()
    return exited.value.code, out.out + out.err


# ---- item 2: the default baselines are those the roles can run --------------------------------------------------
GROUNDED = ["evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
            "--cases", "2", "--max-turns", "2"]


def test_default_baselines_leave_out_llm_with_a_scripted_agent_and_say_why(tmp_path, capsys):
    code, out = _run(capsys, [*GROUNDED, "--out", str(tmp_path / "ev")])
    assert code == 0, out
    assert "--baselines auto leaves out llm: the llm baseline asks the agent's LLM to plan, but the agent is " \
           "scripted" in out, out
    import json

    assert json.loads((tmp_path / "ev" / "config.json").read_text(encoding="utf-8"))["baselines"] == [
        "no-planner", "random", "majority"]


def test_an_explicit_llm_baseline_with_a_scripted_agent_is_still_an_error(tmp_path, capsys):
    code, out = _run(capsys, [*GROUNDED, "--baselines", "random,llm", "--out", str(tmp_path / "ev")])
    assert code == 2 and "leave llm out of --baselines" in out, out


# ---- item 6: a third-party plugin that fails to import ---------------------------------------------------------
def _broken_plugin(root: Path) -> Path:
    """A distribution ``broken-plugin`` whose ``ppdpp`` entry point raises on import."""
    (root / "broken_ppdpp_plugin.py").write_text("import not_a_module_anywhere  # noqa\n", encoding="utf-8")
    info = root / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[ppdpp]\nbroken = broken_ppdpp_plugin\n", encoding="utf-8")
    return root


def _ppdpp(*args: str, pythonpath: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "PPDPP_PLUGINS"}
    environment.update(COLUMNS="250", PYTHONPATH=str(pythonpath), **env)
    return subprocess.run([sys.executable, "-c", "from ppdpp.planner.cli import main; main()", *args],
                          capture_output=True, text=True, env=environment, timeout=300)


def test_a_broken_third_party_plugin_is_a_warning_and_listed_with_its_error(tmp_path, capsys):
    site = _broken_plugin(tmp_path)
    stats = _ppdpp("data", "stats", "-d", "tutoring", pythonpath=site)  # a fresh interpreter finds the entry point
    assert stats.returncode == 0, stats.stdout + stats.stderr
    warning = [line for line in stats.stderr.splitlines() if "broken" in line]
    assert warning == ["warning: plugin 'broken' (broken_ppdpp_plugin) failed to load: ModuleNotFoundError: No "
                       "module named 'not_a_module_anywhere'; left out (`ppdpp plugins` lists it)"], stats.stderr
    from ppdpp.planner.registry.manager import PLUGINS_ENV, restrict_plugins

    try:
        with pytest.MonkeyPatch.context() as patch:  # the rest in this process, with the plugin on sys.path
            patch.setenv("COLUMNS", "250")
            patch.delenv(PLUGINS_ENV, raising=False)
            patch.syspath_prepend(str(site))
            restrict_plugins(None)
            code, listing = _run(capsys, ["plugins"])
            assert code == 0, listing
            row = next(line for line in listing.splitlines() if line.startswith("│ broken"))
            assert "broken-plugin 1.0" in row and "failed to load: ModuleNotFoundError" in row, listing
            patch.setenv(PLUGINS_ENV, "broken")
            restrict_plugins(None)
            code, asked = _run(capsys, ["data", "stats", "-d", "tutoring"])
            assert code == 2 and "plugin 'broken' (broken_ppdpp_plugin) failed to load" in asked, asked
    finally:
        restrict_plugins(None)  # without it again


# ---- item 7: the unconverted CraigslistBargain release as --cases-file ---------------------------------------
def test_an_unconverted_release_as_cases_file_says_which_converter_to_run(tmp_path, capsys):
    release = tmp_path / "test.json"
    release.write_text('[\n  {"uuid": "C_1", "scenario": {"kbs": []}, "events": []}\n]\n', encoding="utf-8")
    for extra in ([], ["--skip-bad-rows"]):
        code, out = _run(capsys, [*GROUNDED, "--baselines", "random", "--cases-file", str(release), *extra,
                                  "--out", str(tmp_path / "ev")])
        assert code == 2, out
        assert f"{release} is one JSON list, not JSON lines (one object per line); if it is the original " \
               f"CraigslistBargain release, convert it first: ppdpp data convert craigslistbargain {release}" in out


# ---- item 8: a typo in a role name -----------------------------------------------------------------------------
@pytest.mark.parametrize("role,typo,closest", [("--user", "persna", "persona"), ("--critic", "orcale", "oracle")])
def test_a_role_typo_names_the_closest_role_and_the_domains_roles(role, typo, closest, tmp_path, capsys):
    args = {"--agent": "template", "--user": "persona", "--critic": "oracle", role: typo}
    code, out = _run(capsys, ["evaluate", "-d", "roleplay", *[x for kv in args.items() for x in kv],
                              "--baselines", "random", "--out", str(tmp_path / "ev")])
    assert code == 2, out
    assert f"{role} {typo}: did you mean {closest!r}? {typo!r} is neither a {role[2:]} of domain 'roleplay' " \
           f"({closest}) nor a model (local/<name>" in out, out
    assert "--api-base" not in out  # evaluate has no such option


# ---- item 9: a wrong CSV column is one header error -------------------------------------------------------------
def test_a_wrong_csv_column_is_reported_once_as_a_header_problem(data_dir, tmp_path, capsys):
    import csv

    source = data_dir / "roleplay" / "synthetic-persona-chat-valid.csv"
    with open(source, encoding="utf-8", newline="") as fh:
        rows = [row for _, row in zip(range(5), csv.DictReader(fh))]
    path = tmp_path / "chats.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        renamed = [{("user 2 persona" if k == "user 2 personas" else k): v for k, v in row.items()} for row in rows]
        writer = csv.DictWriter(fh, fieldnames=list(renamed[0]))
        writer.writeheader()
        writer.writerows(renamed)
    code, out = _run(capsys, ["evaluate", "-d", "roleplay", "--agent", "template", "--user", "persona", "--critic",
                              "oracle", "--baselines", "random", "--cases-file", str(path), "--skip-bad-rows",
                              "--out", str(tmp_path / "ev")])
    assert code == 2, out
    assert f"{path}:1: the CSV header has no column 'user 2 personas' (is it 'user 2 persona'?)" in out, out
    assert out.count("user 2 personas") == 1 and "skipped" not in out, out


# ---- item 10: one resolution and one wording of where the data comes from --------------------------------------
def test_data_stats_and_evaluate_say_the_same_source(data_dir, tmp_path, capsys):
    expected = f"bundled cases (no cima/ in {tmp_path})"
    code, out = _run(capsys, ["data", "stats", "-d", "tutoring", "--data-dir", str(tmp_path)])
    assert code == 0 and f"tutoring from {expected}" in out, out
    code, out = _run(capsys, ["evaluate", "-d", "tutoring", "--agent", "template", "--user", "scripted", "--critic",
                              "oracle", "--baselines", "random", "--cases", "1", "--max-turns", "1", "--data-dir",
                              str(tmp_path), "--out", str(tmp_path / "ev")])
    assert code == 0 and f"from the test split of {expected}" in out, out
    code, out = _run(capsys, ["data", "stats", "-d", "tutoring", "--data-dir", str(data_dir)])
    assert code == 0 and f"tutoring from {data_dir / 'cima'}" in out, out


# ---- item 11: checkpoint.pt is kept only until the run completes -----------------------------------------------
SMALL_SFT = ["sft", "-d", "tutoring", "--epochs", "1", "--batch-size", "8", "--max-train-examples", "8",
             "--max-select-examples", "4", "--max-test-examples", "4", "--max-length", "32", "--train-splits", "train"]


@pytest.mark.slow  # trains, plays dialogues or waits on real back-off/kills (docs/architecture.md, Tests)
def test_a_completed_sft_run_keeps_no_checkpoint_unless_asked(data_dir, tmp_path, capsys):
    code, out = _run(capsys, [*SMALL_SFT, "--out", str(tmp_path / "run")])
    assert code == 0, out
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "best" / "planner.json").is_file()
    code, out = _run(capsys, [*SMALL_SFT, "--out", str(tmp_path / "run"), "--resume"])
    assert code == 2 and "has finished (metrics.json); its checkpoint.pt was removed when it completed " \
                          "(--keep-checkpoint keeps it)" in out, out
    code, out = _run(capsys, [*SMALL_SFT, "--out", str(tmp_path / "kept"), "--keep-checkpoint"])
    assert code == 0 and (tmp_path / "kept" / "checkpoint.pt").is_file(), out


# ---- item 3: every skipped row named, one wording, skipped only when asked -------------------------------------
def test_every_skipped_row_is_named_first_ten_on_screen_all_in_the_run_folder(data_dir, tmp_path, capsys):
    lines = (data_dir / "cima" / "cima-test.txt").read_text(encoding="utf-8").splitlines()[:3]
    path = tmp_path / "lessons.jsonl"
    path.write_text("\n".join(lines + ['{"sentence": "x"}'] * 12) + "\n", encoding="utf-8")
    code, out = _run(capsys, ["evaluate", "-d", "tutoring", "--agent", "template", "--user", "scripted", "--critic",
                              "oracle", "--baselines", "random", "--max-turns", "1", "--cases-file", str(path),
                              "--skip-bad-rows", "--out", str(tmp_path / "ev")])
    assert code == 0, out
    assert f"skipped 12 bad row(s) (--skip-bad-rows); all of them in {tmp_path / 'ev' / 'skipped_rows.txt'}:" in out
    named = [line.strip() for line in out.splitlines() if line.startswith(f"  {path}:")]
    assert named == [f"{path}:{n}: missing field 'strategy'" for n in range(4, 14)] and "... and 2 more" in out, out
    kept = (tmp_path / "ev" / "skipped_rows.txt").read_text(encoding="utf-8").splitlines()
    assert kept == [f"{path}:{n}: missing field 'strategy'" for n in range(4, 16)]


def test_sft_reports_skipped_rows_once(data_dir, tmp_path, capsys):
    lines = (data_dir / "cima" / "cima-train.txt").read_text(encoding="utf-8").splitlines()[:8]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + '\n{"sentence": "x"}\n', encoding="utf-8")
    code, out = _run(capsys, [*SMALL_SFT[:-2], "--train-file", str(path), "--skip-bad-rows",
                              "--out", str(tmp_path / "run")])  # train_splits auto reads the file twice
    assert code == 0, out
    assert out.count("skipped 1 bad row(s)") == 1 and f"  {path}:9: missing field 'strategy'" in out, out


# ---- item 4: the role-play metrics are always in the table ------------------------------------------------------
def test_roleplay_facts_revealed_is_shown_as_zero_when_no_episode_succeeded(tmp_path, capsys):
    import json

    code, out = _run(capsys, ["evaluate", "-d", "roleplay", "--agent", "template", "--user", "persona", "--critic",
                              "oracle", "--baselines", "no-planner", "--cases", "2", "--max-turns", "1",
                              "--out", str(tmp_path / "ev")])
    assert code == 0, out
    report = json.loads((tmp_path / "ev" / "report.json").read_text(encoding="utf-8"))
    (policy,) = report["policies"]
    assert policy["successes"] == 0, "one exchange cannot reveal two facts"
    assert policy["metrics"]["facts_revealed"]["mean"] == 0.0
    assert "FACTS_REVEALED" in out.replace("\n", "").replace("│", "").replace(" ", "") or "FACTS_REVE" in out, out


# ---- item 5: DialogDataDomain from the docs alone ----------------------------------------------------------------
def test_the_dialog_data_domain_worked_example_runs_and_prints_what_the_docs_say(tmp_path):
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "domains.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- worked example: DialogDataDomain -->\n```python\n(.*?)```\n\nIt prints\n\n```text\n"
                      r"(.*?)```", page, re.S)
    assert match, "docs/domains.md lost its DialogDataDomain worked example"
    script = tmp_path / "helpdesk.py"
    script.write_text(match.group(1), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == match.group(2), f"docs/domains.md says it prints:\n{match.group(2)}\nit prints:\n" \
                                            f"{result.stdout}"


# ---- item 12: the small things ------------------------------------------------------------------------------------
def test_serve_llm_finds_its_port_taken_before_loading_the_model(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = _run(capsys, ["serve-llm", "--model", "local/smollm2", "--port", str(port)])
    assert code == 2 and f"--host 127.0.0.1 --port {port}: cannot listen there" in out, out
    assert "loading" not in out


def test_models_fetch_of_an_unknown_name_prints_only_its_error(capsys):
    code, out = _run(capsys, ["models", "fetch", "no-such-model"])
    assert code == 2 and out.startswith("error: ") and len(out.strip().splitlines()) == 1, out


def test_data_convert_suggests_cpu_sized_next_steps(data_dir, tmp_path, capsys):
    import json

    from test_convert import as_release

    rows = [json.loads(line) for line in
            (data_dir / "craigslistbargain" / "cb-test.txt").read_text(encoding="utf-8").splitlines()[:2]]
    release = tmp_path / "test.json"
    release.write_text(json.dumps([as_release(r, f"C_{i}", True, r["buyer_price"]) for i, r in enumerate(rows)]),
                       encoding="utf-8")
    code, out = _run(capsys, ["data", "convert", "craigslistbargain", str(release)])
    assert code == 0, out
    cases = tmp_path / "test.jsonl"
    assert f"ppdpp evaluate --domain negotiation --cases-file {cases} --agent template --user rule-based --critic " \
           "oracle --cases 20" in out, out
    assert f"--cases-file {cases} --agent local/smollm2 --cases 5 --max-turns 4 --dry-run" in out, out
    assert "--agent MODEL" not in out


# ---- item 11: one converted copy of a GGUF model in the cache -----------------------------------------------------
@pytest.mark.slow
def test_the_cache_keeps_one_converted_copy_of_smollm2(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from ppdpp.planner.llm.local import converted_dir, prepare_weights
    from ppdpp.planner.llm.models import resolve_local_model

    monkeypatch.setenv("PPDPP_CACHE_DIR", str(tmp_path / "cache"))  # not the session's shared converted copies
    source = resolve_local_model("smollm2")
    half = prepare_weights(source, torch.bfloat16)
    assert half == converted_dir(source, torch.bfloat16)
    half_weights = load_file(half / "model.safetensors")
    full = prepare_weights(source, torch.float32)
    assert [p.name for p in full.parent.iterdir()] == [full.name], "the float32 copy replaces the bfloat16 one"
    assert prepare_weights(source, torch.bfloat16) == full, "a bfloat16 request reuses the float32 copy"
    full_weights = load_file(full / "model.safetensors")
    assert all(torch.equal(full_weights[k].to(torch.bfloat16), v) for k, v in half_weights.items()), \
        "casting the float32 copy gives the bfloat16 conversion's weights"
