"""An ordinary OpenAI-SDK chatbot, made proactive by changing only its base URL.

Start the planning proxy in front of any model (here the embedded SmolLM2 and a planner trained by ppdpp sft):

    ppdpp serve --planner runs/sft-emotional_support/best --upstream local/smollm2 --port 8000

then chat through it:

    python examples/openai_chatbot.py --base-url http://127.0.0.1:8000/v1

Without ``--base-url`` the same loop talks to the real OpenAI API (``OPENAI_API_KEY``): the chatbot code does
not change, only where it points. Each reply the proxy planned comes with the strategy it chose, which this
script prints in brackets; an ordinary client simply ignores the extra field. ``--say`` sends scripted user turns
instead of reading them from the keyboard (for a demo or a test).
"""

from __future__ import annotations

import argparse
import os

from openai import OpenAI


def planned_strategy(response: object) -> str:
    """The strategy the ppdpp proxy put in the response (``""`` from a server that is not the proxy)."""
    extra = getattr(response, "model_extra", None) or {}
    plan = extra.get("ppdpp") or {}
    if not plan:
        return ""
    return f"{plan['strategy']} (p={plan['probability']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                        help="The chat server: the ppdpp proxy's http://HOST:PORT/v1 (default: OpenAI).")
    parser.add_argument("--model", default="local/smollm2", help="Model name sent with each request.")
    parser.add_argument("--system", default="You are a kind, supportive listener. Keep replies short.",
                        help="The chatbot's own system prompt (the proxy keeps it in front).")
    parser.add_argument("--say", action="append", default=None, help="A scripted user turn (repeatable).")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    # The only line that makes this chatbot proactive is base_url. The token: $PPDPP_PROXY_TOKEN for a proxy
    # started with one, else the usual OPENAI_API_KEY (a proxy without a token accepts any key).
    api_key = os.environ.get("PPDPP_PROXY_TOKEN") or os.environ.get("OPENAI_API_KEY") or "not-needed"
    client = OpenAI(base_url=args.base_url, api_key=api_key)
    messages = [{"role": "system", "content": args.system}]
    turns = iter(args.say) if args.say else None
    while True:
        try:
            user = next(turns) if turns is not None else input("you> ")
        except (StopIteration, EOFError):
            break
        if not user.strip():
            continue
        messages.append({"role": "user", "content": user})
        response = client.chat.completions.create(model=args.model, messages=messages, max_tokens=args.max_tokens)
        reply = response.choices[0].message.content or ""
        messages.append({"role": "assistant", "content": reply})
        strategy = planned_strategy(response)
        print(f"bot> {reply}" + (f"  [{strategy}]" if strategy else ""), flush=True)


if __name__ == "__main__":
    main()
