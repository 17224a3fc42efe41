"""``kdengine study run|status|table``: the thesis's grid from one file, resumable, through the run queue."""
from __future__ import annotations

import sys
from collections import Counter

from ..errors import KDError, RunFailed, UsageError
from .train_cmd import add_runtime_args


def register(sub) -> None:
    study = sub.add_parser("study", help="run an experiment grid from a TOML file or a preset")
    ssub = study.add_subparsers(dest="study_command", required=True)
    run = ssub.add_parser("run", help="expand a study, queue its runs, and train them (resumes)")
    run.add_argument("study", metavar="FILE|PRESET", help="a study TOML file, or demo | thesis-mura | thesis-mura-abnormality")
    run.add_argument("--data", default=None, metavar="SPEC", help="the data (sets data.spec)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a key, e.g. --set train.epochs=5 --set seeds=[0,1,2]")
    add_runtime_args(run)
    run.add_argument("--dry-run", action="store_true", help="print the runs the study expands to; train nothing")
    run.add_argument("--detach", action="store_true", help="queue the runs and start background workers")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(handler=run_study)

    status = ssub.add_parser("status", help="how far a study is")
    status.add_argument("study", metavar="STUDY")
    status.add_argument("--runs-dir", default=None)
    status.set_defaults(handler=study_status)

    table = ssub.add_parser("table", help="write a study's tables")
    table.add_argument("study", metavar="STUDY")
    table.add_argument("--runs-dir", default=None)
    table.add_argument("--out", required=True, metavar="DIR")
    table.add_argument("--format", choices=["csv", "md", "both"], default="csv")
    table.set_defaults(handler=study_table)


def _store(args):
    from ..paths import runs_dir
    from ..store import RunStore

    return RunStore(runs_dir(args.runs_dir))


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
    from ..data.spec import open_source
    from ..models.factory import check_name
    from ..store.queue import enqueue
    from ..study.expand import expand
    from ..study.registry import save_study
    from ..study.schema import load_study

    study = load_study(args.study, args.set, args.data)
    plan = expand(study)
    for model in sorted({p.spec.model for p in plan}):
        check_name(model)
    open_source(plan[0].spec.data)  # bad data: one line, exit 2, before anything is queued
    store = _store(args)
    counts = Counter("+".join(sorted(p.roles, reverse=True)) for p in plan)
    print(f"study {study.name}: {len(plan)} runs over {len(study.seeds)} seed(s): "
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    if args.dry_run:
        for p in plan:
            print(f"  {p.run_id:48} {'+'.join(sorted(p.roles)):18} {p.spec.describe()}")
        return 0
    save_study(store, study, plan)
    for p in plan:
        enqueue(store, p.spec)
    if args.detach:
        from ..launch import ensure_workers

        pids = ensure_workers(store.root, args.device)
        print(f"queued; workers {pids or 'already running'}; watch with: kdtui --runs-dir {store.root}")
        return 0
    from ..training.device import setup_device
    from ..training.executor import ensure_finished
    from ..training.trackers import make_trackers

    dev = setup_device(args.device, args.workers)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    failed = []
    for i, p in enumerate(plan, start=1):
        state = store.read_status(p.run_id)["state"]
        if state == "finished":
            continue
        log(f"[{i}/{len(plan)}] {p.spec.describe()} (seed {p.spec.seed})")
        try:
            ensure_finished(store, p.spec, dev, trackers=lambda: make_trackers(args.tracker),
                            progress=not args.quiet, worker=f"study:{study.name}", log=log)
        except (RunFailed, KDError) as exc:
            failed.append((p.run_id, str(exc)))
            log(f"failed: {p.run_id}: {exc}")
    done = sum(store.read_status(p.run_id)["state"] == "finished" for p in plan)
    print(f"study {study.name}: {done}/{len(plan)} runs finished"
          + (f"; {len(failed)} failed (run the study again to retry them)" if failed else ""))
    print(f"tables: kdengine study table {study.name} --runs-dir {store.root} --out DIR")
    return 1 if failed else 0


def study_status(args) -> int:
    store = _store(args)
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
    from pathlib import Path

    from ..reports.study_tables import build, export

    store = _store(args)
    tables = build(store, _record(store, args.study))
    if tables.finished == 0:
        raise UsageError(f"study {tables.name} has no finished runs yet")
    for path in export(tables, Path(args.out), args.format):
        print(f"wrote {path}")
    if tables.one_seed:
        print("note: one seed per cell: no interval can be given")
    return 0
