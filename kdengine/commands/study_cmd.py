"""``kdengine study run|status|table|schema``: the thesis's grid from one file, resumable, through the run queue."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from .. import api
from .. import strategy_catalog as catalog
from ..api import Choices, State
from ..errors import UsageError
from ..options import setting_label, value_text
from .common import add_packing_arg, add_runs_dir, add_runtime_args, check_loader_workers, fast_path, runs, store_from


def register(sub) -> None:
    study = sub.add_parser("study", help="run an experiment grid from a TOML file or a preset")
    ssub = study.add_subparsers(dest="study_command", required=True)
    run = ssub.add_parser("run", help="expand a study, queue its runs, and train them (resumes)")
    run.add_argument("study", metavar="FILE|PRESET|STUDY",
                     help=f"a study TOML file, a preset ({' | '.join(Choices.PRESETS)}), or the name of a study in "
                          "the store: what it was last asked again (resumes it)")
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
    plan.add_argument("--correction", choices=Choices.CORRECTIONS, default="holm")
    plan.add_argument("--power", type=float, default=0.8)
    add_runs_dir(plan)
    plan.set_defaults(handler=study_plan)

    schema = ssub.add_parser("schema", help="every key a study file takes, with its type, default and help")
    schema.set_defaults(handler=study_schema)


def add_table_args(p) -> None:
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the tables (without it: the tables as Markdown on the terminal)")

    p.add_argument("--format", choices=Choices.FORMATS, default="csv",
                   help="csv, md (Markdown), parquet, latex (booktabs, for a paper), both (csv and md), all (csv, md, "
                        "parquet and latex)")
    p.add_argument("--metric", choices=tuple(Choices.METRICS), default="accuracy", help="the metric in the tables")
    add_stats_args(p)


def add_stats_args(p) -> None:
    """What the intervals cover and how each table's marks are corrected (README, Statistics)."""
    p.add_argument("--interval", choices=Choices.INTERVALS, default=Choices.INTERVALS[0],
                   help="seeds+images: over the seeds and the test images (default, where per-image predictions "
                        "are stored); seeds: a t-interval over the seeds only")
    p.add_argument("--correction", choices=Choices.CORRECTIONS, default="holm",
                   help="of each table's marks over its tested cells: holm (default), bh (false discovery rate), none")
    p.add_argument("--threshold", default="", metavar="RULE",
                   help="how sensitivity's and specificity's thresholds are chosen on each run's val split: youden "
                        "(Youden's J, as the runs chose) or sensitivity=0.9 (the highest threshold whose val "
                        "sensitivity reaches 0.9); read again from the stored predictions, nothing retrained")


def stats_of(args) -> dict:
    return {"interval": args.interval, "correction": args.correction, "threshold": args.threshold}


def write_tables(store, tables, args) -> int:
    if args.out is None:  # on the terminal
        print(f"# {tables.title}\n")
        for t in tables.tables:
            print(store.markdown(t))
        if tables.one_seed:
            print("note: one seed per cell: no interval can be given")
        return 0
    for path in store.export_tables(tables, Path(args.out), args.format):
        print(f"wrote {path}")
    if tables.one_seed:
        print("note: one seed per cell: no interval can be given")
    return 0


def study_plan(args) -> int:
    plan = store_from(args).plan_seeds(args.study, args.detect, args.family, args.variance, args.images,
                                       args.correction, args.cells, args.power)
    print(plan.text())
    return 0


def _record(store, name: str) -> dict:
    return api.find_study(store, name)

def run_study(args) -> int:
    check_loader_workers(args)
    executor, address = api.Store.parse_executor(args.executor)
    if executor == "ray" and args.detach:
        raise UsageError("--detach queues for local workers; --executor ray runs the study on the cluster: choose one")
    runs_per_gpu = api.Store.parse_runs_per_gpu(args.runs_per_gpu)
    # every check before anything is queued, the data decoded into the cache its runs will read; a dry run
    # checks names only (no torch, no data)
    store = store_from(args, write=not args.dry_run)
    plan = store.plan_study(args.study, args.set, args.data, check=not args.dry_run, decode=not args.dry_run,
                            isolate=False)  # the CLI may import torch: the checks run here
    counts = Counter("+".join(sorted(p.roles, reverse=True)) for p in plan.runs)
    print(f"study {plan.name}: {runs(len(plan.runs))} over {len(plan.study.seeds)} seed(s): "
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    for u in plan.unread:
        print(f"note: {u.key} does not change the {u.strategy} block's {u.method + ' ' if u.method else ''}students "
              "(they do not read it): each trains once per seed, on no point of that axis")
    if args.dry_run:
        store.check_names({s.model for p in plan.runs for s in (p.spec, *p.spec.teachers)})
        print_dry_run(store, plan)
        return 0
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if plan.teacher_differences is not None:
        log("teachers train with [teacher_train]: " + (", ".join(plan.teacher_differences)
                                                       or "the same settings as the students"))
    if args.detach:
        if store.cuda_elsewhere(args.device):
            log(CUDA_ELSEWHERE)
        outcome = store.run_study_detached(plan, args.device, runs_per_gpu, fast_path(args))
        print(f"queued; workers {outcome.workers or 'already running'}; watch with: kdtui --runs-dir {store.root}")
        return 0
    if executor == "ray":
        outcome = store.run_study_on_ray(plan, address, args.device, runs_per_gpu, args.loader_workers,
                                         fast_path(args), log)
    else:
        def announce(i, run, point) -> str:
            return (f"[{i}/{len(plan.runs)}] {run.spec.describe()} (seed {run.spec.seed}"
                    + (f", {point_text(point)}" if point else "") + ")")

        outcome = store.run_study_here(plan, args.device, args.loader_workers, fast_path(args), args.tracker,
                                       progress=not args.quiet, log=log, announce=announce)
    print(f"study {plan.name}: {outcome.finished}/{runs(outcome.total)} finished"
          + (f"; {len(outcome.failed)} failed (run the study again to retry them)" if outcome.failed else ""))
    print(f"tables: kdengine study table {plan.name} --runs-dir {store.root} --out DIR")
    return 1 if outcome.failed else 0


CUDA_ELSEWHERE = ("note: no CUDA device on this machine: runs queued for cuda wait for a CUDA worker on another "
                  "machine (kdengine worker --device cuda --runs-dir THIS_STORE there); a local worker never takes "
                  "them")


def point_text(point: dict) -> str:
    """'T=2, defect threshold=0.3': one point of a sweep, in words."""
    return ", ".join(f"{setting_label(k)}={value_text(v)}" for k, v in point.items())


def axes_text(axes: dict[str, list]) -> str:
    """'T (kd.temperature) 1, 2, 4, 8; defect threshold (kd.defect_acc) 0.3, 0.5': a sweep in a line."""
    return "; ".join(f"{setting_label(k)} ({k}) {', '.join(map(value_text, v))}" for k, v in axes.items())


def print_dry_run(store, plan) -> None:
    """The runs, each with its state (finished ones are marked: they are reused) and, in a sweep, its point; then
    the runs per axis value."""
    known = {r.run_id: r.state for r in store.rows([p.run_id for p in plan.runs])}
    state = {p.run_id: known.get(p.run_id, "new") for p in plan.runs}
    for p in plan.runs:
        mark = "✓" if state[p.run_id] == State.FINISHED else " "
        point = point_text(plan.point(p))
        print(f"{mark} {p.run_id:48} {'+'.join(sorted(p.roles)):18} {state[p.run_id]:8} {p.spec.describe()}"
              + (f"  [{point}]" if point else ""))
    done = sum(state[p.run_id] == State.FINISHED for p in plan.runs)
    if plan.axes:
        print(f"axes: {axes_text(plan.axes)}")
        for key, values in plan.axes.items():
            for v in values:
                mine = plan.runs_at(key, v)
                ready = sum(state[p.run_id] == State.FINISHED for p in mine)
                print(f"  {setting_label(key)}={value_text(v)}: {runs(len(mine))}, {ready} finished")
        shared = [p for p in plan.runs if not plan.point(p)]
        if shared:
            print(f"  on no axis: {runs(len(shared))} ({', '.join(sorted({r for p in shared for r in p.roles}))}) "
                  "serve every value: trained once")
    print(f"{done} of {len(plan.runs)} already finished (✓): they would be reused, not trained again")


def study_status(args) -> int:
    st = store_from(args).study_status(args.study)
    counts = Counter(s.state for s in st.states.values())
    print(f"study {st.name} ({st.source}): {runs(len(st.states))}, seeds {st.seeds}")
    print("  " + ", ".join(f"{counts.get(s, 0)} {s}" for s in Choices.STATES_BY_PROGRESS))
    if st.axes:
        print(f"  axes: {axes_text(st.axes)}")
    for rid, s in st.states.items():
        if s.state != State.FINISHED:
            print(f"  {s.state.value:8} {rid}" + (f"  ({s.reason})" if s.reason else ""))
    return 0


def study_table(args) -> int:
    store = store_from(args)
    tables = store.tables(args.study, args.metric, **stats_of(args))
    if tables.finished == 0:
        raise UsageError(f"study {tables.title} has no finished runs yet")
    return write_tables(store, tables, args)


def study_schema(args) -> int:
    layout, sections = api.Store.study_schema()
    print(layout)
    for section in sections:
        print(f"\n[{section.name}]" + (f"   ({section.note})" if section.note else ""))
        for key, kind, default, help_ in section.rows:
            print(f"  {key:20} {kind:40} default {default:12} {help_}")
    print("\n[[experiments]] strategy (who teaches): one of")
    for s in catalog.CATALOGUE.values():
        print(f"  {s.name:10} {s.description}")
    print("\n[kd] method (how the student learns from its teacher; a study axis like any other key): one of")
    for m in Choices.KD_METHODS.values():
        print(f"  {m.name:10} {m.label} ({m.paper}), reads the teacher's {m.needs}: {m.description}; {m.defaults}")
    for name in Choices.plugin_methods():
        print(f"  {name:10} (a kdstudy.methods entry point)")
    print("  or your own: kd.method_file = \"my_kd.py\" (docs/methods.md)")
    return 0
