"""``kdengine runs list|show|stop``, ``kdengine table`` and ``kdengine worker``."""
from __future__ import annotations

from ..errors import UsageError
from ..store.runstore import device_of
from .common import add_packing_arg, add_runs_dir, print_json, resolve_run_id, store_from


def register(sub) -> None:
    from .study_cmd import add_table_args

    runs = sub.add_parser("runs", help="list, show, stop, retry or check runs in the store")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    for name, fn, helptext in (("list", run_list, "one line per run"), ("show", run_show, "one run in full"),
                               ("stop", run_stop, "ask a run to stop"),
                               ("retry", run_retry, "queue a failed, stopped or interrupted run again (it resumes)"),
                               ("delete", run_delete, "delete a run (or --archive it) with its checkpoints")):
        p = rsub.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("run_id")
        add_runs_dir(p)
        if name in ("list", "show"):
            p.add_argument("--json", action="store_true")
        if name == "retry":
            p.add_argument("--force", action="store_true",
                           help="also a finished run whose results are damaged (trains it again)")
        if name == "delete":
            p.add_argument("--archive", action="store_true", help="move it to <runs>/.archive/ instead")
            p.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
        p.set_defaults(handler=fn)
    doctor = rsub.add_parser("doctor", help="find damaged runs, temp files, orphans; --fix mends what is safe")
    add_runs_dir(doctor)
    doctor.add_argument("--fix", action="store_true", help="remove temp files and stale records, requeue "
                        "interrupted runs, rewrite unreadable status files")
    doctor.set_defaults(handler=run_doctor)

    pre = sub.add_parser("preflight", help="check run specs (JSON on stdin) before queueing: the TUI's launch uses it")
    pre.set_defaults(handler=run_preflight)

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
    from .common import add_fast_path_args

    add_fast_path_args(worker)
    worker.add_argument("--detach", action="store_true", help="start detached worker(s) and return")
    worker.add_argument("--dry-run", action="store_true",
                        help="print the plan (GPUs, workers per GPU and why, each queued shape's memory); start nothing")
    add_packing_arg(worker)
    worker.set_defaults(handler=run_worker)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def twin_settings(records) -> dict[str, str]:
    """For runs that share what, teacher, student and seed with another run: what sets them apart
    (``train.epochs=2``); the others need no note."""
    from collections import defaultdict

    from ..reports.collect import differing_keys, flat_settings

    alike = defaultdict(list)
    for r in records:
        if r.spec is not None:
            alike[(r.label, r.teacher_label, r.model, r.seed)].append(r)
    out = {}
    for group in alike.values():
        if len(group) < 2:
            continue
        flats = {r.run_id: flat_settings(r.spec) for r in group}
        keys = differing_keys(list(flats.values()))
        for rid, flat in flats.items():
            out[rid] = ", ".join(f"{k}={flat.get(k)}" for k in keys)
    return out


def run_list(args) -> int:
    from ..reports.collect import collect

    records = collect(store_from(args))
    if args.json:
        print_json([{"run_id": r.run_id, "state": r.state, "device": device_of(r.status),
                     "strategy": r.strategy, "regime": r.regime,
                     "teacher": r.teacher_label, "student": r.model, "seed": r.seed,
                     "test_accuracy": r.accuracy("test"), "reason": r.damage or r.status.get("reason")}
                    for r in records])
        return 0
    if not records:
        print("no runs yet")
        return 0
    twins = twin_settings(records)
    print(f"{'run':44} {'state':9} {'what':10} {'teacher -> student':34} {'device':7} {'test acc':>8}"
          + ("  settings" if twins else ""))
    for r in records:
        who = f"{r.teacher_label} -> {r.model}" if r.teacher_label else r.model
        print(f"{r.run_id:44} {r.state:9} {r.label:10} {who:34} {device_of(r.status):7} {_fmt(r.accuracy('test')):>8}"
              + (f"  {twins.get(r.run_id, '')}" if twins else ""))
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
    trained = status.get("trained_on") or {}
    where = f"asked for {status.get('device', 'auto')}"
    if trained:
        where += (f"; trained on {trained.get('device')}" + (f" ({trained['gpu']})" if trained.get("gpu") else "")
                  + f" on {trained.get('host')}"
                  + (f", {trained['input']} input" if trained.get("input") else "")
                  + (", CUDA graph" if trained.get("cuda_graph") else ""))
    print(f"device: {where}")
    if status["state"] == "running" or not metrics:
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


def live_text(store, rid: str, status: dict) -> str:
    """A running (or unfinished) run in text: its phase and progress, and its curves so far."""
    prog = status.get("progress") or {}
    lines = []
    if prog:
        step = f"epoch {prog.get('epoch', '?')}/{prog.get('epochs', '?')}"
        if prog.get("steps"):
            step += f", step {prog.get('step', 0)}/{prog['steps']}"
        done = prog.get("global_step", 0) / max(1, prog.get("total_steps", 1))
        eta = f", ETA {int(prog['eta_s']) // 60}m{int(prog['eta_s']) % 60:02d}s" if prog.get("eta_s") else ""
        lines.append(f"progress: {prog.get('phase', 'training')}; {step} ({done:.0%}){eta}")
    epochs = {}
    for e in store.read_events(rid)[0]:
        if e.get("type") == "epoch":
            epochs[e["epoch"]] = e  # after a resume, the last one wins
    if epochs:
        rows = [epochs[k] for k in sorted(epochs)]
        lines.append(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8}")
        for e in rows:
            lines.append(f"{e['epoch']:>5} {e['train']['loss']:>10.4f} {e['train']['accuracy']:>9.4f} "
                         f"{e['val']['loss']:>9.4f} {e['val']['accuracy']:>8.4f}")
        lines.append(f"val accuracy  {sparkline([e['val']['accuracy'] for e in rows])}  "
                     f"(best {max(e['val']['accuracy'] for e in rows):.4f})")
        losses = [e["train"]["loss"] for e in rows]
        lines.append(f"train loss    {sparkline(losses, min(losses), max(losses))}")
    elif not prog:
        lines.append("no epoch finished yet" + (f" ({status['reason']})" if status.get("reason") else ""))
    return "\n".join(lines)


def run_stop(args) -> int:
    store = store_from(args, write=True)
    rid = resolve_run_id(store, args.run_id)
    print(f"{rid}: {store.request_stop(rid)}")
    return 0


def run_retry(args) -> int:
    from ..reports.collect import read_record
    from ..store.runstore import METRICS

    store = store_from(args, write=True)
    rid = resolve_run_id(store, args.run_id)
    record = read_record(store, rid)
    state = record.state
    if state == "damaged" and record.spec is None:
        raise UsageError(f"{rid} cannot be retried: {record.damage} (kdengine runs doctor)")
    if state in ("queued", "running"):
        print(f"{rid}: already {state}")
        return 0
    if state == "finished" and not record.damage:
        raise UsageError(f"{rid} is finished; its results stay (kdengine runs show {rid})")
    if state in ("finished", "damaged"):
        if not args.force:
            raise UsageError(f"{rid} is finished but {record.damage}; --force trains it again")
        (store.run_dir(rid) / METRICS).unlink(missing_ok=True)
        store.finish(rid, "failed", f"retried with --force: {record.damage}")
    if not store.requeue(rid):
        raise UsageError(f"{rid} is {store.read_status(rid)['state']}: nothing to retry")
    print(f"{rid}: queued again; it resumes from its last finished epoch. Start a worker with: "
          f"kdengine worker --detach --runs-dir {store.root}")
    return 0


def run_delete(args) -> int:
    import sys

    store = store_from(args, write=True)
    from ..store.runstore import removal_summary

    rid = resolve_run_id(store, args.run_id)
    print(removal_summary(store, rid))
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"{'archiving' if args.archive else 'deleting'} {rid} needs a confirmation: pass --yes")
        if input(f"{'archive' if args.archive else 'delete'} it? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing done")
            return 0
    where = store.remove(rid, archive=args.archive)
    print(f"archived to {where}" if where else f"deleted {rid}")
    return 0


def run_doctor(args) -> int:
    from ..store.doctor import describe, examine, fix

    store = store_from(args, write=args.fix)
    findings = examine(store)
    print(describe(findings))
    if args.fix and findings:
        for line in fix(store, findings):
            print(f"fixed: {line}")
    return 0


def run_preflight(args) -> int:
    import json
    import sys

    from ..preflight import preflight
    from ..runspec import RunSpec

    try:
        items = json.load(sys.stdin)
    except (ValueError, OSError) as exc:
        raise UsageError(f"preflight reads a JSON list of run specs on stdin: {exc}") from None
    preflight([RunSpec.from_dict(d) for d in (items if isinstance(items, list) else [items])], check_data=False)
    print("ok")
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


def worker_plan(store, device: str, runs_per_gpu) -> int:
    """``kdengine worker --dry-run``: what ``--runs-per-gpu`` would start, with every queued shape's memory need
    (measured, or estimated on the meta device now: no GPU needed, nothing written)."""
    from ..launch import visible_gpus
    from ..packing import _table, describe_plan, plan_workers, queued_keys

    gpus = visible_gpus() if device in ("auto", "cuda") else []
    if not gpus:
        print("no GPU visible (nvidia-smi): one CPU worker" if device != "cuda" else
              "no GPU visible (nvidia-smi): a CUDA worker would have nothing to run on")
        return 0
    table = _table(store)
    from ..training.memory import estimate_peak

    for key, ids in queued_keys(store).items():
        if not table.get(key, {}).get("peak") and not table.get(key, {}).get("estimate"):
            table[key] = {**table.get(key, {}), "estimate": estimate_peak(store.load_spec(ids[0]))}
    print(describe_plan(plan_workers(store, runs_per_gpu, gpus, table=table)))
    return 0


def run_worker(args) -> int:
    from ..launch import ensure_workers
    from ..worker import Worker
    from .common import check_loader_workers, fast_path

    check_loader_workers(args)
    if not args.idle_exit >= 0:
        raise UsageError(f"--idle-exit must be a number of seconds >= 0, got {args.idle_exit}")
    from ..packing import parse_runs_per_gpu

    runs_per_gpu = parse_runs_per_gpu(args.runs_per_gpu)
    if args.dry_run:
        return worker_plan(store_from(args), args.device, runs_per_gpu)
    store = store_from(args, write=True)
    if args.detach or runs_per_gpu != 1:  # several workers: detached processes, each pinned to its GPU
        pids = ensure_workers(store.root, args.device, args.idle_exit, runs_per_gpu, fast=fast_path(args))
        print(f"started worker pid(s) {pids}" if pids else "a worker is already running")
        return 0
    return Worker(store, args.device, args.idle_exit, args.once, args.loader_workers, fast=fast_path(args)).run()
