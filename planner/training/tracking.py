"""Experiment tracking as the Hugging Face Trainer does it: ``report_to`` names TensorBoard, Weights & Biases
and/or MLflow (or ``none``, the default), and a run logs its settings and metrics through one :class:`Tracker`.

Where each backend writes:

* ``tensorboard``: event files in ``<run dir>/tensorboard/`` (``tensorboard --logdir <run dir>/tensorboard``);
* ``wandb``: ``<run dir>/wandb/``, project ``$WANDB_PROJECT`` or ``ppdpp``; ``WANDB_MODE=offline`` keeps it local;
* ``mlflow``: ``$MLFLOW_TRACKING_URI``, else a local SQLite store ``<run dir>/mlflow.db`` (MLflow 3 refuses the
  old ``mlruns/`` folder store by default); experiment ``$MLFLOW_EXPERIMENT_NAME`` or ``ppdpp``.

A resumed run continues the same wandb and MLflow runs (their ids are kept in ``<run dir>/tracking.json``) and the
same TensorBoard folder; the trainers log a step only once it is checkpointed, so a resume never logs a step
twice. The writes are file (or network) I/O: async callers run them in a worker thread. The packages are imported
only when a run asks for them (``pip install ppdpp[tracking]`` installs TensorBoard).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import uuid
from dataclasses import field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from ppdpp.planner.core.atomic import write_json

BACKENDS = ("tensorboard", "wandb", "mlflow")
REPORT_TO_CHOICES = (*BACKENDS, "none")
TENSORBOARD_DIR = "tensorboard"
IDS_FILE = "tracking.json"


class Tracker(Protocol):
    """Where a run's settings and metrics go."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def report_to_field() -> Any:
    """The ``report_to`` field of SFTConfig, RLConfig and EvaluateCommand (``--report-to``)."""
    return field(default=("none",), metadata={
        "help": f"Experiment trackers: {', '.join(BACKENDS)} or none (logs go under the run directory, "
                "e.g. OUT/tensorboard)."})


def check_report_to(value: Sequence[str]) -> tuple[str, ...]:
    """``value`` as a tuple (``("none",)`` and ``()`` report nowhere); ``ValueError`` for an unknown name,
    ``none`` with others, or a backend whose package is not installed (naming the ``pip install``)."""
    names = tuple(value)
    unknown = [n for n in names if n not in REPORT_TO_CHOICES]
    if unknown:
        raise ValueError(f"report_to: unknown tracker(s) {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(REPORT_TO_CHOICES)}")
    if "none" in names and len(names) > 1:
        raise ValueError("report_to: 'none' cannot be combined with a tracker")
    missing = [n for n in names if n != "none" and importlib.util.find_spec(n) is None]  # package = backend name
    if missing:
        raise ValueError(f"report_to: {', '.join(missing)} is not installed (pip install {' '.join(missing)})")
    return names


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of dotted keys (``planner.max_length``); lists and paths as text."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


class TensorBoardTracker:
    """Scalars and the settings (as JSON text, tag ``params``) in ``<run dir>/tensorboard/``."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.writer.add_text("params", "```json\n" + json.dumps(params, indent=2, default=str) + "\n```", 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run in ``<run dir>/wandb/``, resumed by its id."""

    def __init__(self, run_dir: Path, run_name: str, run_id: str) -> None:
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "ppdpp"), name=run_name, dir=str(run_dir),
                              id=run_id, resume="allow")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(flatten(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    """An MLflow run ($MLFLOW_TRACKING_URI, else SQLite in ``<run dir>/mlflow.db``), resumed by its id."""

    def __init__(self, run_dir: Path, run_name: str, run_id: str | None) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        if run_id is None:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ppdpp")
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in flatten(params).items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Trackers:
    """Fan-out to every opened tracker (none: nothing is written)."""

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        self.trackers = list(trackers)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if metrics:
            for tracker in self.trackers:
                tracker.log_metrics(metrics, step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(report_to: Sequence[str], run_dir: str | Path, run_name: str) -> Trackers:
    """The trackers ``report_to`` names, writing under ``run_dir`` (see the module docstring)."""
    names = [n for n in check_report_to(report_to) if n != "none"]
    if not names:
        return Trackers()
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    ids_path = root / IDS_FILE
    ids = json.loads(ids_path.read_text(encoding="utf-8")) if ids_path.is_file() else {}
    opened: list[Tracker] = []
    try:
        for name in names:
            if name == "tensorboard":
                opened.append(TensorBoardTracker(root))
            elif name == "wandb":
                ids.setdefault("wandb", uuid.uuid4().hex[:12])
                opened.append(WandbTracker(root, run_name, ids["wandb"]))
            else:
                mlflow = MlflowTracker(root, run_name, ids.get("mlflow"))
                ids["mlflow"] = mlflow.run_id
                opened.append(mlflow)
    except BaseException:
        Trackers(opened).close()
        raise
    if ids:
        write_json(ids_path, ids)
    return Trackers(opened)
