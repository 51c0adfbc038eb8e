"""The plugin system end to end: a third-party package installed beside ppdpp, restricting plugins, errors.

The example plugin in ``examples/domain_plugin`` is really installed (``pip install --target`` into a temp
dir, no network, once per session: tests/conftest.py). The real ``ppdpp`` command finds it through its entry
point in a subprocess with that dir on ``PYTHONPATH``; the other checks run the same CLI in-process with that dir
on ``sys.path`` and the plugin manager rebuilt (a fresh interpreter costs seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from ppdpp.planner.cli import main
from ppdpp.planner.cli.app import app
from ppdpp.planner.core.domain import DomainError
from ppdpp.planner.registry.manager import (
    PLUGINS_ENV, PluginError, domain_owners, get_domain, get_plugin_manager, restrict_plugins,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DOMAIN = "example_persuasion"  # also its entry-point name
BUILT_IN_DOMAINS = ("negotiation", "emotional_support", "tutoring", "roleplay")


def run_ppdpp(*args: str, pythonpath: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ``ppdpp`` console entry point in a fresh interpreter (wide terminal so tables do not wrap)."""
    environment = {key: value for key, value in os.environ.items() if key != "PPDPP_PLUGINS"}
    environment.update(COLUMNS="250", **env)
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", "from ppdpp.planner.cli import main; main()", *args],
        capture_output=True, text=True, env=environment, timeout=120,
    )


@pytest.fixture
def installed_example(example_plugin_site: Path) -> Path:
    return example_plugin_site


@pytest.fixture
def example_on_path(example_plugin_site: Path) -> Iterator[None]:
    """The installed example on ``sys.path`` of this process, the plugin manager rebuilt with it, and without it
    afterwards (as if it had been installed for this test only)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(PLUGINS_ENV, raising=False)
        patch.syspath_prepend(str(example_plugin_site))
        restrict_plugins(None)
        yield
    restrict_plugins(None)


def table_rows(output: str) -> dict[str, str]:
    """First cell -> whole row, for the rich tables the CLI prints."""
    return {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") >= 3}


def test_third_party_plugin_shows_up_with_its_distribution(installed_example: Path) -> None:
    result = run_ppdpp("plugins", pythonpath=installed_example)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert EXAMPLE_DOMAIN in rows, f"the example plugin is not listed:\n{result.stdout}"
    row = rows[EXAMPLE_DOMAIN]
    assert "ppdpp-example-persuasion 0.1.0" in row and "register_domains" in row, row


def test_third_party_domain_loads_its_cases(example_on_path: None) -> None:
    result = CliRunner().invoke(app, ["data", "stats", "--domain", EXAMPLE_DOMAIN], terminal_width=250,
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows["train"].split("│")[2].strip() == "8" and rows["test"].split("│")[2].strip() == "2", result.output
    assert {"credibility_appeal", "emotion_appeal", "logical_appeal"} <= set(rows), result.output


def test_unknown_domain_lists_the_known_ones(example_on_path: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # main(), not the bare app: main turns the error into exit 2
        main(["data", "stats", "--domain", "chess"])
    out = capsys.readouterr()
    assert exited.value.code == 2, out.out + out.err
    message = " ".join((out.out + out.err).split())
    assert "unknown domain 'chess'; known domains:" in message, message
    for name in (EXAMPLE_DOMAIN, *BUILT_IN_DOMAINS):
        assert name in message, f"{name!r} missing from the error: {message}"


# ---- in-process: the same CLI and registry, without paying for a fresh interpreter -------------------------
@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A plugin manager rebuilt from scratch for the test, and again afterwards."""
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    restrict_plugins(None)
    yield
    restrict_plugins(None)


def test_built_in_domains_are_listed(fresh_registry: None) -> None:
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    for name in BUILT_IN_DOMAINS:
        assert name in rows, f"built-in plugin {name!r} missing:\n{result.output}"
    assert domain_owners() == {name: name for name in BUILT_IN_DOMAINS}, "each built-in plugin registers its domain"
    assert EXAMPLE_DOMAIN not in rows, "the example is not installed in this environment"


def test_the_plugin_list_never_unloads_built_in_plugins(fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "negotiation")
    result = CliRunner().invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert set(BUILT_IN_DOMAINS) <= set(table_rows(result.output)), result.output
    assert get_domain("tutoring").name == "tutoring", "built-in domains load whatever PPDPP_PLUGINS says"


def test_an_unknown_plugin_name_is_a_clear_error(fresh_registry: None) -> None:
    result = CliRunner().invoke(app, ["--plugins", "nosuch,tutoring", "plugins"])
    assert result.exit_code != 0, result.output
    with pytest.raises(PluginError, match=r"unknown plugin\(s\) nosuch in --plugins / \$PPDPP_PLUGINS"):
        get_plugin_manager()
