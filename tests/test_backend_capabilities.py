"""Backends say what they can do on their class (``ChatBackend``'s capability attributes), so a third-party
backend registered through the ``register_backends`` hook gets what the built-in ones get, and no module but
a backend's own names a built-in prefix or backend class."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import httpx
import pytest

from ppdpp.planner.core.types import Usage
from ppdpp.planner.llm import LLMError, backend_class, check_model, open_chat, supported_options
from ppdpp.planner.llm.base import ChatBackend, Completion
from ppdpp.planner.llm.spend import Price, SpendMeter, price_for, token_counter
from ppdpp.planner.registry.hookspecs import hookimpl
from ppdpp.planner.registry.manager import register_plugin, unregister_plugin
from ppdpp.planner.serving.llm_server import serve_llm_in_thread
from ppdpp.planner.serving.openai_protocol import ServerLimits, count_prompt_tokens
from ppdpp.planner.training.runs import model_options
from test_types import python_files

REPO = Path(__file__).resolve().parents[1]


def words(messages) -> int:
    """The third-party backend's own token count: one token per word, plus one per message."""
    return sum(len(m["content"].split()) + 1 for m in messages)


class Counted(ChatBackend):
    """A third-party backend that declares every capability."""

    concurrency_option = "in_flight"
    default_concurrency = 4
    free = True
    opened: list[dict] = []

    def __init__(self, model: str, *, in_flight: int = 4, temperature_floor: float = 0.0) -> None:
        self.model = model
        Counted.opened.append({"in_flight": in_flight})

    @classmethod
    def check_model(cls, model: str, **options) -> None:
        if model.endswith("/missing"):
            raise LLMError(f"{model}: no such counted model")

    @classmethod
    def token_counter(cls, model):
        return words, "words"

    async def count_prompt_tokens(self, messages):
        return words(messages), f"{self.model}'s words"

    async def complete(self, messages, *, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        return Completion(["fine"] * n, Usage(prompt_tokens=words(messages), completion_tokens=1), self.model)


def plain_factory(model: str, **options) -> ChatBackend:
    """A backend registered as a plain factory: it declares nothing."""
    return Counted(model)


class ThirdParty:
    @hookimpl
    def register_backends(self, register):
        register("counted/", Counted)
        register("lazy/", f"{__name__}:Counted")  # imported when a lazy/ model is used
        register("plain/", plain_factory)


@pytest.fixture
def third_party():
    Counted.opened.clear()
    register_plugin(ThirdParty(), name="test-third-party-backend")
    yield
    unregister_plugin("test-third-party-backend")


def test_a_declared_concurrency_option_gets_the_runs_concurrency(third_party):
    assert model_options("counted/x", None, 300) == {"in_flight": 300}
    assert model_options("counted/x", None, 2) == {"in_flight": 4}, "never fewer than its default"
    assert model_options("lazy/x", None, 300) == {"in_flight": 300}, "a module:Class reference is the class"
    assert model_options("plain/x", None, 300) == {}, "a factory declares nothing"
    assert model_options("local/smollm2", None, 300) == {}, "the local backend batches instead"
    assert model_options("openai/x", None, 4) == {"concurrency": 16}


def test_options_and_the_model_check_come_from_the_backend(third_party):
    assert backend_class("lazy/x") is Counted and backend_class("plain/x") is ChatBackend
    assert Counted.open_options() == ("in_flight", "temperature_floor")
    assert supported_options("counted/x", in_flight=9, dtype="bfloat16") == {"in_flight": 9}
    assert supported_options("plain/x", in_flight=9) == {}
    check_model("counted/x")
    with pytest.raises(LLMError, match="no such counted model"):
        check_model("counted/missing")
    check_model("plain/missing")  # nothing declared: nothing checked


def test_token_counting_and_price_come_from_the_backend(third_party):
    messages = [{"role": "user", "content": "one two three"}]
    count, how = token_counter("counted/x")
    assert (count(messages), how) == (4, "words")
    assert token_counter("plain/x")[1] == "bytes/4"
    assert price_for("counted/x", Price(1.0, 1.0)) == Price(0.0, 0.0), "a free backend ignores --price"
    assert price_for("plain/x", Price(1.0, 1.0)) == Price(1.0, 1.0)
    meter = SpendMeter(price_override=Price(1.0, 1.0))
    meter.add("counted/x", Completion(["a"], Usage(prompt_tokens=10, completion_tokens=10)))
    meter.add("plain/x", Completion(["a"], Usage(prompt_tokens=10, completion_tokens=10)))
    assert meter.cost == 20.0, meter.by_model


def test_an_opened_backend_counts_its_prompt_through_wrappers(third_party, tmp_path):
    messages = [{"role": "user", "content": "a b c d e"}]
    cached = open_chat("counted/x", cache_dir=tmp_path)  # wrapped in the disk cache
    assert not isinstance(cached, Counted)
    assert asyncio.run(count_prompt_tokens(cached, messages)) == (6, "counted/x's words")
    plain = open_chat("plain/x", cache=False)
    assert asyncio.run(count_prompt_tokens(plain, messages)) == (6, "plain/x's words"), "the instance's own count"


def test_the_llm_server_refuses_a_long_prompt_by_the_backends_own_count(third_party):
    long = [{"role": "user", "content": "word " * 50}]  # 51 by its count; the bytes/4 estimate says 66
    with serve_llm_in_thread(open_chat("counted/x", cache=False), limits=ServerLimits(max_prompt_tokens=60)) as s:
        response = httpx.post(f"{s.url}/chat/completions", json={"messages": long}, timeout=30)
        assert response.status_code == 200, response.text
        long = [{"role": "user", "content": "word " * 60}]
        response = httpx.post(f"{s.url}/chat/completions", json={"messages": long}, timeout=30)
        assert response.status_code == 400 and "61 tokens (counted/x's words)" in response.text, response.text


# ---- no module outside a backend's own names a built-in backend ----------------------------------------
BUILT_IN_PREFIXES = {"local/", "router/"}
BUILT_IN_NAMES = {"LocalBackend", "APIBackend", "RouterBackend", "LOCAL_PREFIX", "ROUTER_PREFIX", "LITELLM_PREFIXES"}
BACKEND_MODULES = {  # each backend's own modules, and the one place that registers them
    "planner/llm/local.py", "planner/llm/models.py", "planner/llm/prefill.py", "planner/llm/attention.py",
    "planner/llm/api.py", "planner/llm/router.py", "plugins/backends.py",
}


def _parse(source: str) -> ast.Module:
    """``ast.parse`` with the garbage collector held off: on CPython 3.11 before 3.11.8 a finalizer that runs during
    the parse (here: litellm's asyncio tasks of an earlier test, collected late under pytest-xdist) raises
    ``SystemError: AST constructor recursion depth mismatch`` (python/cpython#106905)."""
    import gc

    gc.disable()
    try:
        return ast.parse(source)
    finally:
        gc.enable()


def _mentions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(_parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and node.value in BUILT_IN_PREFIXES:
            found.append(f"{node.lineno}: the prefix {node.value!r}")
        elif isinstance(node, ast.Name) and node.id in BUILT_IN_NAMES:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in BUILT_IN_NAMES:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            found += [f"{node.lineno}: imports {a.name}" for a in node.names if a.name in BUILT_IN_NAMES]
    return found


def test_no_module_outside_a_backends_own_names_a_built_in_backend():
    offenders = []
    for folder in ("planner", "simulators", "plugins", "ppdpp"):
        for path in python_files(REPO / folder):
            where = path.relative_to(REPO).as_posix()
            if where not in BACKEND_MODULES:
                offenders += [f"{where}:{mention}" for mention in _mentions(path)]
    assert not offenders, ("a built-in backend named outside its own modules: declare the capability on the "
                           "backend class instead (docs/plugins.md):\n" + "\n".join(offenders))


def test_the_scan_sees_a_mention():
    assert any("'local/'" in m for m in _mentions(REPO / "plugins" / "backends.py"))
    assert any("LOCAL_PREFIX" in m for m in _mentions(REPO / "planner" / "llm" / "local.py"))
