"""``make gpu-verify``: the one prepared call for a GPU. The GPU tests, then the GPU benchmark in what is left, in
at most 9 minutes together; one JSON (``gpu-verify.json``) and a verdict per fast-path flag; with ``--apply`` the
verdicts are written into the defaults file the trainer reads (``kdengine/fast_path.json``).

    python -m benchmarks.verify [--out gpu-verify.json] [--total-s 540] [--apply]
    python -m benchmarks.verify --dry [--out FILE]        # make gpu-verify-dry: the CPU rehearsal

**The rule** (README, "On a GPU box"): a flag becomes the default when **its own GPU tests pass** (the tests marked
``@pytest.mark.gates(flag)``: tests/gpu) **and it is faster than the path without it by a margin on the thesis
architectures**: at least two of them, cross-entropy and KD alike, the lower bound of every ratio's 95 % interval
above 1.0 (``speedup.py``; ``--device-input`` against the default path, ``--cuda-graph`` against ``--device-input``
alone). The earlier GPU issue's targets are reported beside the verdict (they do not decide it): 1.3x timm's loop,
resnet18 at 3,000 img/s and seresnet101 at 800 at batch 16, the thesis grid at 60 minutes a seed.

**The budget** (TOTAL_S): the tests get at most TESTS_S (their pytest is killed there; each outcome was written as
it was known, ``outcomes.py``: a killed run keeps its results), the benchmark what is left but MARGIN_S, split
between its sections by ``gpu.SHARES``.

**Without a CUDA device** it stops at once: verdict "no CUDA device" for both flags, exit 1.

**The rehearsal** (``--dry``): the same script on the CPU with the same budget split and sections, on a tiny
workload (``gpu.py --quick``), under the same caps (DRY_TOTAL_S); its tests section runs the CPU tests of the same flags
(tests/test_gpu_logic.py's gated ones) through the same harness. It checks that every section yielded figures
within its share and that the JSON holds every field the rule reads (:func:`missing_fields`), and exits 1 if not.
Its verdicts are a CPU's: ``--apply`` with ``--dry`` writes only to a file named by $KDSTUDY_FAST_PATH_FILE.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOTAL_S = 540.0  # 9 minutes: the tests and the benchmark together
TESTS_S = 150.0  # the GPU tests' hard limit; the benchmark gets the rest
MARGIN_S = 15.0  # for start-up and the verdict
DRY_TOTAL_S = TOTAL_S  # the rehearsal's caps: the same budget and split; its tiny workload ends far sooner
FLAGS = {"device_input": "--device-input", "cuda_graph": "--cuda-graph"}
MIN_ARCHS = 2
TARGETS = {"peers_vs_timm": 1.3, "resnet18_img_s": 3000.0, "seresnet101_img_s": 800.0, "grid_minutes_per_seed": 60.0}
TARGET_ARCHS = {"resnet18_img_s": "resnet18", "seresnet101_img_s": "seresnet101"}


def split(total_s: float) -> dict[str, float]:
    """The tests' limit, the margin and the benchmark's budget (before the tests ran: it gets what they leave)."""
    tests = TESTS_S * total_s / TOTAL_S
    margin = MARGIN_S * total_s / TOTAL_S
    return {"tests_s": tests, "margin_s": margin, "bench_s": total_s - tests - margin}


GPU_TESTS = ["-m", "gpu", "tests/gpu"]
DRY_TESTS = ["-m", "gates", "tests/test_gpu_logic.py"]  # the CPU tests of the same flags


def run_tests(limit_s: float, selection: list[str], fork: bool, tmp: Path) -> dict:
    """The tests ``selection`` names (GPU_TESTS; the rehearsal's DRY_TESTS), stopped at ``limit_s``; each test's
    outcome and the flags it gates, as written while they ran (``outcomes.py``: a killed run keeps them)."""
    from benchmarks import outcomes
    from benchmarks.gpu import start_child, wait_child

    path, log = tmp / "outcomes.jsonl", tmp / "pytest.log"
    os.environ[outcomes.PATH_ENV] = str(path)
    args = ["-q", "-p", "benchmarks.outcomes", "-p", "no:cacheprovider", *selection]

    def in_fork() -> int:
        import pytest

        os.chdir(ROOT)
        return int(pytest.main(args))

    t0 = time.time()
    code, stopped = wait_child(start_child(in_fork, [sys.executable, "-m", "pytest", *args], fork, log), limit_s)
    os.environ.pop(outcomes.PATH_ENV, None)
    try:
        tail = log.read_text(errors="replace")[-3000:]
    except OSError:
        tail = ""
    return {"exit": "timeout" if stopped else code, "seconds": time.time() - t0, "limit_s": limit_s,
            "tests": outcomes.read(path), "tail": tail}


def tests_for(flag: str, tests: dict) -> tuple[bool, str]:
    """Whether ``flag``'s own tests all passed, and why not."""
    mine = {k: v for k, v in (tests.get("tests") or {}).items() if flag in v["gates"]}
    if not mine:
        return False, f"no test of {FLAGS[flag]} ran (pytest exit {tests.get('exit')})"
    named = lambda outcome: [k.split("::")[-1] for k, v in mine.items() if v["outcome"] in outcome]  # noqa: E731
    bad, skipped, not_run = named(("failed", "error")), named(("skipped",)), named(("not run",))
    if bad:
        return False, f"its tests failed: {', '.join(bad[:4])}" + (" ..." if len(bad) > 4 else "")
    if not_run:
        return False, (f"{len(not_run)} of its tests did not run (pytest stopped at {tests.get('limit_s', 0):.0f} s)"
                       if tests.get("exit") == "timeout" else f"{len(not_run)} of its tests did not run")
    if skipped:
        return False, f"{len(skipped)} of its tests were skipped"
    return True, f"its tests pass ({len(mine)}/{len(mine)})"


def speed_for(flag: str, bench: dict) -> tuple[bool, str, dict]:
    """Whether ``flag`` is faster by a margin (every complete architecture, both kinds), why not, and the cells."""
    from benchmarks.speedup import faster

    per_arch = ((((bench.get("sections") or {}).get("archs") or {}).get("ratios") or {}).get(flag)) or {}
    complete = {a: k for a, k in per_arch.items() if all((k.get(kind) or {}).get("low") is not None
                                                          for kind in ("ce", "kd"))}
    if len(complete) < MIN_ARCHS:
        return False, (f"measured with a margin on {len(complete)} thesis architecture(s) (cross-entropy and KD), "
                       f"{MIN_ARCHS} at least are needed"), complete
    slow = [(a, kind, c) for a, kinds in complete.items() for kind, c in kinds.items() if not faster(c)]
    lows = [c["low"] for kinds in complete.values() for c in kinds.values()]
    if slow:
        return False, "not faster by a margin on " + ", ".join(
            f"{a} {kind} ({c['ratio']:.2f}x, lower bound {c['low']:.2f}x)" for a, kind, c in slow), complete
    return True, (f"faster on {len(complete)} thesis architectures, cross-entropy and KD, every 95 % lower bound "
                  f"above 1.0 (lowest {min(lows):.2f}x)"), complete


def verdict(tests: dict, bench: dict) -> dict:
    """Per flag: on by default or not yet, and why (the rule in the module's note)."""
    out = {}
    for flag, option in FLAGS.items():
        t_ok, t_why = tests_for(flag, tests)
        s_ok, s_why, cells = speed_for(flag, bench)
        on = t_ok and s_ok
        reasons = [why for ok, why in ((t_ok, t_why), (s_ok, s_why)) if not ok]
        out[flag] = {"default": on, "reasons": reasons, "tests": t_why, "speed": s_why, "cells": cells,
                     "line": f"{option}: " + (f"ON BY DEFAULT: {t_why}; {s_why}" if on
                                              else "not yet: " + "; ".join(reasons))}
    return out


def no_cuda_verdict() -> dict:
    return {flag: {"default": False, "reasons": ["no CUDA device"], "line": f"{option}: not yet: no CUDA device"}
            for flag, option in FLAGS.items()}


def targets(bench: dict, archs: dict[str, str] | None = None) -> dict:
    """The earlier GPU issue's targets, measured or not (``archs``: the architecture each img/s target names)."""
    archs = archs or TARGET_ARCHS
    sec = bench.get("sections") or {}
    runs = (sec.get("archs") or {}).get("runs") or {}
    peers = (((sec.get("peers") or {}).get("batch16") or {}).get("fast") or {}).get("timm") or {}
    grid = sec.get("grid") or {}
    got = {"peers_vs_timm": peers.get("ratio"),
           "grid_minutes_per_seed": grid.get("projected_full_grid_minutes_per_seed")}
    for key, arch in archs.items():
        got[key] = (((runs.get(arch) or {}).get("ce") or {}).get("fast") or {}).get("images_per_s")
    out = {}
    for k, want in TARGETS.items():
        v = got[k]
        met = None if v is None else (v <= want if k == "grid_minutes_per_seed" else v >= want)
        if k == "grid_minutes_per_seed" and v is None and grid.get("projected_minutes_lower_bound", 0) > want:
            met = False  # even its lower bound misses it
        out[k] = {"target": want, "measured": v, "met": met, **({"arch": archs[k]} if k in archs else {})}
    if grid.get("projected_over_compute") is not None:
        out["grid_over_compute_limit"] = {"measured": grid["projected_over_compute"],
                                          "compute_minutes": grid.get("compute_minutes_at_peak")}
    return out


def missing_fields(result: dict, archs: tuple[str, ...] | None = None) -> list[str]:
    """The fields the rule and the targets read that the JSON lacks (the rehearsal fails on any)."""
    from benchmarks.gpu import MIN_STEADY, MODES, PAIRS

    miss = []
    tests = (result.get("tests") or {}).get("tests") or {}
    for flag in FLAGS:
        if not any(flag in t["gates"] for t in tests.values()):
            miss.append(f"tests: a test gating {flag}")
    sec = (result.get("bench") or {}).get("sections") or {}
    runs, ratios = (sec.get("archs") or {}).get("runs") or {}, (sec.get("archs") or {}).get("ratios") or {}
    measured = list(archs or runs)
    if len(measured) < MIN_ARCHS:
        miss.append(f"bench.sections.archs.runs: {MIN_ARCHS} architectures")
    for arch in measured:
        for kind in ("ce", "kd"):
            for mode in MODES:
                rates = (((runs.get(arch) or {}).get(kind) or {}).get(mode) or {}).get("steady_rates") or []
                if len(rates) < MIN_STEADY:
                    miss.append(f"bench.sections.archs.runs.{arch}.{kind}.{mode}.steady_rates ({MIN_STEADY})")
            for flag, _, _ in PAIRS:
                if (((ratios.get(flag) or {}).get(arch) or {}).get(kind) or {}).get("low") is None:
                    miss.append(f"bench.sections.archs.ratios.{flag}.{arch}.{kind}.low")
    for name, ok in (("breakdown", lambda b: all((b.get(m) or {}).get(k, {}).get("shares") for m in MODES
                                                  for k in ("ce", "kd"))),
                     ("packing", lambda b: (b.get("runs_per_gpu") or {}).get("2", {}).get("vs_one") is not None),
                     ("grid", lambda b: b.get("projected_full_grid_minutes_per_seed") is not None
                      and b.get("projected_over_compute") is not None)):
        if not ok(sec.get(name) or {}):
            miss.append(f"bench.sections.{name}")
    for key, t in (result.get("targets") or {}).items():
        if t.get("measured") is None:
            miss.append(f"targets.{key}")
    if "grid_over_compute_limit" not in (result.get("targets") or {}):
        miss.append("targets.grid_over_compute_limit")
    return miss


def rehearsal_problems(result: dict) -> list[str]:
    """What the CPU rehearsal must show: every section (the tests too) yielded figures within its share."""
    problems = []
    tests = result.get("tests") or {}
    if tests.get("exit") == "timeout" or not tests.get("tests"):
        problems.append(f"tests: no outcome within {tests.get('limit_s', 0):.0f} s (exit {tests.get('exit')})")
    sections = (result.get("bench") or {}).get("sections") or {}
    from benchmarks.gpu import SECTIONS

    for name in SECTIONS:
        block = sections.get(name) or {}
        figures = set(block) - {"seconds", "limit_s", "stopped", "error", "skipped"}
        for bad in ("skipped", "stopped", "error"):
            if bad in block:
                problems.append(f"{name}: {bad}: {str(block[bad])[:300]}")
        if not figures:
            problems.append(f"{name}: no figures")
    return problems + [f"missing: {m}" for m in missing_fields(result, archs=_quick_archs(result))]


def _quick_archs(result: dict) -> tuple[str, ...] | None:
    from benchmarks.gpu import QUICK_ARCHS

    return QUICK_ARCHS if (result.get("bench") or {}).get("quick") else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.verify")
    p.add_argument("--out", default="gpu-verify.json")
    p.add_argument("--total-s", type=float, default=None, help=f"the whole call's budget (default {TOTAL_S:.0f}; "
                                                               f"the rehearsal's {DRY_TOTAL_S:.0f})")
    p.add_argument("--apply", action="store_true", help="write each flag's verdict into the defaults file")
    p.add_argument("--dry", action="store_true", help="the CPU rehearsal on a tiny workload (make gpu-verify-dry)")
    args = p.parse_args(argv)
    from kdengine import fast_path

    if args.apply and args.dry and not os.environ.get(fast_path.FILE_ENV):
        print(f"benchmarks.verify: --apply with --dry writes a CPU's verdict: name the file it may write with "
              f"${fast_path.FILE_ENV} (kdengine/fast_path.json is for a GPU's)", file=sys.stderr)
        return 2
    t0 = time.time()
    import torch

    from benchmarks import gpu

    cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
    if not cuda and not args.dry:
        result = {"date": time.strftime("%Y-%m-%d %H:%M"), "verdict": no_cuda_verdict(), "seconds": time.time() - t0,
                  "machine": {"python": sys.version.split()[0], "torch": torch.__version__}}
        Path(args.out).write_text(json.dumps(result, indent=2))
        print("gpu-verify: no CUDA device (torch.cuda.is_available() is False): nothing was run")
        for v in result["verdict"].values():
            print("  " + v["line"])
        return 1
    total = args.total_s or (DRY_TOTAL_S if args.dry else TOTAL_S)
    budget = split(total)
    device = "cpu" if args.dry else "cuda"
    fork = gpu.can_fork(device)
    with tempfile.TemporaryDirectory() as tmp:
        tests = run_tests(budget["tests_s"], DRY_TESTS if args.dry else GPU_TESTS, fork, Path(tmp))
        left = total - (time.time() - t0) - budget["margin_s"]
        bench = gpu.run(device, args.dry, left, list(gpu.SECTIONS),
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    bench["budget_s"] = left
    result = {"machine": bench.get("machine"), "date": time.strftime("%Y-%m-%d %H:%M"), "dry": args.dry,
              "budget": {"total_s": total, **budget}, "tests": tests, "bench": bench,
              "verdict": verdict(tests, bench),
              "targets": targets(bench, dict(zip(TARGET_ARCHS, gpu.QUICK_ARCHS)) if args.dry else None),
              "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES",)}}
    result["seconds"] = time.time() - t0
    if args.dry:
        result["rehearsal"] = rehearsal_problems(result)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    report(result)
    if args.apply:
        path = apply(result)
        print(f"  verdicts written to {path}")
    return 1 if args.dry and result["rehearsal"] else 0


def apply(result: dict) -> Path:
    """Each flag's verdict, with its evidence, into the defaults file the trainer reads."""
    from kdengine import fast_path

    machine = result.get("machine") or {}
    return fast_path.write_defaults({flag: {
        "default": v["default"], "why": v["line"], "gpu": machine.get("gpu") or "CPU (rehearsal)",
        "torch": machine.get("torch"), "date": result["date"], "tests": v.get("tests"), "speed": v.get("speed"),
        "lower_bounds": {a: {k: c.get("low") for k, c in kinds.items()} for a, kinds in (v.get("cells") or {}).items()},
    } for flag, v in result["verdict"].items()})


def report(result: dict) -> None:
    gpu = (result.get("machine") or {}).get("gpu", "no GPU")
    print(f"gpu-verify{' (CPU rehearsal)' if result.get('dry') else ''} on {gpu}, {result['seconds']:.0f} s:")
    for v in result["verdict"].values():
        print("  " + v["line"])
    for k, t in result["targets"].items():
        if "target" not in t:
            print(f"  {k}: {t['measured']:.2f}x")
            continue
        print(f"  target {k}{' (' + t['arch'] + ')' if 'arch' in t else ''}: "
              f"{t['measured'] if t['measured'] is not None else 'not measured'} "
              f"(want {'<=' if k.startswith('grid') else '>='} {t['target']:g})"
              + ("" if t["met"] is None else " met" if t["met"] else " missed"))
    for problem in result.get("rehearsal") or ():
        print(f"  REHEARSAL: {problem}")


if __name__ == "__main__":
    sys.exit(main())
