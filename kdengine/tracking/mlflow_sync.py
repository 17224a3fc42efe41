"""MLflow, in Neptune's place (Neptune's hosted service closed in March 2026; its exporter moves projects to
MLflow). No torch here.

Two routes:
- ``--tracker mlflow`` logs a run live: params, per-epoch metrics with their epoch as step, the final metrics,
  the confusion matrix, the classification report and the figures as artifacts, and tags (study, strategy,
  teacher, student, seed). It uses ``MLFLOW_TRACKING_URI`` when set, else a SQLite store beside the run store
  (``sqlite:///<runs>/mlflow.db``, artifacts in ``<runs>/mlartifacts``).
- ``kdengine export mlflow`` pushes finished runs from the run store into any MLflow server from one place.
  SQLite must not be written by several hosts at once: on a cluster, train without the tracker and export
  from one machine. It is safe to repeat: a run already exported (tag ``kdstudy.run_id``) is skipped.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from .. import strategy_catalog as catalog
from ..errors import UsageError
from ..metric_names import PER_SPLIT, SPLITS
from ..options import config_dict
from ..store.records import read_record
from ..store import events as ev
from ..study.registry import study_membership

EXPERIMENT = "kdstudy"
RUN_TAG = "kdstudy.run_id"


def client_for(store_root: Path, uri: str | None = None):
    """(MlflowClient, tracking uri): ``uri``, else $MLFLOW_TRACKING_URI, else SQLite beside the run store."""
    try:
        from mlflow.tracking import MlflowClient  # mlflow: an optional extra
    except ImportError:
        raise UsageError("MLflow needs the mlflow extra: pip install 'kdstudy[mlflow]'") from None
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(store_root).resolve() / 'mlflow.db'}"
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines do not belong in training's output
    try:
        return MlflowClient(tracking_uri=uri), uri
    except Exception as exc:  # noqa: BLE001 - an unsupported tracking URI: one line, not MLflow's traceback
        raise UsageError(f"MLflow cannot use {uri}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else exc.__class__.__name__


def experiment_id(client, store_root: Path, name: str | None = None) -> str:
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    try:
        exp = client.get_experiment_by_name(name)
    except Exception as exc:  # noqa: BLE001 - an unreachable tracking server: one line, not a traceback
        raise UsageError(f"MLflow cannot use {client.tracking_uri}: {_first_line(exc)}") from None
    if exp is not None:
        return exp.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:"):  # keep the artifacts beside the database, in the store
        location = (Path(store_root).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def find_run(client, exp_id: str, run_id: str):
    found = client.search_runs([exp_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1)
    return found[0] if found else None


def params_of(spec) -> dict[str, str]:
    """Flat ``section.key`` params of a spec (MLflow params are strings of at most 6000 characters)."""
    out = {"model": spec.model, "kind": spec.kind, "strategy": spec.strategy or "", "regime": spec.regime or "",
           "seed": str(spec.seed), "teachers": ",".join(t.run_id for t in spec.teachers)}
    for section, cfg in (("data", spec.data), ("train", spec.train), ("kd", spec.kd)):
        if cfg is not None:
            out.update({f"{section}.{k}": str(v) for k, v in config_dict(cfg).items()})
    return {k: v[:6000] for k, v in out.items()}


def tags_of(spec, run_id: str, studies: tuple[str, ...] = ()) -> dict[str, str]:
    teacher = (catalog.get(spec.strategy).teacher_label([t.model for t in spec.teachers], spec.model)
               if spec.strategy else "")
    return {RUN_TAG: run_id, "study": ",".join(studies), "strategy": spec.strategy or spec.regime or "",
            "teacher": teacher, "student": spec.model, "seed": str(spec.seed), "mlflow.runName": run_id}


def epoch_metrics(event) -> dict[str, float]:
    """An epoch event's numbers, as MLflow metrics (``event``: a ``store.events.Epoch``)."""
    out = {"lr": event.lr}
    for split in SPLITS[:2]:  # an epoch has a training and a validation pass
        for key, value in getattr(event, split).items():
            if isinstance(value, (int, float)):
                out[f"{split}/{key}"] = float(value)
    return out


def log_epoch(client, mlflow_run_id: str, epoch: int, event, timestamp_ms: int | None = None) -> None:
    from mlflow.entities import Metric  # mlflow: an optional extra

    ts = timestamp_ms or int(time.time() * 1000)
    client.log_batch(mlflow_run_id, metrics=[Metric(k, v, ts, epoch) for k, v in epoch_metrics(event).items()])


def log_final(client, mlflow_run_id: str, results: dict, figures: list[Path] | None) -> None:
    from mlflow.entities import Metric  # mlflow: an optional extra

    ts = int(time.time() * 1000)
    metrics = [Metric(f"final/{split}/{key}", float(results[split][key]), ts, 0)
               for split in SPLITS for key in PER_SPLIT if isinstance(results.get(split, {}).get(key), (int, float))]
    client.log_batch(mlflow_run_id, metrics=metrics)
    with tempfile.TemporaryDirectory() as tmp:
        names = results["class_names"]
        cm = results["test"]["confusion"]
        Path(tmp, "confusion_matrix.json").write_text(json.dumps({"class_names": names, "rows_true_columns_predicted": cm}))
        Path(tmp, "classification_report.json").write_text(json.dumps(results["test"]["report"], indent=2))
        client.log_artifact(mlflow_run_id, str(Path(tmp, "confusion_matrix.json")))
        client.log_artifact(mlflow_run_id, str(Path(tmp, "classification_report.json")))
    for path in figures or []:
        client.log_artifact(mlflow_run_id, str(path), artifact_path="figures")


def export_runs(store, run_ids: list[str], uri: str | None = None, experiment: str | None = None,
                log=print) -> tuple[int, int]:
    """Push finished runs into MLflow (params, tags, per-epoch metrics at their epochs and times, final metrics,
    artifacts); a run already exported is skipped. Returns (exported, skipped)."""
    client, uri = client_for(store.root, uri)
    exp = experiment_id(client, store.root, experiment)
    studies = study_membership(store)
    exported = skipped = 0
    for rid in run_ids:
        record = read_record(store, rid)
        if not record.finished or record.spec is None:
            continue
        existing = find_run(client, exp, rid)
        if existing is not None and existing.info.status == "FINISHED":
            skipped += 1
            continue
        run = existing or client.create_run(exp, run_name=rid, tags=tags_of(record.spec, rid, studies.get(rid, ())))
        mid = run.info.run_id
        if existing is None:
            from mlflow.entities import Param  # mlflow: an optional extra

            client.log_batch(mid, params=[Param(k, v) for k, v in params_of(record.spec).items()])
        for e in ev.epochs(store.events(rid)):
            log_epoch(client, mid, e.epoch, e, int((e.t or 0) * 1000) or None)
        figures = sorted((store.run_dir(rid) / "figures").glob("*.png"))
        log_final(client, mid, record.metrics, figures)
        client.set_terminated(mid, status="FINISHED")
        exported += 1
        log(f"exported {rid}")
    return exported, skipped
