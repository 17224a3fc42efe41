"""``kdengine study run|status|table|schema``: the thesis's grid from one file, resumable, through the run queue."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from .. import api
from .. import method_catalog as methods
from .. import strategy_catalog as catalog
from ..api import CORRECTIONS, FINISHED, FORMATS, INTERVALS, METRICS, PRESETS, STATES_BY_PROGRESS, axes
from ..errors import UsageError
from .common import add_packing_arg, add_runs_dir, add_runtime_args, check_loader_workers, fast_path, runs, store_from


def register(sub) -> None:
    study = sub.add_parser("study", help="run an experiment grid from a TOML file or a preset")
    ssub = study.add_subparsers(dest="study_command", required=True)
    run = ssub.add_parser("run", help="expand a study, queue its runs, and train them (resumes)")
    run.add_argument("study", metavar="FILE|PRESET", help=f"a study TOML file, or a preset: {' | '.join(PRESETS)}")
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

    plan = ssub.add_parser("plan", help="how many seeds (and test images) a gain needs at 80%% power, from a pilot")
    plan.add_argument("study", metavar="STUDY", help="a study in the store (its finished runs are the pilot), or a "
                                                     "study file or preset with --variance")
    plan.add_argument("--detect", type=float, required=True, metavar="GAIN", help="the gain to detect, e.g. 0.02")
    plan.add_argument("--family", default=None, help="the family (default: the study's primary, else its first "
                                                     "strategy's students)")
    plan.add_argument("--variance", default=None, metavar="seed=V,image=V,residual=V",
                      help="a stated variance instead of the pilot's (one number: between seeds, the test set fixed)")
    plan.add_argument("--images", type=int, default=None, metavar="N", help="test images (default: the pilot's)")
    plan.add_argument("--cells", type=int, default=None, metavar="M", help="the family's cells (default: the study's)")
    plan.add_argument("--correction", choices=CORRECTIONS, default="holm")
    plan.add_argument("--power", type=float, default=0.8)
    add_runs_dir(plan)
    plan.set_defaults(handler=study_plan)

    schema = ssub.add_parser("schema", help="every key a study file takes, with its type, default and help")
    schema.set_defaults(handler=study_schema)


def add_table_args(p) -> None:
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the tables (without it: the tables as Markdown on the terminal)")

    p.add_argument("--format", choices=FORMATS, default="csv",
                   help="csv, md (Markdown), parquet, latex (booktabs, for a paper), both (csv and md), all (csv, md, "
                        "parquet and latex)")
    p.add_argument("--metric", choices=tuple(METRICS), default="accuracy", help="the metric in the tables")
    add_stats_args(p)


def add_stats_args(p) -> None:
    """What the intervals cover and how each table's marks are corrected (README, Statistics)."""
    p.add_argument("--interval", choices=INTERVALS, default=INTERVALS[0],
                   help="seeds+images: over the seeds and the test images (default, where per-image predictions "
                        "are stored); seeds: a t-interval over the seeds only")
    p.add_argument("--correction", choices=CORRECTIONS, default="holm",
                   help="of each table's marks over its tested cells: holm (default), bh (false discovery rate), none")


def stats_of(args) -> dict:
    return {"interval": args.interval, "correction": args.correction}


def write_tables(tables, args) -> int:
    if args.out is None:  # on the terminal
        print(f"# {tables.title}\n")
        for t in tables.tables:
            print(api.table_markdown(t))
        if tables.one_seed:
            print("note: one seed per cell: no interval can be given")
        return 0
    for path in api.export_tables(tables, Path(args.out), args.format):
        print(f"wrote {path}")
    if tables.one_seed:
        print("note: one seed per cell: no interval can be given")
    return 0


def study_plan(args) -> int:
    plan = api.plan_seeds(store_from(args), args.study, args.detect, args.family, args.variance, args.images,
                          args.correction, args.cells, args.power)
    print(plan.text())
    return 0


def _record(store, name: str) -> dict:
    return api.find_study(store, name)


def run_study(args) -> int:
    check_loader_workers(args)
    executor, address = api.parse_executor(args.executor)
    if executor == "ray" and args.detach:
        raise UsageError("--detach queues for local workers; --executor ray runs the study on the cluster: choose one")
    runs_per_gpu = api.parse_runs_per_gpu(args.runs_per_gpu)
    # every check before anything is queued, the data decoded into the cache its runs will read; a dry run
    # checks names only (no torch, no data)
    study, plan = api.plan_study(args.study, args.set, args.data, check=not args.dry_run, decode=not args.dry_run,
                                  isolate=False)  # the CLI may import torch: the checks run here
    store = store_from(args, write=not args.dry_run)
    counts = Counter("+".join(sorted(p.roles, reverse=True)) for p in plan)
    print(f"study {study.name}: {runs(len(plan))} over {len(study.seeds)} seed(s): "
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    for note in api.unread_axes(study, plan):
        print(f"note: {note}")
    if args.dry_run:
        api.check_names({s.model for p in plan for s in (p.spec, *p.spec.teachers)})
        print_dry_run(store, study, plan)
        return 0
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if study.teacher_train is not None:
        log("teachers train with [teacher_train]: " + (", ".join(
            api.differences(study.train, study.teacher_train)) or "the same settings as the students"))
    if args.detach:
        if note := api.cuda_elsewhere(args.device):
            log(note)
        outcome = api.run_study_detached(store, study, plan, args.device, runs_per_gpu, fast_path(args))
        print(f"queued; workers {outcome.workers or 'already running'}; watch with: kdtui --runs-dir {store.root}")
        return 0
    if executor == "ray":
        outcome = api.run_study_on_ray(store, study, plan, address, args.device, runs_per_gpu, args.loader_workers,
                                       fast_path(args), log)
    else:
        outcome = api.run_study_here(store, study, plan, args.device, args.loader_workers, fast_path(args),
                                     args.tracker, progress=not args.quiet, log=log)
    print(f"study {study.name}: {outcome.finished}/{runs(outcome.total)} finished"
          + (f"; {len(outcome.failed)} failed (run the study again to retry them)" if outcome.failed else ""))
    print(f"tables: kdengine study table {study.name} --runs-dir {store.root} --out DIR")
    return 1 if outcome.failed else 0


def print_dry_run(store, study, plan) -> None:
    """The runs, each with its state (finished ones are marked: they are reused) and, in a sweep, its point; then
    the runs per axis value."""
    state = {p.run_id: store.read_status(p.run_id).state if store.exists(p.run_id) else "new" for p in plan}
    keys = [a.key for a in study.axes]
    for p in plan:
        mark = "✓" if state[p.run_id] == FINISHED else " "
        point = axes.point_text(axes.run_point(p.spec, keys))
        print(f"{mark} {p.run_id:48} {'+'.join(sorted(p.roles)):18} {state[p.run_id]:8} {p.spec.describe()}"
              + (f"  [{point}]" if point else ""))
    done = sum(state[p.run_id] == FINISHED for p in plan)
    if study.axes:
        print(f"axes: {axes.describe({a.key: a.values for a in study.axes})}")
        for a in study.axes:
            for v in a.values:
                mine = [p for p in plan if axes.norm(axes.axis_value(p.spec, a.key)) == axes.norm(v)]
                ready = sum(state[p.run_id] == FINISHED for p in mine)
                print(f"  {axes.label(a.key)}={axes.value_text(v)}: {runs(len(mine))}, {ready} finished")
        shared = [p for p in plan if not axes.run_point(p.spec, keys)]
        if shared:
            print(f"  on no axis: {runs(len(shared))} ({', '.join(sorted({r for p in shared for r in p.roles}))}) "
                  "serve every value: trained once")
    print(f"{done} of {len(plan)} already finished (✓): they would be reused, not trained again")


def study_status(args) -> int:
    st = api.study_status(store_from(args), args.study)
    counts = Counter(s.state for s in st.states.values())
    print(f"study {st.name} ({st.source}): {runs(len(st.states))}, seeds {st.seeds}")
    print("  " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATES_BY_PROGRESS))
    if st.axes:
        print(f"  axes: {axes.describe(st.axes)}")
    for rid, s in st.states.items():
        if s.state != FINISHED:
            print(f"  {s.state.value:8} {rid}" + (f"  ({s.reason})" if s.reason else ""))
    return 0


def study_table(args) -> int:
    tables = api.tables(store_from(args), args.study, args.metric, **stats_of(args))
    if tables.finished == 0:
        raise UsageError(f"study {tables.title} has no finished runs yet")
    return write_tables(tables, args)


def study_schema(args) -> int:
    layout, sections = api.study_schema()
    print(layout)
    for section in sections:
        print(f"\n[{section.name}]" + (f"   ({section.note})" if section.note else ""))
        for key, kind, default, help_ in section.rows:
            print(f"  {key:20} {kind:40} default {default:12} {help_}")
    print("\n[[experiments]] strategy (who teaches): one of")
    for s in catalog.CATALOGUE.values():
        print(f"  {s.name:10} {s.description}")
    print("\n[kd] method (how the student learns from its teacher; a study axis like any other key): one of")
    for m in methods.CATALOGUE.values():
        print(f"  {m.name:10} {m.label} ({m.paper}), reads the teacher's {m.needs}: {m.description}; {m.defaults}")
    for name in methods.plugin_names():
        print(f"  {name:10} (a kdstudy.methods entry point)")
    print("  or your own: kd.method_file = \"my_kd.py\" (docs/methods.md)")
    return 0
