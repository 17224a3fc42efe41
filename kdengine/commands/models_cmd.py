"""``kdengine models``: the thesis's architectures and tiny test models, with parameter counts (no torch for
the catalogue's; a name is checked against timm's names without importing timm)."""
from __future__ import annotations

from dataclasses import asdict

from .. import api
from ..errors import UsageError
from .common import print_json


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model registry with parameter counts")
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--check", metavar="NAME", help="check one timm name; exit 2 if unknown")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_models)


def run_models(args) -> int:
    if not 1 <= args.classes <= 100_000:
        raise UsageError(f"--classes must lie in [1, 100000], got {args.classes}")
    if args.check:
        print(f"{args.check}: {api.Store.model_params(args.check, args.classes):,} parameters")
        return 0
    rows = [asdict(m) for m in api.Store.model_catalogue(args.classes)]
    if args.json:
        print_json(rows)
        return 0
    print(f"{'model':20} {'group':7} {'parameters':>12}  pretrained weights")
    for r in rows:
        note = r["pretrained_as"] if r["pretrained_as"] != r["name"] else "timm"
        if r["pretrained_as"] != r["name"]:
            note = f"none in timm; mapped to {r['pretrained_as']}"
        print(f"{r['name']:20} {r['group']:7} {r['params']:>12,}  {note}")
    print("Any other timm model name is accepted as it is (`kdengine models --check NAME`).")
    return 0
