"""DialogXpert's settings, apart from its torch model (planner/policy/dialogxpert.py): the policy registry reads
them to build ``ppdpp rl``/``evaluate``'s options, and registering the policies should not import torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ppdpp.planner.core.bounds import check_fields


@dataclass
class DialogXpertConfig:
    """DialogXpert's settings (a fresh Q-network's size is recorded in its folder)."""

    dialogxpert_top_k: int = field(default=3, metadata={
        "help": "DialogXpert: strategies the proposer (the SFT planner) offers the Q-network.", "min": 1})
    dialogxpert_epsilon: float = field(default=0.2, metadata={
        "help": "DialogXpert: exploration within the top-k during ppdpp rl self-play.", "min": 0, "max": 1})
    dialogxpert_td_steps: int = field(default=16, metadata={
        "help": "DialogXpert: TD optimizer steps on each update's episodes.", "min": 1})
    dialogxpert_hidden: int = field(default=128, metadata={
        "help": "DialogXpert: hidden units of a fresh Q-network.", "min": 1})

    def __post_init__(self) -> None:
        check_fields(self)
