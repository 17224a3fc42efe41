"""Optional experiment trackers. The run store works without any of them.

neptune: the thesis logged every run to Neptune. Its hosted service ended in
March 2026, so without an API token the tracker runs in offline mode and keeps
its data under the run directory (``<run>/neptune``), saying so once. With
``NEPTUNE_MODE`` or ``NEPTUNE_API_TOKEN`` set it follows them.
tensorboard: event files under ``<run>/tensorboard``.
mlflow: MLFLOW_TRACKING_URI, else SQLite beside the run store (``kdengine/mlflow_sync.py``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import UsageError
from ..metric_names import HEADLINE, PER_SPLIT, SPLITS
from ..store import RunStore
from ..study.registry import study_membership
from . import mlflow_sync as ms
from .mlflow_sync import log_epoch, log_final

_said_offline = False


class Tracker:
    def start(self, run_id: str, spec, class_names: list[str], run_dir: Path) -> None: ...
    def log_epoch(self, epoch: int, event) -> None: ...  # event: a store.events.Epoch
    def log_final(self, results: dict, figures: list | None = None) -> None: ...
    def close(self) -> None: ...


def _flat_params(spec) -> dict:
    d = spec.to_dict()
    d["teachers"] = [t.run_id for t in spec.teachers]
    return json.loads(json.dumps(d, default=str))


class NeptuneTracker(Tracker):
    def __init__(self) -> None:
        try:
            import neptune  # noqa: F401 - neptune: an optional extra
        except ImportError:
            raise UsageError("--tracker neptune needs the neptune extra: pip install 'kdstudy[neptune]'") from None
        self.run = None

    def start(self, run_id, spec, class_names, run_dir):
        global _said_offline
        import neptune  # neptune: an optional extra

        mode = os.environ.get("NEPTUNE_MODE")
        if not mode and not os.environ.get("NEPTUNE_API_TOKEN"):
            mode = "offline"
            if not _said_offline:
                print(f"note: no NEPTUNE_API_TOKEN (Neptune's hosted service ended in March 2026): "
                      f"logging offline under {run_dir / 'neptune'}", file=sys.stderr)
                _said_offline = True
        self.class_names = class_names
        old = os.environ.get("NEPTUNE_DATA_DIRECTORY")
        os.environ["NEPTUNE_DATA_DIRECTORY"] = str(run_dir / "neptune")
        try:
            kwargs = dict(mode=mode, name=run_id, custom_run_id=run_id[:36], capture_hardware_metrics=False,
                          capture_stdout=False, capture_stderr=False, git_ref=False, source_files=[])
            if os.environ.get("NEPTUNE_PROJECT"):
                kwargs["project"] = os.environ["NEPTUNE_PROJECT"]
            self.run = neptune.init_run(**kwargs)
        finally:
            if old is None:
                os.environ.pop("NEPTUNE_DATA_DIRECTORY", None)
            else:
                os.environ["NEPTUNE_DATA_DIRECTORY"] = old
        from neptune.utils import stringify_unsupported  # neptune: an optional extra

        self.run["parameters"] = stringify_unsupported(_flat_params(spec))
        self.run["sys/tags"].add([spec.role_label, spec.model])

    def log_epoch(self, epoch, event):
        for split in SPLITS[:2]:
            for key, value in getattr(event, split).items():
                self.run[f"{split}/{key}"].append(value, step=epoch)
        self.run["lr"].append(event.lr, step=epoch)

    def log_final(self, results, figures=None):
        for split in SPLITS:
            for key in PER_SPLIT:
                if key in results[split]:
                    self.run[f"final/{split}/{key}"] = results[split][key]
        self.run["final/test/confusion_matrix"] = json.dumps(results["test"]["confusion"])
        self.run["final/test/classification_report"] = json.dumps(results["test"]["report"])
        self.run["final/class_names"] = json.dumps(results["class_names"])

    def close(self):
        if self.run is not None:
            self.run.stop()
            self.run = None


class TensorBoardTracker(Tracker):
    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - tensorboard: an optional extra
        except ImportError:
            raise UsageError("--tracker tensorboard needs the tensorboard extra: pip install 'kdstudy[tensorboard]'") from None
        self.writer = None

    def start(self, run_id, spec, class_names, run_dir):
        from torch.utils.tensorboard import SummaryWriter  # tensorboard: an optional extra

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("spec", "```\n" + json.dumps(_flat_params(spec), indent=2) + "\n```")

    def log_epoch(self, epoch, event):
        for split in SPLITS[:2]:
            for key, value in getattr(event, split).items():
                self.writer.add_scalar(f"{split}/{key}", value, epoch)
        self.writer.add_scalar("lr", event.lr, epoch)
        self.writer.flush()

    def log_final(self, results, figures=None):
        for split in SPLITS:
            for key in HEADLINE:
                self.writer.add_scalar(f"final/{split}/{key}", results[split][key], 0)
        names = results["class_names"]
        rows = ["| true \\ pred | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        rows += [f"| {n} | " + " | ".join(str(v) for v in row) + " |" for n, row in zip(names, results["test"]["confusion"])]
        self.writer.add_text("test/confusion_matrix", "\n".join(rows))
        self.writer.add_text("test/classification_report", "```\n" + json.dumps(results["test"]["report"], indent=2) + "\n```")
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MLflowTracker(Tracker):
    """MLflow (see ``kdengine/mlflow_sync.py``): a resumed run continues the same MLflow run."""

    def __init__(self) -> None:
        try:
            import mlflow  # noqa: F401 - mlflow: an optional extra
        except ImportError:
            raise UsageError("--tracker mlflow needs the mlflow extra: pip install 'kdstudy[mlflow]'") from None
        self.client = None
        self.mlflow_run = None

    def start(self, run_id, spec, class_names, run_dir):
        store = RunStore(Path(run_dir).parent)
        self.client, _ = ms.client_for(store.root)
        exp = ms.experiment_id(self.client, store.root)
        existing = ms.find_run(self.client, exp, run_id)
        if existing is not None and existing.info.status != "FINISHED":
            self.mlflow_run = existing.info.run_id  # a resumed run goes on logging where it was
            self.client.update_run(self.mlflow_run, status="RUNNING")
            return
        tags = ms.tags_of(spec, run_id, study_membership(store).get(run_id, ()))
        self.mlflow_run = self.client.create_run(exp, run_name=run_id, tags=tags).info.run_id
        from mlflow.entities import Param  # mlflow: an optional extra

        self.client.log_batch(self.mlflow_run, params=[Param(k, v) for k, v in ms.params_of(spec).items()])

    def log_epoch(self, epoch, event):
        log_epoch(self.client, self.mlflow_run, epoch, event)

    def log_final(self, results, figures=None):
        log_final(self.client, self.mlflow_run, results, figures)
        self.client.set_terminated(self.mlflow_run, status="FINISHED")
        self.mlflow_run = None

    def close(self):
        if self.client is not None and self.mlflow_run is not None:  # stopped or failed before the end
            self.client.set_terminated(self.mlflow_run, status="KILLED")
            self.mlflow_run = None


TRACKERS = {"neptune": NeptuneTracker, "tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


def make_trackers(names) -> list[Tracker]:
    out = []
    for name in names or ():
        if name not in TRACKERS:
            raise UsageError(f"unknown tracker '{name}' (choose {', '.join(TRACKERS)})")
        out.append(TRACKERS[name]())
    return out
