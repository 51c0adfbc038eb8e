"""The data guarantee of tests/conftest.py: without the real datasets a test that needs them skips, unless
``PPDPP_REQUIRE_DATA=1`` (what .ci/run sets), where it fails, so CI can never pass by skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

TINY_TESTS = '''
def test_needs_the_data(data_dir):
    assert data_dir.is_dir()


def test_needs_nothing():
    pass
'''


def _run_pytest(tmp_path: Path, data: Path, require: str | None) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess on a two-test file, with this suite's conftest loaded as a plugin."""
    (tmp_path / "test_tiny.py").write_text(TINY_TESTS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PPDPP_REQUIRE_DATA", "PYTEST_ADDOPTS")}
    env.update(PPDPP_TEST_DATA_DIR=str(data), PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]))
    if require is not None:
        env["PPDPP_REQUIRE_DATA"] = require
    command = [sys.executable, "-m", "pytest", "-q", "-rsE", "-p", "no:cacheprovider", "-p", "conftest"]
    return subprocess.run(
        [*command, "test_tiny.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def missing(tmp_path: Path) -> Path:
    return tmp_path / "no-such-data"


@pytest.mark.slow  # a subprocess or real back-off waits: kept out of the fast tier
def test_missing_data_skips_with_the_reason(tmp_path, missing):
    result = _run_pytest(tmp_path, missing, require=None)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 passed, 1 skipped" in out, out
    assert f"the real datasets are not in {missing}" in out, out


@pytest.mark.slow  # a subprocess or real back-off waits: kept out of the fast tier
def test_missing_data_fails_when_required(tmp_path, missing):
    result = _run_pytest(tmp_path, missing, require="1")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 passed" in out and "1 error" in out and "skipped" not in out, out
    assert f"the real datasets are not in {missing}" in out and "PPDPP_REQUIRE_DATA=1 requires them" in out, out
