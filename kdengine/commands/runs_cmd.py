"""``kdengine runs list|show|stop``, ``kdengine table`` and ``kdengine worker``."""
from __future__ import annotations

from ..errors import UsageError
from .common import add_runs_dir, print_json, resolve_run_id, store_from


def register(sub) -> None:
    from .study_cmd import add_table_args

    runs = sub.add_parser("runs", help="list, show or stop runs in the store")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    for name, fn, helptext in (("list", run_list, "one line per run"), ("show", run_show, "one run in full"),
                               ("stop", run_stop, "ask a run to stop")):
        p = rsub.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("run_id")
        add_runs_dir(p)
        if name != "stop":
            p.add_argument("--json", action="store_true")
        p.set_defaults(handler=fn)

    table = sub.add_parser("table", help="every run's tables: models (teachers, baselines) and students per strategy")
    add_runs_dir(table)
    add_table_args(table)
    table.set_defaults(handler=run_table)

    worker = sub.add_parser("worker", help="train queued runs (normally started detached by the TUI)")
    add_runs_dir(worker)
    worker.add_argument("--device", default="auto")
    worker.add_argument("--loader-workers", type=int, default=None, metavar="N", help="data-loader processes per run")
    worker.add_argument("--idle-exit", type=float, default=30.0, help="exit after this many idle seconds")
    worker.add_argument("--once", action="store_true", help="exit as soon as the queue is empty")
    worker.add_argument("--detach", action="store_true", help="start detached worker(s) and return")
    worker.set_defaults(handler=run_worker)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def run_list(args) -> int:
    from ..reports.collect import collect

    records = collect(store_from(args))
    if args.json:
        print_json([{"run_id": r.run_id, "state": r.state, "strategy": r.strategy, "regime": r.regime,
                     "teacher": r.teacher_label, "student": r.model, "seed": r.seed,
                     "test_accuracy": r.accuracy("test"), "reason": r.damage or r.status.get("reason")}
                    for r in records])
        return 0
    if not records:
        print("no runs yet")
        return 0
    print(f"{'run':44} {'state':9} {'what':10} {'teacher -> student':34} {'test acc':>8}")
    for r in records:
        who = f"{r.teacher_label} -> {r.model}" if r.teacher_label else r.model
        print(f"{r.run_id:44} {r.state:9} {r.label:10} {who:34} {_fmt(r.accuracy('test')):>8}")
    return 0


def run_show(args) -> int:
    store = store_from(args)
    rid = resolve_run_id(store, args.run_id)
    header, status, metrics = store.read_spec_file(rid), store.read_status(rid), store.read_metrics(rid)
    if args.json:
        print_json({"spec": header, "status": status, "metrics": metrics})
        return 0
    print(f"{rid}: {(header or {}).get('describe', '(spec.json unreadable)')}")
    print(f"state: {status['state']}" + (f" ({status['reason']})" if status.get("reason") else ""))
    if metrics:
        names = metrics["class_names"]
        for split in ("train", "val", "test"):
            m = metrics[split]
            print(f"{split:5}  acc {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  kappa {m['kappa']:.4f}  ECE {m['ece']:.4f}"
                  + (f"  agreement {m['agreement']:.4f}" if "agreement" in m else "")
                  + (f"  | {m['study']['n']} studies: acc {m['study']['accuracy']:.4f} kappa {m['study']['kappa']:.4f}"
                     if "study" in m else ""))
        print("\ntest classification report")
        print(f"{'class':12} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
        for name in names:
            r = metrics["test"]["report"][name]
            print(f"{name:12} {r['precision']:9.4f} {r['recall']:7.4f} {r['f1']:7.4f} {r['support']:8d}")
        print("\ntest confusion matrix (rows: true, columns: predicted)")
        w = max(6, *(len(n) for n in names)) + 1
        print(" " * w + "".join(f"{n[:w - 1]:>{w}}" for n in names))
        for name, row in zip(names, metrics["test"]["confusion"]):
            print(f"{name:{w}}" + "".join(f"{v:>{w}}" for v in row))
    return 0


def run_stop(args) -> int:
    store = store_from(args)
    rid = resolve_run_id(store, args.run_id)
    print(f"{rid}: {store.request_stop(rid)}")
    return 0


def run_table(args) -> int:
    from ..reports.collect import collect
    from ..reports.tables import build
    from .study_cmd import write_tables

    store = store_from(args)
    tables = build(collect(store), args.metric)
    if tables.finished == 0:
        raise UsageError(f"no finished runs in {store.root}")
    return write_tables(tables, args)


def run_worker(args) -> int:
    from ..launch import ensure_workers
    from ..worker import Worker
    from .common import check_loader_workers

    check_loader_workers(args)
    store = store_from(args)
    if args.detach:
        pids = ensure_workers(store.root, args.device, args.idle_exit)
        print(f"started worker pid(s) {pids}" if pids else "a worker is already running")
        return 0
    return Worker(store, args.device, args.idle_exit, args.once, args.loader_workers).run()
