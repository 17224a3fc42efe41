"""``kdengine models``: the thesis's architectures and tiny test models, with parameter counts (no torch for
the catalogue's; a name is checked against timm's names without importing timm)."""
from __future__ import annotations

from ..errors import UsageError
from ..models.architectures import APPROX_PARAMS, PRETRAINED_ALIASES, THESIS, TINY
from ..models.names import check_name
from .common import print_json


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model registry with parameter counts")
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--check", metavar="NAME", help="check one timm name; exit 2 if unknown")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_models)


def _params(name: str, classes: int) -> int:
    """The catalogue's counts (7 classes, 1 channel) without torch; timm counts the rest."""
    if classes == 7 and name in APPROX_PARAMS:
        return APPROX_PARAMS[name]
    from ..models.factory import count_params  # timm and torch: a model outside the catalogue, or other classes

    return count_params(name, classes)


def run_models(args) -> int:
    if not 1 <= args.classes <= 100_000:
        raise UsageError(f"--classes must lie in [1, 100000], got {args.classes}")
    if args.check:
        check_name(args.check)  # torch-free: a mistyped name is refused at once
        print(f"{args.check}: {_params(args.check, args.classes):,} parameters")
        return 0
    rows = []
    for group, names in (("thesis", THESIS), ("tiny", TINY)):
        for name in names:
            rows.append({"name": name, "group": group, "params": _params(name, args.classes),
                         "pretrained_as": PRETRAINED_ALIASES.get(name, name)})
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
