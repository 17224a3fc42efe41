"""``kdengine shift RUN|STUDY``: every finished run's best checkpoint under acquisition shift, and the tables."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import api
from .common import add_runs_dir, print_json, store_from


def register(sub) -> None:

    p = sub.add_parser("shift", help="evaluate finished runs under acquisition shift (and on external data)")
    p.add_argument("target", metavar="RUN|STUDY", help="a run id (or part of one), or a study (name, file or preset)")
    own = " (default: a study's own [shift], else {})"
    p.add_argument("--shifts", default=None, metavar="LIST",
                   help="comma-separated, or all: " + ", ".join(api.Store.shift_names()) + own.format("all"))
    p.add_argument("--severities", default=None, metavar="1..5",
                   help="1..5, 1,3,5 or one severity" + own.format("1..5"))
    p.add_argument("--external", default=None, metavar="SOURCE",
                   help="also evaluate on another dataset with the same classes (another site's images)"
                   + own.format("none"))
    p.add_argument("--seed", type=int, default=None, help="the shifts' seed" + own.format("0"))
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="default: the run's, at least 64")
    p.add_argument("--force", action="store_true", help="evaluate again even when the result is stored")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the robustness tables go (default: <runs>/reports/<target>-robustness)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_runs_dir(p)
    p.set_defaults(handler=run_shift)


def run_shift(args) -> int:
    store = store_from(args, write=True)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    name, results = store.shift(args.target, args.shifts, args.severities, args.seed, args.external,
                              args.device, args.batch_size, args.force, log)
    if args.json:
        print_json(results)
        return 0
    out = Path(args.out) if args.out else store.root / "reports" / f"{name}-robustness"
    for path in store.export_tables(store.shift_tables(name, results), out, "both"):
        print(f"wrote {path}")
    return 0
