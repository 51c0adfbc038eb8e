"""Built-in plugin: the LLM backends, registered through the same hook a third-party plugin would use.

``local/<name-or-path>`` -> transformers on this machine; ``router/<model_name>`` -> the deployments of a litellm
Router config (``router_config=FILE``); anything else -> litellm (API providers and OpenAI-compatible servers).
Each is registered as a ``"module:Class"`` reference, imported only when a model is opened (litellm's import alone
takes seconds); what each can do is declared on its class (``ChatBackend``'s capability attributes).
"""

from __future__ import annotations

from typing import Callable

from ppdpp.planner import hookimpl


@hookimpl
def register_backends(register: Callable) -> None:
    register("local/", "ppdpp.planner.llm.local:LocalBackend")
    register("router/", "ppdpp.planner.llm.router:RouterBackend")
    register("", "ppdpp.planner.llm.api:APIBackend")
