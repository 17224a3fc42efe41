"""What several commands share: the run store from ``--runs-dir``, data and config options, runtime
options, run-id lookup and JSON output."""
from __future__ import annotations

import argparse
import json
import sys

from .. import api
from ..api import Choices
from ..errors import UsageError
from ..options import add_options, from_args

BALANCED = {"cap_train": 2201, "cap_test": 250}  # the thesis's balanced MURA subset (images per class)


def store_from(args: argparse.Namespace, write: bool = False) -> api.Store:
    """kdstudy on the run store ``--runs-dir`` (or $KDSTUDY_HOME, or ./runs) names (``api.open``)."""
    return api.open(getattr(args, "runs_dir", None), write)


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="the run store (default: $KDSTUDY_HOME or ./runs)")


def add_data_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The data options (generated from DataConfig), and ``--balanced``, the thesis's MURA subset."""
    group = add_options(p, Choices.CONFIGS["data"], skip=skip, title="data")
    group.add_argument("--balanced", action="store_true",
                       help="the thesis's balanced MURA subset: "
                            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in BALANCED.items()))


def data_config(args: argparse.Namespace, **overrides):
    if getattr(args, "balanced", False):
        for key, value in BALANCED.items():
            overrides.setdefault(key, value)
    return from_args(Choices.CONFIGS["data"], args, **overrides).resolved()


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime (not part of a run's identity)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    g.add_argument("--loader-workers", type=int, default=None, metavar="N",
                   help="data-loader processes per run (default: 0 on CPU, one per core up to 16 on CUDA)")
    g.add_argument("--tracker", action="append", choices=Choices.TRACKERS, default=[],
                   help="also log to an experiment tracker (repeatable)")
    add_fast_path_args(g)
    add_runs_dir(g)


class _Removed(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("--compile was removed: on an H100 it made training slower than eager (0.83x); "
                     "--cuda-graph captures the whole step instead")


def add_fast_path_args(g) -> None:
    """The CUDA input path and the graphed step (off unless given, set in the environment, or turned on for CUDA
    runs by make gpu-verify's --apply: kdengine/fast_path.py), and the removed --compile, which says what
    replaced it."""
    g.add_argument("--device-input", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the decoded images on the device and augment them there (no loader processes; "
                        "default: $KDSTUDY_DEVICE_INPUT, else kdengine/fast_path.json on CUDA, else off)")
    g.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=None,
                   help="capture the training step as a CUDA graph and replay it (CUDA only; default: "
                        "$KDSTUDY_CUDA_GRAPH, else kdengine/fast_path.json, else off)")
    g.add_argument("--compile", nargs=0, action=_Removed, help=argparse.SUPPRESS)


def fast_path(args: argparse.Namespace) -> dict:
    """{"device_input": ..., "cuda_graph": ...} from the flags (None: not given, the environment decides)."""
    return {"device_input": getattr(args, "device_input", None), "cuda_graph": getattr(args, "cuda_graph", None)}


def add_packing_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-per-gpu", default="1", metavar="N|auto",
                   help="workers started per GPU, each pinned to it (auto: fitted to the card's memory from "
                        "measured peaks; at most 8). Default: 1")


def check_loader_workers(args: argparse.Namespace) -> None:
    n = getattr(args, "loader_workers", None)
    if n is not None and not 0 <= n <= 256:
        raise UsageError(f"--loader-workers must lie in [0, 256], got {n}")


def runs(n: int) -> str:
    """"1 run", "2 runs"."""
    return f"{n} run" + ("s" if n != 1 else "")


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
