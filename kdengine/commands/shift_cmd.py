"""``kdengine shift RUN|STUDY``: every finished run's best checkpoint under acquisition shift, and the tables."""
from __future__ import annotations

import sys

from ..errors import UsageError
from .common import add_runs_dir, print_json, resolve_run_id, store_from


def register(sub) -> None:
    from ..shift.corruptions import SHIFTS

    p = sub.add_parser("shift", help="evaluate finished runs under acquisition shift (and on external data)")
    p.add_argument("target", metavar="RUN|STUDY", help="a run id (or part of one), or a study (name, file or preset)")
    p.add_argument("--shifts", default="all", metavar="LIST", help="comma-separated: " + ", ".join(SHIFTS))
    p.add_argument("--severities", default="1..5", metavar="1..5", help="1..5, 1,3,5 or one severity")
    p.add_argument("--external", default=None, metavar="SOURCE",
                   help="also evaluate on another dataset with the same classes (another site's images)")
    p.add_argument("--seed", type=int, default=0, help="the shifts' seed (default: 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="default: the run's, at least 64")
    p.add_argument("--force", action="store_true", help="evaluate again even when the result is stored")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the robustness tables go (default: <runs>/reports/<target>-robustness)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_runs_dir(p)
    p.set_defaults(handler=run_shift)


def targets(store, target: str) -> tuple[str, list[str]]:
    """(a name for the output, the run ids): a study's finished runs, or one run."""
    from ..study.registry import list_studies, load_study_record

    name = target
    if target not in list_studies(store):
        from pathlib import Path

        from ..study.schema import PRESETS, load_raw

        if Path(target).is_file() or target in PRESETS:
            raw, default, _ = load_raw(target)
            name = str(raw.get("name") or default)
    record = load_study_record(store, name) if name in list_studies(store) else None
    if record is not None:
        ids = [p["run_id"] for p in record["runs"] if isinstance(p, dict) and "run_id" in p]
        finished = [r for r in ids if store.exists(r) and store.read_status(r)["state"] == "finished"]
        if not finished:
            raise UsageError(f"study {name} has no finished runs yet")
        return name, finished
    rid = resolve_run_id(store, target)
    return rid, [rid]


def run_shift(args) -> int:
    from pathlib import Path

    from ..reports.collect import collect
    from ..reports.tables import build, export
    from ..shift.corruptions import parse_severities, parse_shifts
    from ..shift.evaluate import evaluate_run
    from ..training.device import setup_device

    shifts, severities = parse_shifts(args.shifts), parse_severities(args.severities)
    if args.batch_size is not None and not 1 <= args.batch_size <= 65536:
        raise UsageError(f"--batch-size must lie in [1, 65536], got {args.batch_size}")
    store = store_from(args, write=True)
    name, ids = targets(store, args.target)
    dev = setup_device(args.device)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    results = {rid: evaluate_run(store, rid, shifts, severities, args.seed, args.external, dev, args.batch_size,
                                 args.force, log) for rid in ids}
    if args.json:
        print_json(results)
        return 0
    records = [r for r in collect(store) if r.run_id in results]
    out = Path(args.out) if args.out else store.root / "reports" / f"{name}-robustness"
    tables = build(records, title=f"{name}: accuracy, and robustness under acquisition shift")
    for path in export(tables, out, "both"):
        print(f"wrote {path}")
    return 0
