"""``kdengine data check SPEC``: what a source holds, split by split, and what was skipped."""
from __future__ import annotations

import argparse

from .. import api
from ..api import Choices
from .common import add_data_options, data_config, print_json


def register(sub) -> None:
    data = sub.add_parser("data", help="inspect data sources")
    dsub = data.add_subparsers(dest="data_command", required=True)
    check = dsub.add_parser("check", help="index and decode a source; print classes, splits, groups, skips")
    check.add_argument("source", metavar="SOURCE", help=Choices.source_help())
    add_data_options(check, skip=("source",))
    check.add_argument("--no-decode", action="store_true", help="index only; do not decode images")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    cfg = data_config(args, source=args.source)

    summary = api.Store.check_data(cfg, None if args.no_decode else cfg.image_size, cfg.skip_bad)
    if args.json:
        print_json(summary)
    else:
        print(render_summary(summary))
    return 0


def render_summary(s: dict) -> str:
    lines = [f"data: {s['description']}"]
    if s["synthetic"]:
        lines.append("      SYNTHETIC: generated images, not real radiographs")
    lines.append(f"kind: {s['kind']}")
    what = "findings (positives per split)" if s["task"] == "multilabel" else "classes"
    lines.append(f"{what} ({len(s['classes'])}): {', '.join(s['classes'])}")
    width = max(12, *(len(c) + 2 for c in s["classes"]))
    lines.append(f"{'':{width}}{'train':>8}{'val':>8}{'test':>8}")
    for c in s["classes"]:
        lines.append(f"{c:{width}}" + "".join(f"{s['splits'][sp]['per_class'][c]:>8}" for sp in Choices.SPLITS))
    lines.append(f"{'images':{width}}" + "".join(f"{s['splits'][sp]['images']:>8}" for sp in Choices.SPLITS))
    lines.append(f"{'groups':{width}}" + "".join(f"{s['splits'][sp]['groups']:>8}" for sp in Choices.SPLITS))
    lines.append(f"groups (patients) shared between splits: {s['groups_shared_between_splits']}")
    if "seen" in s:
        lines.append(f"images read: {seen_text(s['seen'], s['channels'])}")
    if "cache" in s:
        c = s["cache"]
        lines.append(f"decoded cache: {c['path']} ({c['size']} px, {'reused' if c['hit'] else 'built'})")
    skipped = s["skipped"]
    lines.append(f"skipped files: {len(skipped)}")
    for item in skipped[:20]:
        lines.append(f"  {item['path']}: {item['reason']}")
    if len(skipped) > 20:
        lines.append(f"  ... and {len(skipped) - 20} more (use --json for all)")
    for note in s["notes"]:
        lines.append(f"note: {note}")
    lines.append("ok: the data is usable")
    return "\n".join(lines)




def seen_text(seen: dict, channels: int) -> str:
    """What the decoded files were: '299 grey and 1 RGB (made grey: --color rgb keeps colour); sizes 64×64 (299)
    and 100×80 (1)'; many sizes in a range with the most common."""
    colour, grey = seen.get("colour", 0), seen.get("grey", 0)
    kinds = " and ".join(f"{n} {word}" for n, word in ((grey, "grey"), (colour, "RGB")) if n) or "none"
    if colour and channels == 1:
        kinds += " (made grey: --color rgb keeps colour)"
    elif grey and channels == 3:
        kinds += " (grey ones repeated on 3 channels)"
    sizes = seen.get("sizes") or {}

    def size(key: str) -> str:
        return key.replace("x", "×")

    if not sizes:
        return kinds
    if len(sizes) <= 3:
        listed = [f"{size(k)} ({n})" for k, n in sizes.items()]
        said = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + f" and {listed[-1]}"
        return f"{kinds}; size{'s' if len(sizes) > 1 else ''} {said}"
    by_area = sorted(sizes, key=lambda k: (int(k.split("x")[0]) * int(k.split("x")[1]), k))
    common, n = next(iter(sizes.items()))
    return (f"{kinds}; {len(sizes)} sizes from {size(by_area[0])} to {size(by_area[-1])}, most often {size(common)} "
            f"({n})")
