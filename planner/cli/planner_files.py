"""``ppdpp planner upgrade|push|export``: a saved planner folder as a standard checkpoint, on the Hub, as ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ppdpp.planner.cli.app import app, console

planner_app = typer.Typer(help="Saved planner folders: upgrade the format, push to the Hub, export to ONNX.",
                          no_args_is_help=True)
export_app = typer.Typer(help="Export a saved planner to another runtime.", no_args_is_help=True)
planner_app.add_typer(export_app, name="export")
app.add_typer(planner_app, name="planner")

DirArgument = typer.Argument(..., help="A saved planner folder (ppdpp sft/rl output).", exists=True, file_okay=False)


@planner_app.command("upgrade")
def upgrade_command(directory: Path = DirArgument) -> None:
    """Rewrite a planner folder saved by an older ppdpp (format 1) as a standard transformers checkpoint."""
    from ppdpp.planner.policy.policy_planner import FORMAT_VERSION, PolicyPlanner, _read_meta

    version = _read_meta(directory)["format_version"]
    if version == FORMAT_VERSION:
        console.print(f"{directory}: already format {FORMAT_VERSION}; nothing to do")
        return
    PolicyPlanner.from_pretrained(directory).save_pretrained(directory)  # atomic: the old folder stays on failure
    console.print(f"{directory}: format {version} -> {FORMAT_VERSION} (config.json, model.safetensors, README.md)",
                  soft_wrap=True, highlight=False)


@planner_app.command("push")
def push_command(
    directory: Path = DirArgument,
    repo_id: str = typer.Argument(..., help="The Hub repository, org/name (created when missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    message: str = typer.Option("Upload ppdpp planner", "--message", help="The commit message."),
) -> None:
    """Upload a saved planner folder, its model card included, to the Hugging Face Hub (token: huggingface_hub's
    own, e.g. $HF_TOKEN; never printed)."""
    from ppdpp.planner.policy.planner_checkpoint import push_folder
    from ppdpp.planner.policy.policy_planner import FORMAT_VERSION, _read_meta

    version = _read_meta(directory)["format_version"]
    if version != FORMAT_VERSION:
        raise typer.BadParameter(f"{directory} is in format {version}: run `ppdpp planner upgrade {directory}` "
                                 "first, so that the Hub gets a standard checkpoint", param_hint="DIRECTORY")
    url = push_folder(directory, repo_id, private=private, commit_message=message)
    console.print(f"pushed {directory} to {repo_id}: {url}")


@export_app.command("onnx")
def export_onnx_command(
    directory: Path = DirArgument,
    out: Optional[Path] = typer.Option(None, "--out", help="The .onnx file (default: DIRECTORY/model.onnx)."),
) -> None:
    """Export the planner's forward pass to ONNX (dynamic batch and length; needs `pip install 'ppdpp[onnx]'`)."""
    from ppdpp.planner.policy.planner_onnx import ONNX_FILE, export_onnx
    from ppdpp.planner.policy.policy_planner import PolicyPlanner

    path = export_onnx(PolicyPlanner.from_pretrained(directory, inference_dtype="float32"), out or directory / ONNX_FILE)
    console.print(f"wrote {path} (inputs input_ids, attention_mask; output logits in config.json's id2label order)")
