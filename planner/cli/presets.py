"""Named sets of settings for ``ppdpp sft``, ``ppdpp rl`` and ``ppdpp evaluate`` (``--preset NAME``).

A preset is applied first: the defaults, then the preset, then ``--config FILE``, then the command line, so
every explicit option wins over it. Its values are checked like a config file's (same keys: the fields of the
command's config dataclasses, nested or flat). The run's ``config.json`` records ``preset`` and the resolved
values, so reading it back with ``--config`` gives the same settings.

``ppdpp-paper`` is PPDPP's own setting (Deng et al., ICLR 2024), checked against the paper's code
(github.com/dengyang17/PPDPP: ``run.py``, ``agent.py``, ``env.py``, ``sft.py``); docs/paper.md has the table of
where our defaults differ and why.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Mapping

PAPER = "ppdpp-paper"

# The dialogue settings of PPDPP's env.py: 8 exchanges (run.py --max_turn 8), replies of at most 32 new tokens
# (--max_new_tokens 32), the critic sampled 10 times at temperature 1.1, the paper's prompts (no reminders), no
# stop on a repeated exchange (PPDPP has none).
_PAPER_DIALOGUE: dict[str, Any] = {
    "max_turns": 8,
    "max_tokens": 32,
    "reminder": False,
    "stop_on_repeat": False,
    "critic_mode": "sampled",
    "critic_samples": 10,
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    PAPER: {
        # sft.py's defaults and the command line in its header comment (2 GPUs x 8 examples): roberta-large
        # with its pooler over <s> (outputs[1]), 512 tokens, dropout 0.5 before the head, AdamW lr 6e-6 for
        # encoder and head alike, weight decay 0.01, clip 1.0, 10 epochs, plain cross-entropy, seed 42, the
        # train split only, the best epoch by macro-F1 on valid.
        "ppdpp sft": {
            "epochs": 10,
            "lr": 6e-6,
            "head_lr_scale": 1.0,
            "batch_size": 16,
            "seed": 42,
            "train_splits": ["train"],
            "class_weighting": "none",
            "label_smoothing": 0.0,
            "weight_decay": 0.01,
            "max_grad_norm": 1.0,
            "eval_every": 0,
            "planner": {
                "backbone": "roberta-large",
                "pooling": "cls",
                "max_length": 512,
                "dropout": 0.5,
                "use_background": False,
                "strategy_history": False,
                "train_embeddings": True,
                "lora": False,
            },
        },
        # run.py / agent.py: REINFORCE after every episode (optimize_model per episode), 10 steps x 100
        # sampled episodes = 1,000 episodes, gamma 0.999, AdamW lr 1e-6, returns normalised within each
        # episode, no gradient clipping, no entropy bonus, the whole planner trained; agent and user sampled at
        # 0.7 while training.
        "ppdpp rl": {
            "episodes": 1000,
            "episodes_per_update": 1,
            "gamma": 0.999,
            "lr": 1e-6,
            "normalize": "episode",
            "grad_clip": None,
            "entropy_coef": 0.0,
            "train_backbone": True,
            "split": "train",
            "env": {**_PAPER_DIALOGUE, "temperature": 0.7},
        },
        # run.py's evaluate(): greedy agent and user (temperature 0 in test mode), the critic still sampled 10
        # times at 1.1, 8 exchanges, every test case.
        "ppdpp evaluate": {
            "split": "test",
            **_PAPER_DIALOGUE,
            "temperature": 0.0,
        },
    },
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_values(command: str) -> dict[str, dict[str, Any]]:
    """Every preset's settings for ``command`` (``"ppdpp rl"``), by preset name (presets without any are left out)."""
    return {name: values[command] for name, values in PRESETS.items() if command in values}


def preset_field() -> Any:
    """The ``preset`` field of a command's settings dataclass (a ``str | None``, default none)."""
    return field(default=None, metadata={
        "help": f"Named settings applied before --config and the options given here, which win over it "
                f"({', '.join(preset_names())}; docs/paper.md)."})


def describe(command: str, name: str) -> Mapping[str, Any]:
    """The settings preset ``name`` gives ``command`` (empty when it gives none)."""
    return PRESETS.get(name, {}).get(command, {})
