"""``ppdpp resister``: train a resister (GAIA), the user simulator's concession policy, against a fixed planner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ppdpp.planner.cli.app import app, config_command, console

if TYPE_CHECKING:
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.training.resister import ResisterConfig

RESISTER_HELP = ("Train a resister (GAIA): a user-side policy that chooses the programmatic user's moves within its "
                 "limits, zero-sum against a fixed planner; play it with --user resister --user-checkpoints DIR.")


def resister_parser() -> ConfigParser:
    from ppdpp.planner.cli.options import ConfigParser
    from ppdpp.planner.training.resister import ResisterConfig

    return ConfigParser("ppdpp resister", [ResisterConfig], description=RESISTER_HELP)


@config_command(app, "resister", parser=resister_parser, help=RESISTER_HELP)
def run_resister(config: ResisterConfig) -> None:
    """Train as ``config`` says (:func:`~ppdpp.planner.training.resister.train_resister`) and print the outcome."""
    from ppdpp.planner.training.resister import train_resister

    result = train_resister(config, say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    last = result.curve[-1] if result.curve else {}
    console.print(f"resister: {result.path}; last update: resister return {last.get('resister_return', 0.0):+.3f}, "
                  f"agent SR {last.get('agent_sr', 0.0):.2f}, actions {last.get('actions', {})}",
                  highlight=False, soft_wrap=True)
