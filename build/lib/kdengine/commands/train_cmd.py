"""``kdengine train``: train what a strategy needs (the teacher first), then print test metrics."""
from __future__ import annotations

import argparse
import sys

from ..cli import add_data_args, data_config, print_json
from ..runspec import KL_REDUCTIONS, OPTIMIZERS, SCHEDULES, STRATEGIES, KDConfig, TrainConfig, build_specs


def add_training_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--schedule", choices=SCHEDULES, default="constant")
    g.add_argument("--step-size", type=int, default=10, help="epochs between decays (step schedule)")
    g.add_argument("--gamma", type=float, default=0.1, help="decay factor (step schedule)")
    g.add_argument("--grad-clip", type=float, default=0.0, help="max gradient norm; 0: off")
    g.add_argument("--patience", type=int, default=0, help="early-stopping patience in epochs; 0: off")
    g.add_argument("--image-size", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--pretrained", action="store_true", help="start from ImageNet weights (3 replicated channels)")
    g.add_argument("--pretrained-from", metavar="PATH", default=None, help="local weights file or folder (no network)")
    k = p.add_argument_group("distillation")
    k.add_argument("--alpha", type=float, default=0.9, help="weight of the KD term")
    k.add_argument("--temperature", "-T", type=float, default=4.0)
    k.add_argument("--kl-reduction", choices=KL_REDUCTIONS, default="batchmean",
                   help="batchmean (Hinton) or mean (Yuan et al.'s released code)")
    k.add_argument("--defect-acc", type=float, default=0.5, help="defective teacher: stop at this val accuracy")
    k.add_argument("--defect-check-every", type=int, default=0, help="steps between defect checks; 0: 4 per epoch")
    k.add_argument("--tf-a", type=float, default=0.9, help="tf-reg: correct-class probability of the virtual teacher")
    k.add_argument("--tf-temperature", type=float, default=1.0, help="tf-reg: the virtual teacher's temperature")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime (not part of a run's identity)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    g.add_argument("--workers", type=int, default=None, help="data-loader workers (default: 0 on CPU, up to 8 on CUDA)")
    g.add_argument("--tracker", action="append", choices=["neptune", "tensorboard"], default=[])
    g.add_argument("--runs-dir", default=None, help="run store (default: $KDSTUDY_HOME or ./runs)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a strategy: teacher (if needed, or reused) then student")
    add_data_args(p)
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--student", required=True, metavar="MODEL")
    p.add_argument("--teacher", action="append", default=[], metavar="MODEL",
                   help="teacher model (repeat for ensemble)")
    add_training_args(p)
    add_runtime_args(p)
    p.add_argument("--no-baseline", action="store_true",
                   help="do not also train the student alone (the baseline a KD run is compared with)")
    p.add_argument("--queue", action="store_true", help="only queue the runs for `kdengine worker`")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print the student's final metrics as JSON")
    p.set_defaults(handler=run_train)


def train_config(args) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                       weight_decay=args.weight_decay, momentum=args.momentum, schedule=args.schedule,
                       step_size=args.step_size, gamma=args.gamma, grad_clip=args.grad_clip,
                       patience=args.patience, image_size=args.image_size)


def kd_config(args) -> KDConfig:
    return KDConfig(alpha=args.alpha, temperature=args.temperature, reduction=args.kl_reduction,
                    tf_a=args.tf_a, tf_temperature=args.tf_temperature)


def spec_from_args(args):
    from pathlib import Path

    pretrained_from = str(Path(args.pretrained_from).expanduser().resolve()) if args.pretrained_from else None
    return build_specs(args.strategy, args.student, args.teacher, data_config(args), train_config(args),
                       kd_config(args), args.seed, pretrained=args.pretrained or bool(pretrained_from),
                       pretrained_from=pretrained_from, defect_acc=args.defect_acc,
                       defect_check_every=args.defect_check_every)


def validate_models(spec) -> None:
    from ..models.factory import check_name

    check_name(spec.model)
    for t in spec.teachers:
        validate_models(t)


def run_train(args: argparse.Namespace) -> int:
    from ..data.spec import open_source
    from ..paths import runs_dir
    from ..store import RunStore
    from ..store.queue import enqueue
    from ..training.executor import ensure_finished

    from ..runspec import baseline_of

    spec = spec_from_args(args)
    validate_models(spec)
    open_source(spec.data)  # bad data fails here, in one line, before any training
    store = RunStore(runs_dir(args.runs_dir))
    baseline = None if args.no_baseline else baseline_of(spec)
    if args.queue:
        rid = enqueue(store, spec)
        if baseline is not None:
            enqueue(store, baseline)
        print(f"queued {rid} in {store.root}; start a worker with: kdengine worker --runs-dir {store.root}")
        return 0
    from ..training.device import setup_device
    from ..training.trackers import make_trackers

    dev = setup_device(args.device, args.workers)
    make_trackers(args.tracker)  # fail early on a missing extra
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    metrics = ensure_finished(store, spec, dev, trackers=lambda: make_trackers(args.tracker),
                              progress=not args.quiet, log=log)
    if baseline is not None:
        ensure_finished(store, baseline, dev, trackers=lambda: make_trackers(args.tracker),
                        progress=not args.quiet, log=log)
    if args.json:
        print_json(metrics)
    else:
        print(render_summary(store, spec, metrics, baseline))
    return 0


def render_summary(store, spec, metrics: dict, baseline=None) -> str:
    rows = []
    for t in spec.teachers:
        tm = store.read_metrics(t.run_id) or {}
        rows.append(("teacher", t.model, t.run_id, tm))
    rows.append(("student" if spec.kind == "kd" else "model", spec.model, spec.run_id, metrics))
    base_metrics = store.read_metrics(baseline.run_id) if baseline is not None else None
    if base_metrics:
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
        lines.append(f"test accuracy gain over the baseline: {gain:+.4f} (one seed: no interval; use a study for several)")
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
