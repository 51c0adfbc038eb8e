"""``ppdpp planner upgrade|push|export``: a saved planner folder as a standard checkpoint, on the Hub, as ONNX."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from ppdpp.planner.cli.app import add_group, app, config_command, console

planner_app = add_group(app, typer.Typer(help="Saved planner folders: upgrade the format, push to the Hub, export "
                                              "to ONNX.", no_args_is_help=True, rich_markup_mode=None), "planner")
export_app = add_group(planner_app, typer.Typer(help="Export a saved planner to another runtime.",
                                                no_args_is_help=True, rich_markup_mode=None), "export")


DIRECTORY = {"help": "A saved planner folder (ppdpp sft/rl output).", "positional": True, "is_dir": True}
"""The metadata of the ``DIRECTORY`` argument of the ``ppdpp planner`` commands (a field without a default, so
mypy's dataclass check sees the required argument)."""


@dataclass
class UpgradeCommand:
    """The settings of ``ppdpp planner upgrade DIRECTORY``."""

    directory: Path = field(metadata=DIRECTORY)


@dataclass
class PushCommand:
    """The settings of ``ppdpp planner push DIRECTORY REPO_ID``."""

    directory: Path = field(metadata=DIRECTORY)
    repo_id: str = field(metadata={"help": "The Hub repository, org/name (created when missing).",
                                   "positional": True})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    message: str = field(default="Upload ppdpp planner", metadata={"help": "The commit message."})


@dataclass
class ExportOnnxCommand:
    """The settings of ``ppdpp planner export onnx DIRECTORY``."""

    directory: Path = field(metadata=DIRECTORY)
    out: Optional[Path] = field(default=None, metadata={"help": "The .onnx file (none: DIRECTORY/model.onnx)."})


@config_command(planner_app, "upgrade", UpgradeCommand)
def upgrade_command(command: UpgradeCommand) -> None:
    """Rewrite a planner folder saved by an older ppdpp (format 1) as a standard transformers checkpoint."""
    directory = command.directory
    from ppdpp.planner.policy.policy_planner import FORMAT_VERSION, PolicyPlanner, _read_meta

    version = _read_meta(directory)["format_version"]
    if version == FORMAT_VERSION:
        console.print(f"{directory}: already format {FORMAT_VERSION}; nothing to do")
        return
    PolicyPlanner.from_pretrained(directory).save_pretrained(directory)  # atomic: the old folder stays on failure
    console.print(f"{directory}: format {version} -> {FORMAT_VERSION} (config.json, model.safetensors, README.md)",
                  soft_wrap=True, highlight=False)


@config_command(planner_app, "push", PushCommand)
def push_command(command: PushCommand) -> None:
    """Upload a saved planner folder, its model card included, to the Hugging Face Hub (token: huggingface_hub's
    own, e.g. $HF_TOKEN; never printed)."""
    from ppdpp.planner.policy.planner_checkpoint import push_folder

    directory, repo_id = command.directory, command.repo_id
    from ppdpp.planner.policy.policy_planner import FORMAT_VERSION, _read_meta

    version = _read_meta(directory)["format_version"]
    if version != FORMAT_VERSION:
        raise typer.BadParameter(f"{directory} is in format {version}: run `ppdpp planner upgrade {directory}` "
                                 "first, so that the Hub gets a standard checkpoint", param_hint="DIRECTORY")
    url = push_folder(directory, repo_id, private=command.private, commit_message=command.message)
    console.print(f"pushed {directory} to {repo_id}: {url}")


@config_command(export_app, "onnx", ExportOnnxCommand)
def export_onnx_command(command: ExportOnnxCommand) -> None:
    """Export the planner's forward pass to ONNX (dynamic batch and length; needs `pip install 'ppdpp[onnx]'`)."""
    from ppdpp.planner.policy.planner_onnx import ONNX_FILE, export_onnx
    from ppdpp.planner.policy.policy_planner import PolicyPlanner

    directory = command.directory
    path = export_onnx(PolicyPlanner.from_pretrained(directory, inference_dtype="float32"),
                       command.out or directory / ONNX_FILE)
    console.print(f"wrote {path} (inputs input_ids, attention_mask; output logits in config.json's id2label order)")
