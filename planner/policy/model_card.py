"""The model card (``README.md`` with the Hugging Face Hub's metadata header) every saved planner carries.

:func:`planner_card` writes what the planner itself knows: domain, strategies, backbone, settings, how to use it,
and its limits. Runs add what they know as sections with :func:`update_card`: ``ppdpp sft`` its training data and
test report, ``ppdpp rl`` its self-play setting, ``ppdpp evaluate`` its latest table. A section is replaced when
written again, so the card always shows the latest of each.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ppdpp.planner.policy.policy_planner import PolicyPlanner

DEFAULT_BACKBONE_ID = "sentence-transformers/all-MiniLM-L6-v2"
SECTION = re.compile(r"^## (?P<title>.+)$", re.MULTILINE)


def backbone_id(backbone: str) -> str:
    """A name a reader can look up: the Hub id of the bundled MiniLM, a folder's name, or the string as given
    (never a machine's site-packages path)."""
    from ppdpp.planner.policy.policy_planner import default_backbone

    if Path(backbone) == Path(default_backbone()):
        return DEFAULT_BACKBONE_ID
    path = Path(backbone)
    if path.is_absolute() or path.exists():
        return path.name
    return backbone


def planner_card(planner: "PolicyPlanner") -> str:
    """A fresh card for ``planner`` (no training or evaluation sections yet)."""
    space, config = planner.space, planner.config
    backbone = backbone_id(config.backbone)
    base = f"base_model: {backbone}\n" if "/" in backbone else ""
    extras = (", the case background first" if config.use_background else "") + (
        ", earlier agent turns with their strategy" if config.strategy_history else "")
    rows = "\n".join(f"| {i} | {name} | {instruction} |" for i, (name, instruction) in
                     enumerate(space.strategies.items()))
    bias = (f", plus a learned bias per strategy for each of the agent's first {config.decision_bias} decisions"
            if config.decision_bias else "")
    without = ("""Only with ppdpp: the per-decision bias needs each input's decision index, which a text classifier is not
given, so the folder has no `auto_map` and does not export to ONNX.""" if config.decision_bias else """Without ppdpp, as a text classifier (the folder is a transformers checkpoint; its class is in `modeling_ppdpp.py`,
since transformers has no built-in mean-pooling classifier):

```python
from transformers import pipeline
classify = pipeline("text-classification", model="PATH_OR_HUB_ID", trust_remote_code=True, top_k=None)
classify(planner.input_text(conversation, case))   # ppdpp renders the input text
```""")
    return f"""---
library_name: transformers
pipeline_tag: text-classification
{base}tags:
- ppdpp
- dialogue-policy-planning
- {space.domain.replace('_', '-')}
---

# ppdpp planner for `{space.domain}`

A plug-and-play dialogue policy planner (after PPDPP, Deng et al., ICLR 2024): it reads the dialogue so far and
scores the domain's {len(space.strategies)} strategies; the chosen strategy's instruction goes into a frozen LLM
agent's prompt. The agent is the `{space.agent_role}`, the user the `{space.user_role}`.

## Strategies

| label | strategy | instruction given to the LLM |
|---|---|---|
{rows}

## Model

- Backbone: `{backbone}`, {config.pooling} pooling, one linear layer over the strategies{' (LoRA, merged)' if config.lora else ''}{bias}.
- Input: the turns as `Role: text` joined by the separator token, the newest {config.max_length} tokens
  (cut from the left){extras}.

## Use

With ppdpp (`pip install ppdpp`):

```python
import ppdpp
planner = ppdpp.PolicyPlanner.from_pretrained("PATH_OR_HUB_ID")
plan = planner.plan(conversation, case)        # plan.strategy, plan.instruction, plan.distribution
```

{without}

## Intended use and limits

- Choosing the next strategy of a `{space.agent_role}` in `{space.domain}` dialogues like its training data; it
  says *what kind* of reply to write, never the reply.
- It knows only the strategies above and the dialogues it was trained on; see the training and evaluation sections
  (when present) for where its numbers come from. Planners trained against simulated users (a rule-based seller,
  a scripted student) learn those users' weaknesses: check it against your own users before relying on it.
"""


def update_card(folder: str | Path, title: str, body: str) -> Path:
    """Add the section ``## title`` to the card in ``folder`` (``README.md``), or replace it if present."""
    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    section = f"## {title}\n\n{body.strip()}\n"
    matches = list(SECTION.finditer(text))
    for i, match in enumerate(matches):
        if match.group("title").strip() == title:
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            text = text[: match.start()] + section + ("\n" if end < len(text) else "") + text[end:]
            break
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
    return path


def sft_section(metrics: dict, sources: list[str], settings: dict) -> str:
    """The card's "Training (ppdpp sft)" section: where each split came from, the settings, the test report."""
    rows = "\n".join(
        f"| {name} | {scores.get('accuracy', 0.0):.3f} | {scores.get('macro_f1', 0.0):.3f} |"
        for name, scores in metrics.get("test", {}).items())
    train = metrics.get("train", {})
    shown = ", ".join(f"`{k}={v}`" for k, v in settings.items())
    split_lines = "\n".join(f"- {line}" for line in sources)
    return f"""Supervised fine-tuning on human-annotated strategies (`ppdpp sft`).

{split_lines}
- {train.get('examples', '?')} training examples, {train.get('epochs', '?')} epoch(s), {train.get('steps', '?')} steps,
  {train.get('seconds', 0.0):.0f} s; settings: {shown}.

Test report (next-strategy prediction on the test examples, against the majority and random baselines):

| predictor | accuracy | macro-F1 |
|---|---|---|
{rows}
"""


def evaluation_section(report: dict, policy: str) -> str:
    """The card's "Evaluation (ppdpp evaluate)" section from an evaluation's ``report.json``: every policy's SR, AT
    and outcome metrics with 95% intervals, this planner (``policy``) in bold, and what played which role."""
    rows = report.get("policies", [])
    metrics = sorted({m for p in rows for m in p.get("metrics", {})})

    def cell(estimate: dict) -> str:
        return f"{estimate['mean']:.3f} [{estimate['low']:.2f}, {estimate['high']:.2f}]"

    header = "| policy | SR | AT | " + " | ".join(m.upper() for m in metrics) + " |"
    rule = "|" + "---|" * (3 + len(metrics))
    lines = []
    for p in rows:
        name = f"**{p['policy']}**" if p["policy"] == policy else p["policy"]
        values = [cell(p["metrics"][m]) if m in p.get("metrics", {}) else "0.000" for m in metrics]
        lines.append(f"| {name} | {cell(p['sr'])} | {p['at']['mean']:.2f} | " + " | ".join(values) + " |")
    models = ", ".join(f"{role}: `{model}`" for role, model in (report.get("models") or {}).items())
    return f"""The latest interactive evaluation this folder took part in (`ppdpp evaluate`): {len(report.get('cases', []))}
`{report.get('split')}` cases of `{report.get('domain')}`, at most {report.get('max_turns')} exchanges, seed
{report.get('seed')}; {models or 'roles as recorded in its report.json'}. 95% intervals in brackets. Numbers from
simulated users measure the planner against those users.

{header}
{rule}
""" + "\n".join(lines) + "\n"
