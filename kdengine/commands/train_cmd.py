"""``kdengine train``: train what a strategy needs (the teacher first), then print test metrics."""
from __future__ import annotations

import argparse
import sys

from .. import api
from .. import strategy_catalog as catalog
from ..api import CONFIGS, MAX_SEED, baseline_of
from ..options import add_options, from_args
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
        if not 0 <= value <= MAX_SEED:
            raise argparse.ArgumentTypeError(f"seed must lie in [0, {MAX_SEED}], got {value}")
        return value

    g.add_argument("--seed", type=seed, default=0, help="the run's seed (default: 0)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a strategy: teacher (if needed, or reused) then student, then its baseline")
    add_model_args(p)
    add_data_options(p)
    add_options(p, CONFIGS["train"], title="training")
    add_options(p, CONFIGS["kd"], title="distillation")
    add_runtime_args(p)
    p.add_argument("--no-baseline", action="store_true",
                   help="do not also train the student alone (the baseline a KD run is compared with)")
    p.add_argument("--queue", action="store_true", help="only queue the runs for `kdengine worker`")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print the student's final metrics as JSON")
    p.set_defaults(handler=run_train)


def spec_from_args(args, store):
    """Each --teacher is a model name, or the id of a run in the store (then that run is the teacher)."""
    return api.spec_from_settings(store, args.strategy, args.student, args.teacher, data_config(args),
                                  from_args(CONFIGS["train"], args), from_args(CONFIGS["kd"], args), args.seed,
                                  args.teacher_set, "--teacher-set")


def run_train(args: argparse.Namespace) -> int:
    check_loader_workers(args)
    store = store_from(args, write=True)
    spec = spec_from_args(args, store)
    # models, image size, weights file, data (decoded: a run is never created for data training would refuse):
    # one line, exit 2, before anything is queued
    api.check([spec], decode=True, isolate=False)  # the CLI may import torch: the checks run here
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.queue:
        queued = api.queue(store, spec, not args.no_baseline, device=args.device)
        for note in queued.notes:
            log(note)
        print(f"queued {len(queued.runs)} run(s) in {store.root}: " + ", ".join(queued.runs or [queued.run_id])
              + f"; start a worker with: kdengine worker --runs-dir {store.root}")
        return 0

    for note in api.teacher_notes(store, spec, reused=False):  # the executor says "reusing finished run …" itself
        log(note)
    trained = api.train(store, spec, args.device, args.loader_workers, fast_path(args), args.tracker,
                        with_baseline=not args.no_baseline, progress=not args.quiet, log=log)
    if args.json:
        print_json(trained.metrics)
    else:
        print(render_summary(store, spec, trained.metrics, None if args.no_baseline else baseline_of(spec)))
    return 0


def render_summary(store, spec, metrics: dict, baseline=None) -> str:
    rows = []
    for t in spec.teachers:
        rows.append(("teacher", t.model, t.run_id, store.read_metrics(t.run_id) or {}))
    rows.append(("student" if spec.kind == "kd" else "model", spec.model, spec.run_id, metrics))
    base_metrics = store.read_metrics(baseline.run_id) if baseline is not None else None
    if base_metrics and baseline.run_id not in {r[2] for r in rows}:
        rows.append(("baseline", baseline.model, baseline.run_id, base_metrics))
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
        lines.append(f"test accuracy gain over the baseline {baseline.run_id}: {gain:+.4f} "
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
