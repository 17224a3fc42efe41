"""``kdengine explain RUN|STUDY``: where the models look (class activation maps), and whether a KD student looks
where its teacher does, more than its baseline does."""
from __future__ import annotations

import sys

from .. import api
from ..api import Choices
from .common import add_runs_dir, store_from


def register(sub) -> None:
    p = sub.add_parser("explain", help="class activation maps of finished runs (grad-cam) on the same images, and "
                                       "the KD runs' attention agreement with their teachers")
    p.add_argument("target", metavar="RUN|STUDY", help="a run id (or part of one: its teachers and baseline come "
                                                       "too), or a study (name, file or preset)")
    p.add_argument("--images", type=int, default=Choices.EXPLAIN_IMAGES, metavar="N",
                   help=f"images per configuration, balanced over the classes, fixed by --seed (default: "
                        f"{Choices.EXPLAIN_IMAGES})")
    p.add_argument("--method", choices=Choices.EXPLAIN_METHODS, default="gradcam", help="the CAM (default: gradcam)")
    p.add_argument("--split", choices=Choices.SPLITS, default="test", help="where the images come from (default: test)")
    p.add_argument("--seed", type=int, default=0, help="which images (default: 0)")
    p.add_argument("--target", dest="target_class", choices=Choices.EXPLAIN_TARGETS, default="true",
                   help="the class each map answers for: the true one (default: every model is asked the same "
                        "question) or each model's prediction")
    p.add_argument("--shift", default=None, metavar="NAME:SEVERITY",
                   help="the same images under an acquisition shift, e.g. blur:3 (shifts: "
                        + ", ".join(api.Store.shift_names()) + "; severities 1..5)")
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="compute again even when the maps are stored")
    add_runs_dir(p)
    p.set_defaults(handler=run_explain)


def run_explain(args) -> int:
    store = store_from(args, write=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    name, out = store.explain(args.target, args.images, args.method, args.split, args.seed, args.target_class,
                            args.shift, args.device, args.force, log)
    n, pairs = len(out.explained) + len(out.reused), len(out.pairs)
    print(f"{name}: maps for {n} run{'s' * (n != 1)} ({len(out.reused)} read back), {pairs} KD "
          + ("run compared with its teacher and baseline" if pairs == 1 else
             "runs compared with their teachers and baselines") + f", {out.seconds:.1f} s")
    for rid, why in out.skipped:
        print(f"  skipped {rid}: {why}")
    what = name if name in store.studies() else "--all"
    print(f"the attention table: kdengine {'study table ' + name if what == name else 'table'} · the gallery: "
          f"kdengine report {what} --out DIR")
    return 0
