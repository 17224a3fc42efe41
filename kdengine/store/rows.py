"""One row per run: what a list of runs shows, for the CLI's ``runs list`` (and its ``--json``) and kdtui's run list
alike (no torch). Each front end formats a row its own way; what a row holds is decided here once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .. import method_catalog
from ..data.unreadable import failed_on_unreadable
from ..options import info, setting_label, value_text
from ..runspec import CONFIGS
from .actions import why_not
from .lifecycle import FAILED, RUNNING, State
from .records import RunRecord, collect, differing_keys, finished_baseline, flat_settings, roles_of
from .runstore import RunStore


@dataclass(frozen=True)
class RunRow:
    run_id: str
    state: State
    damaged: bool  # its files cannot be read as a run's (``reason`` says why)
    what: str  # its strategy; for a cross-entropy run its role: teacher, baseline, teacher+baseline, defective T
    strategy: str | None
    regime: str | None
    teacher: str | None  # its teacher(s), as a label
    student: str
    seed: int | None
    device: str  # where it trained (cuda:0 …), or what it asked for
    data: str | None  # the data source
    synthetic: bool
    epochs: int  # planned
    epoch: int  # finished epochs; while it trains, the epoch it is in
    progress: float  # 0..1 of its steps (1 when finished, also after an early stop)
    best_val: float | None  # the best validation accuracy so far
    test_accuracy: float | None
    baseline_run_id: str | None
    gain: float | None  # test accuracy over its finished baseline
    reason: str | None  # why it failed, stopped, waits, or is damaged
    eta_s: float | None  # while it trains
    phase: str  # while it runs: training, decoding, evaluating val …
    studies: tuple[str, ...] = ()
    order: int = 0  # its place in the store (creation order)
    stopped_early: bool = False  # a defective teacher stopped at its threshold
    readable: bool = True  # its spec can be read (a run that cannot be read cannot be retried)
    point: str = ""  # what sets it apart from look-alike runs (same role, models and seed): "T=4"; "" when nothing
    asked_device: str = "auto"  # the device it asks for (auto, cpu or cuda): what a worker must serve
    method: str | None = None  # how a KD run learns from its teacher (kd.method); None for a cross-entropy run
    unreadable: bool = False  # failed on an unreadable image and skips none: retried as it is, it fails again

    @property
    def data_kind(self) -> str:
        return self.data.split(":", 1)[0] if self.data else "?"

    def why_not(self, action: str, force: bool = False) -> str | None:
        """None when ``action`` (stop, retry, delete, archive) may be done to this run, else why not in a few words
        (``store.actions``: the rule the CLI's batches follow too)."""
        return why_not(action, self.state, self.reason if self.damaged else None, self.readable, force)


def needs_skip_bad(record: RunRecord) -> bool:
    """Its failure was an image that could not be read, and it skips none: only with them skipped can it train."""
    return record.spec is not None and not record.spec.data.skip_bad and failed_on_unreadable(record.status.reason)


def role_word(record: RunRecord, roles: dict[str, set[str]]) -> str:
    """What a run is: its strategy, or for a cross-entropy run its role (teacher, baseline, or both: one run serves
    as both), or a defective teacher."""
    if record.spec is None:
        return "damaged"
    if record.kind == "kd":  # its strategy, and its method unless Hinton's (the default): "normal/dkd"
        method = record.spec.method
        return record.strategy + (f"/{method}" if method != method_catalog.DEFAULT else "")
    if record.regime == "defective":
        return "defective T"
    return "+".join(sorted(roles.get(record.run_id, {"baseline"}) - {"student"}, reverse=True)) or "baseline"


def point_labels(records: list[RunRecord], studies: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """For runs that share their role, teacher and student with another run of their study (the points of a sweep,
    or runs trained with other settings): what sets them apart, as a sweep's tables say it ("T=4", "lr=0.001,
    epochs=2"); the others get no label. The one label of a run among look-alikes, for every list.

    A study's runs are set apart from the study's other runs only, and runs of no study from each other, over
    every seed: a run's label never depends on what else happens to be in the store (an ad-hoc run trained
    beside a study once gave the study's seed-0 runs a label its seeds 1 and 2 lacked)."""
    studies = studies or {}
    alike: dict[tuple, list[RunRecord]] = {}
    for r in records:
        if r.spec is not None:
            scope = min(studies.get(r.run_id) or ("",))
            method = r.spec.method if r.kind == "kd" else ""  # "normal" and "normal/dist" are not look-alikes
            alike.setdefault((scope, r.label, method, r.teacher_label, r.model), []).append(r)
    out = {}
    for group in alike.values():
        if len(group) < 2:
            continue
        flats = {r.run_id: flat_settings(r.spec) for r in group}
        keys = differing_keys(list(flats.values()))
        specs = {r.run_id: r.spec for r in group}
        for rid, flat in flats.items():
            if keys:  # a key the run does not read is no part of what it is (Adam has no momentum)
                out[rid] = ", ".join(f"{setting_label(k)}={value_text(flat[k] if k in flat else default_of(k))}"
                                     for k in keys if k in flat or reads_key(specs[rid], k))
    return out


def reads_key(spec, key: str) -> bool:
    """Whether a run reads the setting of dotted ``key`` (``train.momentum``, ``kd.temperature``,
    ``teacher.train.lr``): the configs' own rule (``TrainConfig.reads``, ``KDConfig.reads``)."""
    head, _, rest = key.partition(".")
    if head.startswith("teacher"):
        index = int(head[len("teacher"):] or 1) - 1
        if index >= len(spec.teachers):
            return False
        return reads_key(spec.teachers[index], rest)
    section, _, name = key.rpartition(".")
    if section == "train":
        return spec.train.reads(name)
    if section == "kd":
        return spec.kd is not None and spec.kd.reads(name, spec.strategy)
    return True


def default_of(key: str):
    """A setting's default, by its dotted key (``kd.dist_beta``, ``teacher.train.lr``): the value a run's identity
    leaves out where the run reads it (a method's parameter at its paper's value is not in the run id), shown as
    what it is, not None."""
    section, _, name = key.rpartition(".")
    cls = CONFIGS.get(section.rpartition(".")[2])
    try:
        return info(cls, name).default if cls is not None else None
    except KeyError:
        return None


def _progress(r: RunRecord) -> tuple[int, int, float, float | None]:
    """(epoch, epochs, fraction done, best val so far) from its metrics or its worker's progress."""
    prog, epochs = r.status.progress, (r.spec.train.epochs if r.spec else 0)
    if r.metrics:
        return int(r.metrics.get("epochs_run", epochs)), epochs, 1.0, r.metrics["val"]["accuracy"]
    if prog and r.state == RUNNING:
        return (int(prog.get("epoch", 0)), epochs, prog.get("global_step", 0) / max(1, prog.get("total_steps", 1)),
                prog.get("best_val_accuracy") or None)
    if prog:  # stopped, failed or queued again after some epochs: where it resumes from
        done = int(prog.get("epochs_done", 0))
        return done, epochs, done / max(1, epochs), prog.get("best_val_accuracy") or None
    return 0, epochs, 0.0, None


def run_rows(store: RunStore, records: Iterable[RunRecord] | None = None, every: list[RunRecord] | None = None,
             studies: dict[str, tuple[str, ...]] | None = None) -> list[RunRow]:
    """A row per run of ``records`` (default: every run, in the store's order). ``every``: the store's records,
    when the caller has read them already (baselines, roles and the order come from them); ``studies``: run id ->
    the studies it belongs to."""
    every = collect(store) if every is None else every
    records = every if records is None else list(records)
    by_id = {r.run_id: r for r in every}
    order = {r.run_id: i for i, r in enumerate(every)}
    roles = roles_of([r for r in every if r.spec])
    studies = studies or {}
    points = point_labels(every, studies)
    rows = []
    for r in records:
        epoch, epochs, fraction, best = _progress(r)
        prog = r.status.progress
        running = r.state == RUNNING
        training = running and prog.get("phase", "training") == "training"
        rows.append(RunRow(
            r.run_id, r.state, r.damaged, role_word(r, roles), r.strategy, r.regime, r.teacher_label, r.model, r.seed,
            r.status.place, r.spec.data.source if r.spec else None,
            bool(r.spec and r.spec.data.source.startswith("synthetic")), epochs, epoch, fraction, best,
            r.accuracy("test"), r.baseline_id, r.gain_over(finished_baseline(r, by_id)),
            r.damage or r.status.reason, prog.get("eta_s") if training else None,
            str(prog.get("phase", "")) if running else "", tuple(studies.get(r.run_id, ())), order.get(r.run_id, 0),
            bool(((r.metrics or {}).get("defect") or {}).get("reached")), r.spec is not None,
            points.get(r.run_id, ""), r.status.device, r.spec.method if r.spec else None,
            r.state == FAILED and needs_skip_bad(r)))
    return rows
