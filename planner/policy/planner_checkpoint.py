"""The files of a saved planner (format 2): a standard transformers sequence-classification folder plus ppdpp's
own ``planner.json``, read back by :meth:`PolicyPlanner.from_pretrained`, and the Hugging Face Hub round trip.

Layout::

    config.json          the backbone's transformers config; id2label/label2id = the strategies; auto_map names
                         modeling_ppdpp.PPDPPPlannerForSequenceClassification; ppdpp_pooling = mean | cls
    model.safetensors    encoder.* (the backbone, LoRA merged into it) and classifier.* (the strategy head)
    modeling_ppdpp.py    that class (torch + transformers only), so pipeline(..., trust_remote_code=True) loads it
    tokenizer files      tokenizer.json, tokenizer_config.json, vocab ...
    planner.json         ppdpp's metadata: format_version, domain, strategies, roles, PlannerConfig
    README.md            the model card (Hub metadata header; ppdpp.planner.policy.model_card)
    adapter/             LoRA planners only: the peft adapter, so that training continues from it exactly

Format 1 (``encoder/``, ``head.safetensors``, ``tokenizer/``) is still read; ``ppdpp planner upgrade DIR``
rewrites such a folder in format 2.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ppdpp.planner.core.atomic import write_json

if TYPE_CHECKING:
    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner

MODELING_SOURCE = Path(__file__).with_name("modeling_ppdpp.py")
ARCHITECTURE = "PPDPPPlannerForSequenceClassification"
HUB_REPO_TYPE = "model"


def merged_encoder(planner: "PolicyPlanner") -> Any:
    """The encoder with a LoRA adapter merged into its weights (a copy: the planner keeps training its adapter)."""
    if not planner.config.lora:
        return planner.encoder
    return copy.deepcopy(planner.encoder).merge_and_unload()


def hf_config(planner: "PolicyPlanner", encoder: Any) -> Any:
    """The backbone's config, made a classifier's: labels, architecture, auto_map, pooling."""
    config = copy.deepcopy(encoder.config)
    names = planner.strategy_names
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    config.architectures = [ARCHITECTURE]
    if planner.decision_bias is None:  # else the decision index is not in the text a pipeline reads
        config.auto_map = {"AutoModelForSequenceClassification": f"modeling_ppdpp.{ARCHITECTURE}"}
    config.ppdpp_pooling = planner.config.pooling
    config.problem_type = "single_label_classification"
    return config


def write(planner: "PolicyPlanner", folder: Path, *, meta: dict[str, Any], card: str | None) -> None:
    """Write every file of the layout into the (empty, temporary) ``folder``."""
    from ppdpp.planner.policy.model_card import planner_card
    from ppdpp.planner.policy.policy_planner import (
        ADAPTER_DIR, CARD_FILE, CONFIG_FILE, DECISION_BIAS_KEY, MODEL_FILE, MODELING_FILE,
    )

    encoder = merged_encoder(planner)
    hf_config(planner, encoder).save_pretrained(folder)
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    tensors.update({f"classifier.{k}": v for k, v in planner.head.state_dict().items()})
    if planner.decision_bias is not None:
        tensors[DECISION_BIAS_KEY] = planner.decision_bias
    save_file({k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in tensors.items()},
              str(folder / MODEL_FILE), metadata={"format": "pt"})
    shutil.copyfile(MODELING_SOURCE, folder / MODELING_FILE)
    planner.tokenizer.save_pretrained(folder)
    if planner.config.lora:
        planner.encoder.save_pretrained(folder / ADAPTER_DIR)
    write_json(folder / CONFIG_FILE, meta)
    (folder / CARD_FILE).write_text(card if card is not None else planner_card(planner), encoding="utf-8")


def read(folder: Path, config: "PlannerConfig") -> tuple[nn.Module, Any, dict[str, torch.Tensor]]:
    """``(encoder, tokenizer, head state)`` of a format-2 folder; the head state also holds the per-decision bias
    (``DECISION_BIAS_KEY``) when the folder has one."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from ppdpp.planner.policy.policy_planner import (
        ADAPTER_DIR, DECISION_BIAS_KEY, HF_CONFIG_FILE, MODEL_FILE, PlannerFormatError, SAVE_AGAIN, _load_encoder,
        _require,
    )

    weights = _require(folder / MODEL_FILE)
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # truncated or not safetensors: name the file
        raise PlannerFormatError(f"{weights}: cannot be read ({type(exc).__name__}: {str(exc).strip()[:200]}); "
                                 f"{SAVE_AGAIN}") from None
    head = {k.removeprefix("classifier."): v for k, v in tensors.items()
            if k.startswith("classifier.") or k == DECISION_BIAS_KEY}
    if config.lora and (folder / ADAPTER_DIR).is_dir():
        from peft import PeftModel

        encoder: nn.Module = PeftModel.from_pretrained(_load_encoder(config.backbone), str(folder / ADAPTER_DIR),
                                                       is_trainable=True)
    else:
        hf = AutoConfig.from_pretrained(str(_require(folder / HF_CONFIG_FILE)))
        hf.auto_map = {}  # the encoder alone is the backbone's own class
        encoder = AutoModel.from_config(hf)
        state = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
        try:
            encoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise PlannerFormatError(f"{weights}: the encoder weights do not fit {type(encoder).__name__} "
                                     f"({str(exc).strip()[:200]}); {SAVE_AGAIN}") from None
        if config.lora:  # merged weights without the adapter: a fresh adapter (B = 0) leaves them unchanged
            from peft import LoraConfig, get_peft_model

            encoder = get_peft_model(encoder, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                         lora_dropout=config.lora_dropout))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return encoder, tokenizer, head


def read_v1(folder: Path, config: "PlannerConfig") -> tuple[nn.Module, Any, dict[str, torch.Tensor]]:
    """``(encoder, tokenizer, head state)`` of a format-1 folder (``encoder/`` or ``adapter/``, ``tokenizer/``,
    ``head.safetensors``)."""
    from transformers import AutoTokenizer

    from ppdpp.planner.policy.policy_planner import (
        ADAPTER_DIR, ENCODER_DIR, HEAD_FILE, TOKENIZER_DIR, PlannerFormatError, SAVE_AGAIN, _load_encoder, _require,
    )

    if config.lora:
        from peft import PeftModel

        encoder: nn.Module = PeftModel.from_pretrained(_load_encoder(config.backbone), str(folder / ADAPTER_DIR),
                                                       is_trainable=True)
    else:
        encoder_dir = _require(folder / ENCODER_DIR)
        try:
            encoder = _load_encoder(encoder_dir)
        except (OSError, ValueError, RuntimeError) as exc:  # e.g. a truncated model.safetensors
            raise PlannerFormatError(f"{encoder_dir}: the encoder cannot be loaded ({type(exc).__name__}: "
                                     f"{str(exc).strip()[:200]}); {SAVE_AGAIN}") from None
    tokenizer = AutoTokenizer.from_pretrained(str(_require(folder / TOKENIZER_DIR)))
    head_file = _require(folder / HEAD_FILE)
    try:
        head = load_file(str(head_file))
    except Exception as exc:  # truncated or foreign: name the file
        raise PlannerFormatError(f"{head_file}: not the head of this planner ({type(exc).__name__}: "
                                 f"{str(exc).strip()[:200]}); {SAVE_AGAIN}") from None
    return encoder, tokenizer, head


# ---- the Hub ------------------------------------------------------------------------------------------------
def is_hub_id(source: str | Path) -> bool:
    """``org/name`` (not an existing path, not absolute, exactly one slash, no ``.``/``..`` parts)."""
    text = str(source)
    parts = text.split("/")
    return (not Path(text).exists() and not text.startswith(("/", "~", ".")) and len(parts) == 2
            and all(parts) and not any(p in (".", "..") for p in parts))


def local_folder(source: str | Path, revision: str | None = None) -> Path:
    """A planner folder on disk: ``source`` itself, or the Hub repository ``org/name`` downloaded (or found in
    the Hugging Face cache) by ``huggingface_hub.snapshot_download``."""
    if not is_hub_id(source):
        return Path(source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from ppdpp.planner.policy.policy_planner import PlannerFormatError

    try:
        return Path(snapshot_download(str(source), revision=revision, repo_type=HUB_REPO_TYPE))
    except LocalEntryNotFoundError as exc:
        raise PlannerFormatError(f"{source}: no such planner folder, and the Hub repository is neither reachable "
                                 f"nor in the Hugging Face cache ({str(exc).strip()[:200]})") from None
    except HfHubHTTPError as exc:
        raise PlannerFormatError(f"{source}: no such planner folder, and the Hub answered "
                                 f"{str(exc).strip()[:200]}") from None


def push_folder(folder: Path, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload ppdpp planner", revision: str | None = None) -> str:
    """Upload a saved planner folder to the Hub repository ``repo_id`` (created if missing); returns the commit
    URL. ``token``: else huggingface_hub's own (``HF_TOKEN``, ``huggingface-cli login``); never printed."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=HUB_REPO_TYPE, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=HUB_REPO_TYPE,
                             commit_message=commit_message, revision=revision)
    return str(getattr(info, "commit_url", info))
