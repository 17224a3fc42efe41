"""``kdengine train``: train what a strategy needs (the teacher first), then print test metrics."""
from __future__ import annotations

import argparse
import sys

from .. import strategy_catalog as catalog
from ..api import Choices
from ..options import add_options, from_args
from .study_cmd import CUDA_ELSEWHERE
from .common import (
    add_data_options,
    add_runtime_args,
    check_loader_workers,
    data_config,
    fast_path,
    print_json,
    store_from,
)


def strategy_help() -> str:
    return "; ".join(f"{s.name}: {s.description}" for s in catalog.CATALOGUE.values())


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The strategy, the models and the seed: what ``train`` asks for beyond the config options."""
    g = p.add_argument_group("what to train")
    g.add_argument("--strategy", required=True, choices=catalog.names(), help=strategy_help())
    g.add_argument("--student", required=True, metavar="MODEL", help="the student: a timm model name")
    g.add_argument("--teacher", action="append", default=[], metavar="MODEL|RUN_ID",
                   help="a teacher model (trained if needed), or a run id of a finished teacher run (repeat for ensemble)")
    g.add_argument("--teacher-set", action="append", default=[], metavar="KEY=VALUE",
                   help="the teacher's own training settings (e.g. --teacher-set epochs=30); default: the student's")

    def seed(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"seed must be a whole number, got '{text}'") from None
        if not 0 <= value <= Choices.MAX_SEED:
            raise argparse.ArgumentTypeError(f"seed must lie in [0, {Choices.MAX_SEED}], got {value}")
        return value

    g.add_argument("--seed", type=seed, default=0, help="the run's seed (default: 0)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a strategy: teacher (if needed, or reused) then student, then its baseline")
    add_model_args(p)
    add_data_options(p)
    add_options(p, Choices.CONFIGS["train"], title="training")
    add_options(p, Choices.CONFIGS["kd"], title="distillation")
    add_runtime_args(p)
    p.add_argument("--no-baseline", action="store_true",
                   help="do not also train the student alone (the baseline a KD run is compared with)")
    p.add_argument("--queue", action="store_true", help="only queue the runs for `kdengine worker`")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print the student's final metrics as JSON")
    p.set_defaults(handler=run_train)


def spec_from_args(args, store):
    """Each --teacher is a model name, or the id of a run in the store (then that run is the teacher)."""
    return store.spec(args.strategy, args.student, args.teacher, data_config(args),
                      from_args(Choices.CONFIGS["train"], args), from_args(Choices.CONFIGS["kd"], args), args.seed,
                      args.teacher_set, "--teacher-set")


def run_train(args: argparse.Namespace) -> int:
    check_loader_workers(args)
    store = store_from(args, write=True)
    spec = spec_from_args(args, store)
    # models, image size, weights file, data (decoded: a run is never created for data training would refuse):
    # one line, exit 2, before anything is queued
    store.check([spec], decode=True, isolate=False)  # the CLI may import torch: the checks run here
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.queue:
        queued = store.queue(spec, not args.no_baseline, device=args.device)
        for note in teacher_lines(store, queued.teachers, "queueing"):
            log(note)
        if queued.size_warning:
            log(f"warning: {queued.size_warning}")
        if queued.cuda_elsewhere:
            log(CUDA_ELSEWHERE)
        print(f"queued {len(queued.runs)} run(s) in {store.root}: " + ", ".join(queued.runs or [queued.run_id])
              + f"; start a worker with: kdengine worker --runs-dir {store.root}")
        return 0

    for note in teacher_lines(store, store.teacher_plans(spec), "training", reused=False):  # the executor says
        log(note)  # "reusing finished run …" itself
    trained = store.train(spec, args.device, args.loader_workers, fast_path(args), args.tracker,
                          with_baseline=not args.no_baseline, progress=not args.quiet, log=log)
    if args.json:
        print_json(trained.metrics)
    else:
        print(render_summary(spec, trained))
    return 0


def teacher_lines(store, plans, verb: str, reused: bool = True) -> list[str]:
    """For each teacher (``api.TeacherPlan``): that a finished run is reused (unless ``reused`` is False), or why
    a new one is trained and how to distil from the closest finished run instead. ``verb``: what happens to a new
    teacher now ("training", or "queueing" when only queued)."""
    notes = []
    for t in plans:
        if t.reused:
            if reused:
                notes.append(f"reusing teacher {t.run_id}: finished, with the same architecture, data, settings and "
                             "seed")
        elif t.state is not None:
            notes.append(f"teacher {t.run_id} is in the store ({t.state}); it will be finished first")
        elif t.closest is None:
            notes.append(f"{verb} teacher {t.run_id}: no finished {t.model} run with seed {t.seed} on the student's "
                         f"data in {store.root}")
        else:
            notes.append(f"{verb} teacher {t.run_id}: the finished {t.closest} differs in {', '.join(t.differs)}; "
                         f"to distil from it instead, pass --teacher {t.closest}")
    return notes


def render_summary(spec, trained) -> str:
    rows = []
    for t in spec.teachers:
        rows.append(("teacher", t.model, t.run_id, trained.teachers.get(t.run_id) or {}))
    metrics = trained.metrics
    rows.append(("student" if spec.kind == "kd" else "model", spec.model, spec.run_id, metrics))
    base_metrics = trained.baseline
    if base_metrics and trained.baseline_id not in {r[2] for r in rows}:
        rows.append(("baseline", spec.model, trained.baseline_id, base_metrics))
    lines = [f"{spec.describe()}" + ("   [SYNTHETIC data]" if metrics.get("synthetic") else ""),
             f"{'role':8} {'model':16} {'train':>7} {'val':>7} {'test':>7} {'F1':>7} {'kappa':>7} {'ECE':>7}  run"]
    for role, model, rid, m in rows:
        if not m:
            continue
        lines.append(f"{role:8} {model:16} {m['train']['accuracy']:7.4f} {m['val']['accuracy']:7.4f} "
                     f"{m['test']['accuracy']:7.4f} {m['test']['macro_f1']:7.4f} {m['test']['kappa']:7.4f} "
                     f"{m['test']['ece']:7.4f}  {rid}")
    if base_metrics:
        gain = metrics["test"]["accuracy"] - base_metrics["test"]["accuracy"]
        lines.append(f"test accuracy gain over the baseline {trained.baseline_id}: {gain:+.4f} "
                     "(one seed: no interval; use a study for several)")
    if "agreement" in metrics.get("test", {}):
        lines.append(f"teacher-student top-1 agreement on test: {metrics['test']['agreement']:.4f}")
    for t in metrics.get("teachers", []):
        if t.get("defect"):
            d = t["defect"]
            lines.append(f"defective teacher {t['model']}: stopped at val accuracy {d['val_accuracy']:.4f} "
                         f"(threshold {d['threshold']}, epoch {d.get('epoch')})")
    if metrics.get("defect"):
        d = metrics["defect"]
        lines.append(f"defective run: val accuracy {d['val_accuracy']:.4f} (threshold {d['threshold']})")
    return "\n".join(lines)
