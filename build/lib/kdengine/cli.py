"""The headless CLI: ``kdengine <command>``. Bad input exits 2 with one line, never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .errors import KDError, RunFailed  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_data_args(p: argparse.ArgumentParser, default: str | None = "synthetic") -> None:
    p.add_argument("--data", default=default, metavar="SPEC",
                   help="synthetic | mura:PATH | folder:PATH | npz:PATH | PATH (default: %(default)s)")
    p.add_argument("--task", default="body_part", choices=["body_part", "abnormality"], help="MURA task")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of train carved out as val, by patient")
    p.add_argument("--cap-train", type=int, default=None, metavar="N", help="at most N train+val images per class")
    p.add_argument("--cap-test", type=int, default=None, metavar="N", help="at most N test images per class")
    p.add_argument("--balanced", action="store_true",
                   help="the thesis's balanced MURA subset: --cap-train 2201 --cap-test 250")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted) instead of stopping")


def data_config(args: argparse.Namespace):
    from .data.spec import DataConfig

    cap_train, cap_test = args.cap_train, args.cap_test
    if getattr(args, "balanced", False):
        cap_train, cap_test = cap_train or 2201, cap_test or 250
    return DataConfig(spec=args.data, task=args.task, val_fraction=args.val_fraction,
                      split_seed=args.split_seed, cap_train=cap_train, cap_test=cap_test,
                      skip_bad=args.skip_bad).resolved()


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    p = _Parser(prog="kdengine", description="kdstudy engine: knowledge-distillation studies on medical images")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except KDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunFailed as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
