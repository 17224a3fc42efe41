"""Read every run of a store into flat records (no torch, no pandas): the TUI and the tables share this."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..store import RunStore

SPLITS = ("train", "val", "test")


@dataclass
class RunRecord:
    run_id: str
    spec: dict
    status: dict
    metrics: dict | None

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    @property
    def state(self) -> str:
        return self.status.get("state", "queued")

    @property
    def model(self) -> str:
        return self.spec["model"]

    @property
    def strategy(self) -> str:
        if self.kind == "ce":
            return "defective-teacher" if self.spec.get("defect_acc") is not None else "baseline"
        return self.spec["strategy"]

    @property
    def teacher_models(self) -> list[str]:
        return [t["model"] for t in self.spec.get("teachers", [])]

    @property
    def teacher_label(self) -> str:
        if self.kind == "ce":
            return ""
        if self.spec["strategy"] == "tf-self":
            return f"{self.model} (self)"
        if self.spec["strategy"] == "tf-reg":
            return "virtual"
        return "+".join(self.teacher_models)

    def settings_key(self) -> str:
        """Data, training settings and init: what a run and its baseline must share (seed excluded)."""
        s = self.spec
        blob = json.dumps([s["data"], s["train"], s.get("pretrained"), s.get("pretrained_from")], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def accuracy(self, split: str) -> float | None:
        if not self.metrics or split not in self.metrics:
            return None
        return self.metrics[split].get("accuracy")


_WRITE_ONCE: dict[tuple, dict | None] = {}


def _write_once(path) -> dict | None:
    """spec.json and metrics.json are written once: re-read them only when the file changed."""
    from ..store.runstore import read_json

    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _WRITE_ONCE:
        if len(_WRITE_ONCE) > 20000:
            _WRITE_ONCE.clear()
        _WRITE_ONCE[key] = read_json(path)
    return _WRITE_ONCE[key]


def collect(store: RunStore) -> list[RunRecord]:
    """Every run of the store (polled every second by the TUI: only status.json is re-read each time)."""
    out = []
    for rid in store.list_ids():
        d = store.run_dir(rid)
        spec_file = _write_once(d / "spec.json")
        if not spec_file:
            continue
        out.append(RunRecord(run_id=rid, spec=spec_file["spec"], status=store.read_status(rid),
                             metrics=_write_once(d / "metrics.json")))
    return out


def teacher_ids(records: list[RunRecord]) -> set[str]:
    """Run ids that serve as a teacher of some KD run in the store."""
    from ..runspec import RunSpec

    used = set()
    for r in records:
        if r.kind == "kd":
            for t in r.spec.get("teachers", []):
                used.add(RunSpec.from_dict(t).run_id)
    return used


def baseline_index(records: list[RunRecord]) -> dict[tuple, RunRecord]:
    """(model, settings, seed) -> the finished plain cross-entropy run: every student's baseline."""
    idx = {}
    for r in records:
        if r.kind == "ce" and r.spec.get("defect_acc") is None and r.state == "finished" and r.metrics:
            idx[(r.model, r.settings_key(), r.spec["seed"])] = r
    return idx


def baseline_for(record: RunRecord, index: dict[tuple, RunRecord]) -> RunRecord | None:
    return index.get((record.model, record.settings_key(), record.spec["seed"]))


def role_of(record: RunRecord, teachers: set[str]) -> str:
    if record.kind == "kd":
        return "student"
    if record.spec.get("defect_acc") is not None or record.run_id in teachers:
        return "teacher"
    return "baseline"


def tidy_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per finished run and split: the long table every export starts from."""
    teachers = teacher_ids(records)
    bidx = baseline_index(records)
    rows = []
    for r in records:
        if r.state != "finished" or not r.metrics:
            continue
        base = baseline_for(r, bidx) if r.kind == "kd" else None
        t_meta = (r.metrics.get("teachers") or [{}])[0] if r.kind == "kd" else {}
        defect = r.metrics.get("defect") or t_meta.get("defect") or {}
        for split in SPLITS:
            m = r.metrics.get(split, {})
            rows.append({
                "run_id": r.run_id, "strategy": r.strategy, "role": role_of(r, teachers),
                "teacher": r.teacher_label, "student": r.model, "seed": r.spec["seed"], "split": split,
                "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"), "kappa": m.get("kappa"),
                "ece": m.get("ece"), "loss": m.get("loss"), "agreement": m.get("agreement"),
                "baseline_accuracy": base.accuracy(split) if base else None,
                "gain": (m.get("accuracy") - base.accuracy(split)) if base and m.get("accuracy") is not None else None,
                "defect_threshold": defect.get("threshold"), "defect_val_accuracy": defect.get("val_accuracy"),
                "teacher_val_accuracy": t_meta.get("val_accuracy"), "data": r.spec["data"]["spec"],
                "task": r.spec["data"]["task"], "image_size": r.spec["train"]["image_size"],
                "epochs": r.spec["train"]["epochs"], "best_epoch": r.metrics.get("best_epoch"),
                "settings": r.settings_key(), "synthetic": bool(r.metrics.get("synthetic")),
            })
    return rows
