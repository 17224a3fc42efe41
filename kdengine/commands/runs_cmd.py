"""``kdengine runs list|show|stop``, ``kdengine table`` and ``kdengine worker``."""
from __future__ import annotations

import sys
from dataclasses import asdict

from .. import api
from ..api import RUNNING, STATES, collect
from ..api import events as ev
from ..errors import UsageError
from .common import (
    add_fast_path_args,
    add_packing_arg,
    add_runs_dir,
    check_loader_workers,
    fast_path,
    print_json,
    resolve_run_id,
    store_from,
)
from .study_cmd import add_table_args, stats_of, write_tables


def register(sub) -> None:
    runs = sub.add_parser("runs", help="list, show, stop, retry or check runs in the store")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    lst = rsub.add_parser("list", help="one line per run (--state, --study: only those)")
    show = rsub.add_parser("show", help="one run in full")
    show.add_argument("run_id")
    for p in (lst, show):
        add_runs_dir(p)
        p.add_argument("--json", action="store_true")
    add_selectors(lst, required=False)
    lst.set_defaults(handler=run_list)
    show.set_defaults(handler=run_show)
    for name, fn, helptext in (("stop", run_stop, "ask runs to stop (running ones within seconds; queued ones now)"),
                               ("retry", run_retry, "queue failed, stopped or interrupted runs again (they resume)"),
                               ("delete", run_delete, "delete runs (or --archive them) with their checkpoints")):
        p = rsub.add_parser(name, help=helptext + "; by id, or all of a --study or --state")
        add_selectors(p, required=True)
        add_runs_dir(p)
        if name == "retry":
            p.add_argument("--force", action="store_true",
                           help="also a finished run whose results are damaged (trains it again)")
        if name == "delete":
            p.add_argument("--archive", action="store_true", help="move them to <runs>/.archive/ instead")
            p.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
        p.set_defaults(handler=fn)
    doctor = rsub.add_parser("doctor", help="find damaged runs, temp files, orphans; --fix mends what is safe")
    add_runs_dir(doctor)
    doctor.add_argument("--fix", action="store_true", help="remove temp files and stale records, requeue "
                        "interrupted runs, rewrite unreadable status files")
    doctor.set_defaults(handler=run_doctor)

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
    add_fast_path_args(worker)
    worker.add_argument("--detach", action="store_true", help="start detached worker(s) and return")
    worker.add_argument("--dry-run", action="store_true",
                        help="print the plan (GPUs, workers per GPU and why, each queued shape's memory); start nothing")
    add_packing_arg(worker)
    worker.set_defaults(handler=run_worker)


def add_selectors(p, required: bool) -> None:
    """Which runs: ids (or parts of them), or every run of a study and/or in a state."""
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="run ids, or unambiguous parts of them")
    p.add_argument("--study", default=None, metavar="STUDY", help="every run of this study")
    p.add_argument("--state", action="append", default=[], choices=STATES,
                   help="only runs in this state (repeatable)")
    p.add_argument("--damaged", action="store_true", help="only runs whose files cannot be read as a run's")
    p.set_defaults(selectors_required=required)


def selected(store, args) -> list[str]:
    """The runs named (an id that does not exist is an error) or matched by the filters (a filter that matches
    nothing is not: a script that retries failures must not fail when nothing failed)."""
    if getattr(args, "selectors_required", False) and not (args.run_ids or args.study or args.state or args.damaged):
        raise UsageError("name runs by id, or select them with --study STUDY, --state STATE and/or --damaged")
    return api.select_runs(store, args.run_ids, args.study, args.state, args.damaged)


def nothing_matched(ids: list[str], verb: str) -> bool:
    """True (and said) when the filters matched no run: nothing to do, exit 0."""
    if not ids:
        print(f"no run matches: nothing to {verb}")
    return not ids


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def run_list(args) -> int:
    store = store_from(args)
    ids = set(selected(store, args))
    every = collect(store)
    records = [r for r in every if r.run_id in ids]
    rows = api.run_rows(store, records, every)
    if args.json:
        print_json([{**asdict(r), "state": r.state.value, "data_kind": r.data_kind} for r in rows])
        return 0
    if not rows:
        print("no runs yet" if not (args.run_ids or args.study or args.state or args.damaged) else "no run matches")
        return 0
    twins = any(r.point for r in rows)
    print(f"{'run':44} {'state':9} {'what':16} {'teacher -> student':34} {'seed':>4} {'device':7} {'data':9} "
          f"{'test acc':>8} {'gain':>8}" + ("  settings" if twins else ""))
    for r in rows:
        who = f"{r.teacher} -> {r.student}" if r.teacher else r.student
        gain = "–" if r.gain is None else f"{r.gain:+.4f}"
        state = "damaged" if r.damaged else r.state.value  # the list says why a run cannot be read, not its state
        print(f"{r.run_id:44} {state:9} {r.what:16} {who:34} {r.seed!s:>4} {r.device:7} "
              f"{r.data_kind:9} {_fmt(r.test_accuracy):>8} {gain:>8}"
              + (f"  {r.point}" if twins else ""))
    if any(r.synthetic for r in rows):
        print("synthetic: generated images, not real radiographs")
    return 0


def run_show(args) -> int:
    store = store_from(args)
    rid = resolve_run_id(store, args.run_id)
    header, status, metrics = store.read_spec_file(rid), store.read_status(rid), store.read_metrics(rid)
    if args.json:
        print_json({"spec": header, "status": status.as_dict(), "metrics": metrics})
        return 0

    print(f"{rid}: {(header or {}).get('describe', '(spec.json unreadable)')}")
    print(f"state: {status.state}" + (f" ({status.reason})" if status.reason else ""))
    for line in api.run_facts(store, rid):
        print(line)
    trained = status.trained_on
    where = f"asked for {status.device}"
    if trained:
        where += (f"; trained on {trained.get('device')}" + (f" ({trained['gpu']})" if trained.get("gpu") else "")
                  + f" on {trained.get('host')}"
                  + (f", {trained['input']} input" if trained.get("input") else "")
                  + (", CUDA graph" if trained.get("cuda_graph") else ""))
    print(f"device: {where}")
    if status.state == RUNNING or not metrics:
        print(live_text(store, rid, status))
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


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int((v - lo) / span * (len(SPARK) - 1) + 0.5)))] for v in values)


def live_text(store, rid: str, status) -> str:
    """A running (or unfinished) run in text: its phase and progress, and its curves so far."""
    prog = status.progress
    lines = []
    if prog and status.state != RUNNING:
        lines.append(f"progress: {prog.get('epochs_done', 0)}/{prog.get('epochs', '?')} epochs done; it resumes "
                     f"after epoch {prog.get('epochs_done', 0)}")
    elif prog:
        step = f"epoch {prog.get('epoch', '?')}/{prog.get('epochs', '?')}"
        if prog.get("steps"):
            step += f", step {prog.get('step', 0)}/{prog['steps']}"
        done = prog.get("global_step", 0) / max(1, prog.get("total_steps", 1))
        eta = f", ETA {int(prog['eta_s']) // 60}m{int(prog['eta_s']) % 60:02d}s" if prog.get("eta_s") else ""
        lines.append(f"progress: {prog.get('phase', 'training')}; {step} ({done:.0%}){eta}")

    rows = ev.epochs(store.events(rid))  # after a resume, the last one of an epoch wins
    if rows:
        key = ev.train_loss_key(rows)
        losses = [e.train[key] for e in rows]
        label = f"train {key}"
        lines.append(f"{'epoch':>5} {label:>10} {'train acc':>9} {'val loss':>9} {'val acc':>8}")
        for e, loss in zip(rows, losses):
            lines.append(f"{e.epoch:>5} {loss:>10.4f} {e.train['accuracy']:>9.4f} "
                         f"{e.val['loss']:>9.4f} {e.val['accuracy']:>8.4f}")
        lines.append(f"val accuracy  {sparkline([e.val['accuracy'] for e in rows])}  "
                     f"(best {max(e.val['accuracy'] for e in rows):.4f})")
        lines.append(f"{label:13} {sparkline(losses, min(losses), max(losses))}")
    elif not prog:
        lines.append("no epoch finished yet" + (f" ({status.reason})" if status.reason else ""))
    return "\n".join(lines)


def run_stop(args) -> int:
    store = store_from(args, write=True)
    ids = selected(store, args)
    if nothing_matched(ids, "stop"):
        return 0
    batch = api.plan_action(store, ids, "stop")
    if not batch.apply:
        raise UsageError("no running or queued run among those selected: nothing to stop")
    for rid in batch.apply:
        print(f"{rid}: {api.stop(store, rid)}")
    return 0


def run_retry(args) -> int:
    store = store_from(args, write=True)
    ids = selected(store, args)
    if nothing_matched(ids, "retry"):
        return 0
    for rid in ids:
        try:
            print(f"{rid}: {api.retry(store, rid, force=args.force)}")
        except UsageError as exc:
            if len(ids) == 1:
                raise
            print(f"{rid}: skipped: {exc}")  # among many, a finished run is simply not retried
    if not store.live_workers():
        print(f"no worker is running: start one with kdengine worker --detach --runs-dir {store.root}")
    return 0


def run_delete(args) -> int:
    store = store_from(args, write=True)
    chosen = selected(store, args)
    if nothing_matched(chosen, "archive" if args.archive else "delete"):
        return 0
    ids = api.plan_action(store, chosen, "archive" if args.archive else "delete").apply
    if not ids:
        if len(chosen) == 1:
            raise UsageError(f"{chosen[0]} is running: stop it first (kdengine runs stop {chosen[0]})")
        raise UsageError("no run selected that is not running (stop a running run first)")
    for rid in ids:
        print(api.what_goes(store, rid))
    verb = "archive" if args.archive else "delete"
    if not args.yes:
        if not sys.stdin.isatty():
            what = ids[0] if len(ids) == 1 else f"{len(ids)} runs"
            raise UsageError(f"{'archiving' if args.archive else 'deleting'} {what} needs a confirmation: pass --yes")
        if input(f"{verb} {'it' if len(ids) == 1 else f'these {len(ids)} runs'}? [y/N] ").strip().lower() \
                not in ("y", "yes"):
            print("nothing done")
            return 0
    for rid in ids:
        where = api.remove(store, rid, archive=args.archive)
        print(f"archived {rid} to {where}" if where else f"deleted {rid}")
    return 0


def run_doctor(args) -> int:
    store = store_from(args, write=args.fix)
    findings, mended = api.doctor(store, mend=args.fix)
    print(api.describe_findings(findings))
    for line in mended:
        print(f"fixed: {line}")
    return 0


def run_table(args) -> int:
    store = store_from(args)
    tables = api.tables(store, metric=args.metric, **stats_of(args))
    if tables.finished == 0:
        raise UsageError(f"no finished runs in {store.root}")
    return write_tables(tables, args)


def run_worker(args) -> int:
    check_loader_workers(args)
    if not args.idle_exit >= 0:
        raise UsageError(f"--idle-exit must be a number of seconds >= 0, got {args.idle_exit}")

    runs_per_gpu = api.parse_runs_per_gpu(args.runs_per_gpu)
    if args.dry_run:
        print(api.worker_plan(store_from(args), args.device, runs_per_gpu))
        return 0
    store = store_from(args, write=True)
    if args.detach or runs_per_gpu != 1:  # several workers: detached processes, each pinned to its GPU
        pids = api.start_workers(store, args.device, runs_per_gpu, fast_path(args), args.idle_exit)
        print(f"started worker pid(s) {pids}" if pids else "a worker is already running")
        return 0
    return api.serve(store, args.device, args.idle_exit, args.once, args.loader_workers, fast_path(args))
