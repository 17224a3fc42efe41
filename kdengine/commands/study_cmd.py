"""``kdengine study run|status|table|schema``: the thesis's grid from one file, resumable, through the run queue."""
from __future__ import annotations

import sys
from collections import Counter

from ..errors import KDError, RunFailed, UsageError
from .common import add_packing_arg, add_runs_dir, add_runtime_args, check_loader_workers, fast_path, store_from


def register(sub) -> None:
    study = sub.add_parser("study", help="run an experiment grid from a TOML file or a preset")
    ssub = study.add_subparsers(dest="study_command", required=True)
    run = ssub.add_parser("run", help="expand a study, queue its runs, and train them (resumes)")
    run.add_argument("study", metavar="FILE|PRESET", help="a study TOML file, or demo | thesis-mura | thesis-mura-abnormality")
    run.add_argument("--data", default=None, metavar="SOURCE", help="the data (sets data.source)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a key, e.g. --set train.epochs=5 --set seeds=[0,1,2]")
    add_runtime_args(run)
    run.add_argument("--dry-run", action="store_true", help="print the runs the study expands to; train nothing")
    run.add_argument("--detach", action="store_true", help="queue the runs and start background workers")
    run.add_argument("--executor", default="local", metavar="local|ray[=ADDRESS]",
                     help="where the runs train: this process (local), or a Ray cluster, one task per run "
                          "(ray: a new local cluster; ray=ADDRESS: an existing one). Default: local")
    add_packing_arg(run)
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(handler=run_study)

    status = ssub.add_parser("status", help="how far a study is")
    status.add_argument("study", metavar="STUDY")
    add_runs_dir(status)
    status.set_defaults(handler=study_status)

    table = ssub.add_parser("table", help="write a study's tables")
    table.add_argument("study", metavar="STUDY")
    add_runs_dir(table)
    add_table_args(table)
    table.set_defaults(handler=study_table)

    schema = ssub.add_parser("schema", help="every key a study file takes, with its type, default and help")
    schema.set_defaults(handler=study_schema)


def add_table_args(p) -> None:
    from ..reports.tables import METRICS

    p.add_argument("--out", required=True, metavar="DIR", help="folder for the tables")
    p.add_argument("--format", choices=["csv", "md", "both"], default="csv")
    p.add_argument("--metric", choices=tuple(METRICS), default="accuracy", help="the metric in the tables")


def write_tables(tables, args) -> int:
    from pathlib import Path

    from ..reports.tables import export

    for path in export(tables, Path(args.out), args.format):
        print(f"wrote {path}")
    if tables.one_seed:
        print("note: one seed per cell: no interval can be given")
    return 0


def _record(store, name: str) -> dict:
    from ..study.registry import list_studies, load_study_record

    record = load_study_record(store, name)
    if record is None:
        from pathlib import Path

        from ..study.schema import PRESETS, load_raw

        if Path(name).is_file() or name in PRESETS:  # a file or preset: its study's name
            raw, default, _ = load_raw(name)
            record = load_study_record(store, str(raw.get("name") or default))
    if record is None:
        known = ", ".join(list_studies(store)) or "none yet"
        raise UsageError(f"no study '{name}' in {store.root} (studies: {known})")
    return record


def run_study(args) -> int:
    from ..preflight import preflight
    from ..runspec import differences
    from ..store.queue import enqueue
    from ..study.expand import expand
    from ..study.registry import save_study
    from ..study.schema import load_study

    from ..ray_executor import parse_executor

    check_loader_workers(args)
    executor, address = parse_executor(args.executor)
    if executor == "ray" and args.detach:
        raise UsageError("--detach queues for local workers; --executor ray runs the study on the cluster: choose one")
    study = load_study(args.study, args.set, args.data)
    plan = expand(study)
    preflight([p.spec for p in plan])  # models, sizes, weights, data: one line, exit 2, before anything is queued
    store = store_from(args, write=not args.dry_run)
    counts = Counter("+".join(sorted(p.roles, reverse=True)) for p in plan)
    print(f"study {study.name}: {len(plan)} runs over {len(study.seeds)} seed(s): "
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    if args.dry_run:
        for p in plan:
            print(f"  {p.run_id:48} {'+'.join(sorted(p.roles)):18} {p.spec.describe()}")
        return 0
    save_study(store, study, plan)
    for p in plan:  # asking for the study again queues its failed or stopped runs again, once
        enqueue(store, p.spec, device=args.device)
    if study.teacher_train is not None:
        log_notes = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
        log_notes("teachers train with [teacher_train]: " + (", ".join(
            differences(study.train, study.teacher_train)) or "the same settings as the students"))
    if args.detach:
        from ..launch import ensure_workers

        from ..packing import parse_runs_per_gpu

        pids = ensure_workers(store.root, args.device, runs_per_gpu=parse_runs_per_gpu(args.runs_per_gpu),
                              fast=fast_path(args))
        print(f"queued; workers {pids or 'already running'}; watch with: kdtui --runs-dir {store.root}")
        return 0
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if executor == "ray":
        from ..packing import parse_runs_per_gpu
        from ..ray_executor import run_on_ray

        todo = [p for p in plan if store.read_status(p.run_id)["state"] != "finished"]
        failed = run_on_ray(store.root, todo, address, args.device, parse_runs_per_gpu(args.runs_per_gpu),
                            args.loader_workers, fast_path(args), log)
        return _summary(store, study, plan, failed, args.device, log)
    from ..training.device import setup_device
    from ..training.executor import ensure_finished
    from ..training.trackers import make_trackers

    dev = setup_device(args.device, args.loader_workers, **fast_path(args))
    failed = []
    for i, p in enumerate(plan, start=1):
        state = store.read_status(p.run_id)["state"]
        if state == "finished":
            continue
        log(f"[{i}/{len(plan)}] {p.spec.describe()} (seed {p.spec.seed})")
        try:
            ensure_finished(store, p.spec, dev, trackers=lambda: make_trackers(args.tracker),
                            progress=not args.quiet, worker=f"study:{study.name}", log=log, requeue=False)
        except (RunFailed, KDError) as exc:
            failed.append((p.run_id, str(exc)))
            log(f"failed: {p.run_id}: {exc}")
    return _summary(store, study, plan, failed, args.device, log)


def _summary(store, study, plan, failed, device: str = "auto", log=print) -> int:
    done = sum(store.read_status(p.run_id)["state"] == "finished" for p in plan)
    if study.shift is not None and done:
        from ..shift.corruptions import parse_severities, parse_shifts
        from ..shift.evaluate import evaluate_run
        from ..training.device import setup_device

        sh = study.shift
        dev = setup_device(device)
        for p in plan:
            if store.read_status(p.run_id)["state"] == "finished":
                evaluate_run(store, p.run_id, parse_shifts(sh.shifts), parse_severities(sh.severities), sh.seed,
                             sh.external, dev, log=log)
    print(f"study {study.name}: {done}/{len(plan)} runs finished"
          + (f"; {len(failed)} failed (run the study again to retry them)" if failed else ""))
    print(f"tables: kdengine study table {study.name} --runs-dir {store.root} --out DIR")
    return 1 if failed else 0


def study_status(args) -> int:
    store = store_from(args)
    record = _record(store, args.study)
    states = {p["run_id"]: store.read_status(p["run_id"]) for p in record["runs"]}
    counts = Counter(s["state"] for s in states.values())
    print(f"study {record['name']} ({record['source']}): {len(states)} runs, seeds {record['seeds']}")
    print("  " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("finished", "running", "queued", "failed", "stopped")))
    for p in record["runs"]:
        s = states[p["run_id"]]
        if s["state"] != "finished":
            print(f"  {s['state']:8} {p['run_id']}" + (f"  ({s['reason']})" if s.get("reason") else ""))
    return 0


def study_table(args) -> int:
    from ..study.registry import study_tables

    store = store_from(args)
    tables = study_tables(store, _record(store, args.study)["name"], args.metric)
    if tables.finished == 0:
        raise UsageError(f"study {tables.title} has no finished runs yet")
    return write_tables(tables, args)


def study_schema(args) -> int:
    from .. import strategy_catalog as catalog
    from ..options import schema_rows
    from ..runspec import CONFIGS
    from ..study.schema import __doc__ as layout

    print(layout.split("The sections")[0].rstrip())
    from ..shift.corruptions import ShiftConfig

    for section, cls in (("data", CONFIGS["data"]), ("train", CONFIGS["train"]), ("teacher_train", CONFIGS["train"]),
                         ("kd", CONFIGS["kd"]), ("shift", ShiftConfig)):
        print(f"\n[{section}]" + ("   (each key optional; unset keys follow [train])" if section == "teacher_train" else ""))
        if section == "teacher_train":
            continue
        for key, kind, default, help_ in schema_rows(cls):
            print(f"  {key:20} {kind:40} default {default:12} {help_}")
    print("\n[[experiments]] strategy: one of")
    for s in catalog.CATALOGUE.values():
        print(f"  {s.name:10} {s.description}")
    return 0
