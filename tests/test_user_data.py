"""Cases and SFT examples from the user's own files (--cases-file, --train-file, --valid-file), role-play splits
by fraction, the majority baseline from a planner's training record, and per-domain data folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ppdpp.planner.cli import main
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.registry.manager import get_domain
from ppdpp.planner.toolkit.datafiles import domain_data
from ppdpp.plugins.roleplay import CSV_NAME, RoleplayDomain, split_rows

SPC_CSV = Path("roleplay") / CSV_NAME


def _run(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    """``ppdpp ARGS`` in this process: (exit code, what it printed)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    out = capsys.readouterr()
    return exited.value.code, out.out + out.err


def _persona_csv(data_dir: Path, path: Path, rows: int, blank: int | None = None) -> Path:
    """The first ``rows`` rows of the real Synthetic-Persona-Chat CSV written to ``path``; row ``blank``
    (0-based) without User 2's persona (nothing to label)."""
    with open(data_dir / SPC_CSV, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        kept = [row for _, row in zip(range(rows), reader)]
    if blank is not None:
        kept[blank]["user 2 personas"] = ""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)
    return path


def _row_line(path: Path, index: int) -> int:
    """The line of the CSV ``path`` on which data row ``index`` (0-based) starts (cells span lines)."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for _ in range(index):
            next(reader)
        return reader.line_num + 1


# ---- --cases-file --------------------------------------------------------------------------------------------
EVAL_ROLEPLAY = ["evaluate", "-d", "roleplay", "--agent", "template", "--user", "persona", "--critic", "oracle",
                 "--baselines", "random", "--max-turns", "1"]


def test_a_bad_row_of_a_cases_file_is_an_error_naming_file_line_and_field(data_dir, tmp_path, capsys):
    cases = _persona_csv(data_dir, tmp_path / "my-personas.csv", 37, blank=5)
    code, out = _run(capsys, [*EVAL_ROLEPLAY, "--cases-file", str(cases), "--out", str(tmp_path / "ev")])
    assert code == 2, out
    assert f"{cases}:{_row_line(cases, 5)}: field 'user 2 personas'" in out, out
    assert not (tmp_path / "ev" / "report.json").exists()


@pytest.mark.slow
def test_roleplay_evaluates_a_37_row_csv_skipping_the_bad_row(data_dir, tmp_path, capsys):
    cases = _persona_csv(data_dir, tmp_path / "my-personas.csv", 37, blank=5)
    out_dir = tmp_path / "ev"
    code, out = _run(capsys, [*EVAL_ROLEPLAY, "--cases-file", str(cases), "--skip-bad-rows", "--cases", "2",
                              "--out", str(out_dir)])
    assert code == 0, out
    assert f"skipped 1 bad row(s) (--skip-bad-rows); all of them in {out_dir / 'skipped_rows.txt'}:" in out, out
    assert f"  {cases}:{_row_line(cases, 5)}: field 'user 2 personas'" in out, out
    assert f"roleplay: 2 case(s) from {cases}" in out, out
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    assert report["split"] == "my-personas.csv" and len(report["cases"]) == 2
    assert report["cases"] == ["roleplay-my-personas-2", f"roleplay-my-personas-{_row_line(cases, 1)}"]
    assert json.loads((out_dir / "config.json").read_text(encoding="utf-8"))["cases_file"] == str(cases)


def test_read_all_37_rows_but_the_bad_one(data_dir, tmp_path):
    cases = _persona_csv(data_dir, tmp_path / "p.csv", 37, blank=5)
    read = RoleplayDomain().load_cases_file(cases, skip_bad_rows=True)
    assert len(read.cases) == 36 and len(read.skipped) == 1
    assert all(t.strategy for c in read.cases for t in c.dialogue if t.speaker == "agent"), "labelled as the splits"


def _negotiation_lines(data_dir: Path, n: int) -> list[dict]:
    lines = (data_dir / "craigslistbargain" / "cb-test.txt").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()][:n]


@pytest.mark.slow
def test_negotiation_evaluates_a_jsonl_cases_file(data_dir, tmp_path, capsys):
    rows = _negotiation_lines(data_dir, 3)
    broken = {k: v for k, v in rows[1].items() if k != "seller_price"}
    path = tmp_path / "deals.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (rows[0], broken, rows[2])) + "\n", encoding="utf-8")
    base = ["evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based", "--critic", "oracle",
            "--baselines", "random", "--max-turns", "2", "--cases-file", str(path), "--out", str(tmp_path / "ev")]
    code, out = _run(capsys, base)
    assert code == 2 and f"{path}:2: missing field 'seller_price'" in out, out
    code, out = _run(capsys, [*base, "--skip-bad-rows"])
    assert code == 0, out
    report = json.loads((tmp_path / "ev" / "report.json").read_text(encoding="utf-8"))
    assert report["cases"] == ["cb-deals-1", "cb-deals-3"] and report["policies"][0]["episodes"] == 2


def test_dialog_data_reads_csv_cells_and_saved_datasets(data_dir, tmp_path):
    domain = get_domain("negotiation")
    rows = _negotiation_lines(data_dir, 3)
    path = tmp_path / "deals.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*domain.case_fields, "dialog"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**{k: row[k] for k in domain.case_fields}, "dialog": json.dumps(row["dialog"])})
        writer.writerow({**{k: rows[0][k] for k in domain.case_fields}, "buyer_price": "cheap", "dialog": "[]"})
    expected = [domain._case(r, path, 0, "x") for r in rows]
    with pytest.raises(DomainError, match=rf"{path}:5: field 'buyer_price' is not a int or float"):
        domain.load_cases_file(path)
    read = domain.load_cases_file(path, skip_bad_rows=True)
    assert [(c.fields, c.dialogue) for c in read.cases] == [(c.fields, c.dialogue) for c in expected]
    assert len(read.skipped) == 1

    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list([{**r, "dialog": json.dumps(r["dialog"])} for r in rows]).save_to_disk(str(folder))
    assert [c.fields for c in domain.load_cases_file(folder).cases] == [c.fields for c in expected]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows[:1])}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DomainError, match=r"holds the splits test: give one of them"):
        domain.load_cases_file(tmp_path / "dd")


# ---- role-play splits by fraction ----------------------------------------------------------------------------
def test_roleplay_splits_a_37_row_file_by_fraction(data_dir, tmp_path):
    path = _persona_csv(data_dir, tmp_path / SPC_CSV, 37, blank=30)
    with pytest.raises(DomainError, match=f"{path}:{_row_line(path, 30)}: field 'user 2 personas'"):
        RoleplayDomain().load_cases("train", tmp_path)  # a bad row is skipped only when asked
    domain = RoleplayDomain(skip_bad_rows=True)
    sizes = {split: len(domain.load_cases(split, tmp_path)) for split in ("train", "valid", "test")}
    assert sizes == {"train": 29, "valid": 3, "test": 4}, "rows 30-33 are valid; the unreadable row 31 is skipped"
    (skipped,) = domain.skipped.values()
    assert len(skipped) == 1 and skipped[0].startswith(f"{path}:{_row_line(path, 30)}: field 'user 2 personas'"), \
        skipped


def test_split_rows_are_fractions_deterministic_per_seed():
    assert {k: len(v) for k, v in split_rows(37).items()} == {"train": 29, "valid": 4, "test": 4}
    assert split_rows(1000) == {"train": list(range(800)), "valid": list(range(800, 900)),
                                "test": list(range(900, 1000))}, "the 1,000-row file keeps its published split"
    assert split_rows(37, seed=3) == split_rows(37, seed=3)
    assert split_rows(37, seed=3) != split_rows(37, seed=4)
    for seed in (None, 3):
        parts = split_rows(37, seed)
        assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(37))
    assert {k: len(v) for k, v in split_rows(3).items()} == {"train": 1, "valid": 1, "test": 1}


def test_a_seeded_roleplay_domain_shuffles_its_rows(data_dir, tmp_path):
    _persona_csv(data_dir, tmp_path / SPC_CSV, 37)
    plain, seeded = RoleplayDomain(), RoleplayDomain(split_seed=7)
    first = [c.fields for c in seeded.load_cases("test", tmp_path)]
    assert first == [c.fields for c in RoleplayDomain(split_seed=7).load_cases("test", tmp_path)]
    assert first != [c.fields for c in plain.load_cases("test", tmp_path)]


# ---- per-domain data folders ---------------------------------------------------------------------------------
def test_each_domain_resolves_its_own_folder(data_dir, tmp_path):
    (tmp_path / "esconv").symlink_to(data_dir / "esconv", target_is_directory=True)
    tutoring = domain_data(get_domain("tutoring"), tmp_path)
    assert tutoring.bundled and tutoring.source == f"bundled cases (no cima/ in {tmp_path})"
    support = domain_data(get_domain("emotional_support"), tmp_path)
    assert support.data_dir == tmp_path and support.source == str(tmp_path / "esconv")
    names = {get_domain(n).folder_name for n in ("negotiation", "emotional_support", "tutoring", "roleplay")}
    assert names == {p.name for p in data_dir.iterdir() if p.is_dir()}, "folder names match the shared data"


def test_tutoring_runs_on_bundled_cases_beside_another_domains_folder(data_dir, tmp_path, capsys):
    (tmp_path / "esconv").symlink_to(data_dir / "esconv", target_is_directory=True)
    code, out = _run(capsys, ["evaluate", "-d", "tutoring", "--data-dir", str(tmp_path), "--agent", "template",
                              "--user", "scripted", "--critic", "oracle", "--baselines", "random,majority",
                              "--cases", "1", "--max-turns", "1", "--out", str(tmp_path / "ev")])
    assert code == 0, out
    assert f"tutoring: 1 case(s) from the test split of bundled cases (no cima/ in {tmp_path})" in out, out
    report = json.loads((tmp_path / "ev" / "report.json").read_text(encoding="utf-8"))
    assert report["cases"][0].startswith("cima-bundled-test-")
    assert json.loads((tmp_path / "ev" / "config.json").read_text(encoding="utf-8"))["data_dir"] is None


# ---- sft from files, and the majority baseline from its record -----------------------------------------------
def _cima_file(data_dir: Path, path: Path, split: str, n: int) -> Path:
    lines = (data_dir / "cima" / f"cima-{split}.txt").read_text(encoding="utf-8").splitlines()[:n]
    path.write_text("\n".join(lines) + "\n{\"sentence\": \"x\"}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sft_run(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("user-sft")
    train = _cima_file(data_dir, root / "train.jsonl", "train", 40)
    valid = _cima_file(data_dir, root / "valid.jsonl", "valid", 12)
    args = ["sft", "-d", "tutoring", "--train-file", str(train), "--valid-file", str(valid), "--skip-bad-rows",
            "--epochs", "1", "--batch-size", "16", "--max-test-examples", "8", "--max-length", "64",
            "--out", str(root / "run")]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    return root


@pytest.mark.slow
def test_sft_trains_on_the_given_files(sft_run):
    record = json.loads((sft_run / "run" / "config.json").read_text(encoding="utf-8"))
    assert record["train_file"] == str(sft_run / "train.jsonl") and record["train_splits"] == ["train"]
    data = record["data"]
    assert (data["train_examples"], data["select_examples"], data["test_examples"]) == (40, 12, 8)
    assert sum(data["train_label_counts"].values()) == 40
    assert data["select_source"] == str(sft_run / "valid.jsonl")


def test_a_bad_train_file_row_names_file_line_and_field(data_dir, tmp_path, capsys):
    train = _cima_file(data_dir, tmp_path / "train.jsonl", "train", 3)
    code, out = _run(capsys, ["sft", "-d", "tutoring", "--train-file", str(train), "--train-splits", "train",
                              "--out", str(tmp_path / "run")])
    assert code == 2 and f"{train}:4: missing field 'strategy'" in out, out


@pytest.mark.slow
def test_majority_beside_a_cases_file_comes_from_the_planners_record(sft_run, data_dir, tmp_path, capsys):
    cases = _cima_file(data_dir, tmp_path / "lesson.jsonl", "test", 2)
    base = ["evaluate", "-d", "tutoring", "--agent", "template", "--user", "scripted", "--critic", "oracle",
            "--baselines", "majority", "--max-turns", "1", "--cases-file", str(cases), "--skip-bad-rows",
            "--data-dir", str(tmp_path / "no-cima"), "--out", str(tmp_path / "ev")]  # no train split anywhere
    code, out = _run(capsys, base)
    assert code == 2, out
    assert f"--cases-file {cases} holds test cases only" in out and "give --planner DIR" in out, out
    code, out = _run(capsys, [*base, "--planner", str(sft_run / "run" / "best")])
    assert code == 0, out
    assert f"majority: label counts from {sft_run / 'run' / 'config.json'}" in out, out
    counts = json.loads((sft_run / "run" / "config.json").read_text(encoding="utf-8"))["data"]["train_label_counts"]
    report = json.loads((tmp_path / "ev" / "report.json").read_text(encoding="utf-8"))
    assert [p["policy"] for p in report["policies"]][-1] == "majority"
    transcript = (tmp_path / "ev" / "transcripts" / "majority.jsonl").read_text(encoding="utf-8")
    assert max(counts, key=counts.get) in transcript


# ---- #28 item 1: a user's file that yields no SFT example, and where each split came from ---------------------
def _converted_cb(data_dir: Path, path: Path, n: int) -> Path:
    """``n`` cb-test scenarios as ``ppdpp data convert craigslistbargain`` writes them: no labelled dialog."""
    rows = [json.loads(line) for line in
            (data_dir / "craigslistbargain" / "cb-test.txt").read_text(encoding="utf-8").splitlines()[:n]]
    path.write_text("".join(json.dumps({**row, "dialog": [], "transcript": row["dialog"]}) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def test_sft_on_a_file_without_labels_is_an_error_not_a_run_on_the_shared_data(data_dir, tmp_path, capsys):
    converted = _converted_cb(data_dir, tmp_path / "converted.jsonl", 5)
    code, out = _run(capsys, ["sft", "-d", "negotiation", "--train-file", str(converted), "--data-dir", str(data_dir),
                              "--out", str(tmp_path / "run")])
    assert code == 2, out
    assert f"--train-file {converted} gives no SFT examples: its 5 case(s) have no agent turn with a strategy label" \
        in out and "ppdpp evaluate --cases-file" in out, out
    assert not (tmp_path / "run").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    code, out = _run(capsys, ["sft", "-d", "negotiation", "--train-file", str(empty), "--train-splits", "train",
                              "--out", str(tmp_path / "run")])
    assert code == 2 and f"--train-file {empty} gives no SFT examples: it holds no rows" in out, out


def test_each_split_says_where_it_came_from_when_files_mix_with_the_shared_data(data_dir, tmp_path):
    from ppdpp.planner.training.sft import SFTConfig, load_sft_data

    lines = (data_dir / "craigslistbargain" / "cb-train.txt").read_text(encoding="utf-8").splitlines()[:30]
    mine = tmp_path / "mine.jsonl"
    mine.write_text("\n".join(lines) + '\n{"bad": 1}\n', encoding="utf-8")
    config = SFTConfig("negotiation", train_splits=("train", "valid"), train_file=str(mine), skip_bad_rows=True)
    data = load_sft_data(get_domain("negotiation"), config, data_dir)
    assert data.mixed and data.skipped == [f"{mine}:31: missing field 'item_name'"]
    folder = data_dir / "craigslistbargain"
    from_file = len(get_domain("negotiation").sft_examples_file(mine, skip_bad_rows=True).examples)
    assert data.source_lines() == [
        f"train: {len(data.train)} examples: {from_file} from --train-file {mine} + "
        f"{len(data.train) - from_file} from 75% of the dialogues of the valid split of {folder}",
        f"valid: {len(data.select)} examples: the other 25% of the dialogues of the valid split of {folder}",
        f"test: {len(data.test)} examples: the test split of {folder}"]
    alone = load_sft_data(get_domain("negotiation"), SFTConfig("negotiation", train_file=str(mine),
                                                               valid_file=str(mine), test_file=str(mine),
                                                               skip_bad_rows=True), data_dir)
    assert not alone.mixed and alone.sources["test"] == f"{from_file} examples: --test-file {mine}"
