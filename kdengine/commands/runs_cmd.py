"""``kdengine runs list|show|stop``, ``kdengine table`` and ``kdengine worker``."""
from __future__ import annotations

import sys
from dataclasses import asdict

from .. import api
from ..api import Choices, State
from ..errors import UsageError
from .common import (
    add_fast_path_args,
    add_packing_arg,
    add_runs_dir,
    check_loader_workers,
    fast_path,
    print_json,
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
            p.add_argument("--skip-bad", action="store_true",
                           help="a run that failed on unreadable images: queue it with them skipped (a new run, "
                                "with the students waiting for it)")
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
    p.add_argument("--state", action="append", default=[], choices=Choices.STATES,
                   help="only runs in this state (repeatable)")
    p.add_argument("--damaged", action="store_true", help="only runs whose files cannot be read as a run's")
    p.set_defaults(selectors_required=required)


def selected(store, args) -> list[str]:
    """The runs named (an id that does not exist is an error) or matched by the filters (a filter that matches
    nothing is not: a script that retries failures must not fail when nothing failed)."""
    if getattr(args, "selectors_required", False) and not (args.run_ids or args.study or args.state or args.damaged):
        raise UsageError("name runs by id, or select them with --study STUDY, --state STATE and/or --damaged")
    return store.select(args.run_ids, args.study, args.state, args.damaged)


def nothing_matched(ids: list[str], verb: str) -> bool:
    """True (and said) when the filters matched no run: nothing to do, exit 0."""
    if not ids:
        print(f"no run matches: nothing to {verb}")
    return not ids


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def run_list(args) -> int:
    store = store_from(args)
    rows = store.rows(selected(store, args))
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
    rid = store.resolve(args.run_id)
    header, status, detail = store.header(rid), store.status(rid), store.detail(rid)
    metrics = detail.metrics
    if args.json:
        print_json({"spec": header, "status": status.as_dict(), "metrics": metrics})
        return 0

    print(f"{rid}: {(header or {}).get('describe', '(spec.json unreadable)')}")
    print(f"state: {status.state}" + (f" ({status.reason})" if status.reason else ""))
    for line in fact_lines(store.facts(rid)):
        print(line)
    trained = status.trained_on
    where = f"asked for {status.device}"
    if trained:
        where += (f"; trained on {trained.get('device')}" + (f" ({trained['gpu']})" if trained.get("gpu") else "")
                  + f" on {trained.get('host')}"
                  + (f", {trained['input']} input" if trained.get("input") else "")
                  + (", CUDA graph" if trained.get("cuda_graph") else ""))
    print(f"device: {where}")
    if status.state == State.RUNNING or not metrics:
        print(live_text(detail, status))
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


def fact_lines(facts) -> list[str]:
    """A run's facts (``api.RunFacts``) as ``runs show`` says them: data, settings, KD settings, teachers,
    baseline."""
    if facts.damage:
        return [f"damaged: {facts.damage}"]
    lines = [f"data: {facts.data}" + ("  (SYNTHETIC: generated images, not real radiographs)" if facts.synthetic
                                      else "")]
    changed = ", ".join(f"{k}={v}" for k, v in facts.changed.items()) or "the defaults"
    lines.append(f"settings: {changed}; seed {facts.seed}")
    if facts.kd is not None:  # the KD settings its strategy uses (a teacher's threshold is on its teacher's line)
        lines.append("kd: " + ", ".join(f"{k}={v}" for k, v in facts.kd.items()))
    for t in facts.teachers:
        lines.append(f"teacher: {t.run_id} ("
                     + (f"defective: stop at val accuracy {t.defect_acc}; " if t.defect_acc is not None else "")
                     + (str(t.state) if t.state is not None else "not in the store")
                     + (f", test accuracy {t.test_accuracy:.4f}" if t.test_accuracy is not None else "") + ")")
    if (b := facts.baseline) is not None:
        lines.append(f"baseline: {b.run_id} ({b.state if b.state is not None else 'not in the store'}"
                     + (f", test accuracy {b.test_accuracy:.4f}; gain {b.gain:+.4f}" if b.gain is not None else "")
                     + ")")
    return lines


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int((v - lo) / span * (len(SPARK) - 1) + 0.5)))] for v in values)


def live_text(detail, status) -> str:
    """A running (or unfinished) run in text: its phase and progress, and its curves so far."""
    prog = status.progress
    lines = []
    if prog and status.state != State.RUNNING:
        lines.append(f"progress: {prog.get('epochs_done', 0)}/{prog.get('epochs', '?')} epochs done; it resumes "
                     f"after epoch {prog.get('epochs_done', 0)}")
    elif prog:
        step = f"epoch {prog.get('epoch', '?')}/{prog.get('epochs', '?')}"
        if prog.get("steps"):
            step += f", step {prog.get('step', 0)}/{prog['steps']}"
        done = prog.get("global_step", 0) / max(1, prog.get("total_steps", 1))
        eta = f", ETA {int(prog['eta_s']) // 60}m{int(prog['eta_s']) % 60:02d}s" if prog.get("eta_s") else ""
        lines.append(f"progress: {prog.get('phase', 'training')}; {step} ({done:.0%}){eta}")

    c = detail.curves  # after a resume, the last one of an epoch wins
    if c.epochs:
        label = f"train {'ce' if c.train_is_ce else 'loss'}"
        lines.append(f"{'epoch':>5} {label:>10} {'train acc':>9} {'val loss':>9} {'val acc':>8}")
        for epoch, loss, acc, val_loss, val_acc in zip(c.epochs, c.train_loss, c.train_acc, c.val_loss, c.val_acc):
            lines.append(f"{epoch:>5} {loss:>10.4f} {acc:>9.4f} {val_loss:>9.4f} {val_acc:>8.4f}")
        lines.append(f"val accuracy  {sparkline(c.val_acc)}  (best {max(c.val_acc):.4f})")
        lines.append(f"{label:13} {sparkline(c.train_loss, min(c.train_loss), max(c.train_loss))}")
    elif not prog:
        lines.append("no epoch finished yet" + (f" ({status.reason})" if status.reason else ""))
    return "\n".join(lines)


def stopped_text(outcome) -> str:
    """What a stop did (``api.Stopped``), in a few words."""
    if outcome.finishing:
        return "too late to stop: it is in its final evaluation and finishes when that ends"
    if outcome.stopping:
        return "stopping (it stops within a few seconds; its last finished epoch stays resumable)"
    return outcome.reason or str(outcome.now)


def retried_text(outcome) -> str:
    """What a retry did (``api.Retried``), in a few words."""
    if not outcome.queued:
        return f"already {outcome.was}"
    if outcome.as_run:
        return (f"queued {outcome.as_run} in its place, with unreadable images skipped (a new run: its images "
                "differ)" + "".join(f"; its student {old} moved to {new}" for old, new in outcome.students))
    return ("queued again; it resumes from its last finished epoch"
            + ("; it failed on an unreadable image: unless the file was mended it fails again (--skip-bad retries "
               "it with such images skipped)" if outcome.unreadable else ""))


def removal_text(removal) -> str:
    """What deleting a run takes with it (``api.Removal``)."""
    users = removal.dependents
    text = (f"{removal.run_id}: {removal.bytes / 2**20:.1f} MB on disk, "
            f"{removal.checkpoint_bytes / 2**20:.1f} MB of it checkpoints")
    if users:
        text += (f"; {len(users)} run(s) use it as a teacher and could not resume or be re-evaluated without it: "
                 + ", ".join(users[:5]) + (" ..." if len(users) > 5 else ""))
    return text


def run_stop(args) -> int:
    store = store_from(args, write=True)
    ids = selected(store, args)
    if nothing_matched(ids, "stop"):
        return 0
    batch = store.plan_action(ids, "stop")
    if not batch.apply:
        raise UsageError("no running or queued run among those selected: nothing to stop")
    for rid in batch.apply:
        print(f"{rid}: {stopped_text(store.stop(rid))}")
    return 0


def run_retry(args) -> int:
    store = store_from(args, write=True)
    ids = selected(store, args)
    if nothing_matched(ids, "retry"):
        return 0
    for rid in ids:
        try:
            print(f"{rid}: {retried_text(store.retry(rid, force=args.force, skip_bad=args.skip_bad))}")
        except UsageError as exc:
            if len(ids) == 1:
                raise
            print(f"{rid}: skipped: {exc}")  # among many, a finished run is simply not retried
    if not store.workers():
        print(f"no worker is running: start one with kdengine worker --detach --runs-dir {store.root}")
    return 0


def run_delete(args) -> int:
    store = store_from(args, write=True)
    chosen = selected(store, args)
    if nothing_matched(chosen, "archive" if args.archive else "delete"):
        return 0
    ids = store.plan_action(chosen, "archive" if args.archive else "delete").apply
    if not ids:
        if len(chosen) == 1:
            raise UsageError(f"{chosen[0]} is running: stop it first (kdengine runs stop {chosen[0]})")
        raise UsageError("no run selected that is not running (stop a running run first)")
    for rid in ids:
        print(removal_text(store.what_goes(rid)))
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
        where = store.remove(rid, archive=args.archive).archived_to
        print(f"archived {rid} to {where}" if where else f"deleted {rid}")
    return 0


def run_doctor(args) -> int:
    store = store_from(args, write=args.fix)
    findings, mended = store.doctor(mend=args.fix)
    if not findings:
        print("the store is healthy")
    width = max((len(f.where) for f in findings), default=0)
    for f in findings:
        print(f"{f.where:{width}}  {f.problem}  [{f.fix}]")
    for line in mended:
        print(f"fixed: {line}")
    return 0


def run_table(args) -> int:
    store = store_from(args)
    tables = store.tables(metric=args.metric, **stats_of(args))
    if tables.finished == 0:
        raise UsageError(f"no finished runs in {store.root}")
    return write_tables(store, tables, args)


def run_worker(args) -> int:
    check_loader_workers(args)
    if not args.idle_exit >= 0:
        raise UsageError(f"--idle-exit must be a number of seconds >= 0, got {args.idle_exit}")

    runs_per_gpu = api.Store.parse_runs_per_gpu(args.runs_per_gpu)
    if args.dry_run:
        print(plan_text(store_from(args).worker_plan(args.device, runs_per_gpu)))
        return 0
    store = store_from(args, write=True)
    if args.detach or runs_per_gpu != 1:  # several workers: detached processes, each pinned to its GPU
        pids = store.start_workers(args.device, runs_per_gpu, fast_path(args), args.idle_exit)
        print(f"started worker pid(s) {pids}" if pids else "a worker is already running")
        return 0
    return store.work_here(args.device, args.idle_exit, args.once, args.loader_workers, fast_path(args))


def plan_text(plan) -> str:
    """What ``--runs-per-gpu`` would start (``api.WorkerPlan``): each GPU, its workers and why, each queued
    shape's memory need."""
    if not plan.gpu_visible:
        return ("no GPU visible (nvidia-smi): one CPU worker" if plan.device != "cuda" else
                "no GPU visible (nvidia-smi): a CUDA worker would have nothing to run on")
    lines = []
    for p in plan.gpus:
        lines.append(f"GPU {p.index} ({p.name}, {p.memory_total_mib / 1024:.0f} GiB): {p.workers} worker(s): {p.why}")
        for key, value, source, fit in p.shapes:
            size = f"{value / 2**30:.1f} GiB ({source})" if value else "unknown (measured after its first epoch)"
            lines.append(f"  {key:44} needs {size}" + (f"; {fit} fit at once" if fit else ""))
    return "\n".join(lines)
