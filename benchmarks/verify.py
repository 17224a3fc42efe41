"""``make gpu-verify``: the one prepared call for a lent GPU. ``make test-gpu``, then ``make bench-gpu`` in what is
left, in at most 9 minutes together, then one JSON and a one-line verdict per fast-path flag.

    python -m benchmarks.verify [--out gpu-verify.json] [--total-s 540]

The rule (README, "On a GPU box"): a flag becomes the default when **its GPU tests pass and the benchmark shows it
faster than the path without it on the thesis architectures** (every one measured, cross-entropy and KD alike,
at least two of them). ``--device-input`` is measured against the default path, ``--cuda-graph`` against
``--device-input`` alone. Every GPU test counts for both flags: the graphed tests run on the device input, and
the device-input tests check what the graph replays. The earlier GPU issue's targets are reported beside the
verdict (they do not decide it): 1.3x timm's loop, resnet18 at 3,000 img/s and seresnet101 at 800 at batch 16,
the thesis grid at 60 minutes a seed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOTAL_S = 540.0  # 9 minutes: test-gpu and bench-gpu together
TESTS_S = 170.0  # the GPU tests' hard limit; the benchmark gets the rest
MARGIN_S = 15.0  # for start-up and the verdict
FLAGS = {"device_input": "--device-input", "cuda_graph": "--cuda-graph"}
TARGETS = {"peers_vs_timm": 1.3, "resnet18_img_s": 3000.0, "seresnet101_img_s": 800.0, "grid_minutes_per_seed": 60.0}


def run_tests(limit_s: float, junit: Path) -> dict:
    """make test-gpu's tests, stopped at ``limit_s``: each test's outcome, from pytest's JUnit XML."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/gpu", f"--junitxml={junit}", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit_s)
        code, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        code, tail = "timeout", ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes)
                                 else (exc.stdout or ""))[-3000:]
    return {"exit": code, "seconds": time.time() - t0, "tests": parse_junit(junit), "tail": tail}


def parse_junit(path: Path) -> dict[str, str]:
    """test id -> passed | failed | error | skipped."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return {}
    out = {}
    for case in tree.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = [child.tag for child in case]
        out[name] = ("failed" if "failure" in kinds else "error" if "error" in kinds
                     else "skipped" if "skipped" in kinds else "passed")
    return out


def run_bench(budget_s: float, out: Path) -> dict:
    t0 = time.time()
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--device", "cuda", "--budget-s", str(int(budget_s)), "--out",
           str(out)]
    try:
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=budget_s + 30)
    except subprocess.TimeoutExpired:
        pass  # its sections have their own deadlines; this is the last resort
    try:
        result = json.loads(out.read_text())
    except (OSError, ValueError):
        result = {"error": "bench-gpu wrote no results"}
    result["wall_s"] = time.time() - t0
    return result


def _tests_ok(tests: dict) -> tuple[bool, str]:
    outcomes = tests.get("tests", {})
    if not outcomes:
        return False, f"no GPU test ran (pytest exit {tests.get('exit')})"
    bad = [k.split("::")[-1] for k, v in outcomes.items() if v in ("failed", "error")]
    skipped = [k for k, v in outcomes.items() if v == "skipped"]
    if bad:
        return False, f"GPU tests failed: {', '.join(bad[:4])}" + (" …" if len(bad) > 4 else "")
    if tests.get("exit") == "timeout":
        return False, f"the GPU tests ran past {TESTS_S:.0f} s"
    if skipped:
        return False, f"{len(skipped)} GPU test(s) skipped"
    return True, f"GPU tests pass ({len(outcomes)}/{len(outcomes)})"


def verdict(tests: dict, bench: dict) -> dict:
    """Per flag: on by default or not yet, and why (the rule in the module's note)."""
    ok, why_tests = _tests_ok(tests)
    ratios = ((bench.get("sections") or {}).get("archs") or {}).get("ratios") or {}
    out = {}
    for flag, option in FLAGS.items():
        per_arch = ratios.get(flag) or {}
        values = [v for r in per_arch.values() for v in r.values()]
        reasons = [] if ok else [why_tests]
        if len(per_arch) < 2:
            reasons.append(f"measured on {len(per_arch)} thesis architecture(s), 2 at least are needed")
        elif min(values) <= 1.0:
            slow = [a for a, r in per_arch.items() if min(r.values()) <= 1.0]
            reasons.append(f"not faster on {', '.join(slow)} (lowest {min(values):.2f}x)")
        speed = (f"{min(values):.2f}-{max(values):.2f}x the path without it on {len(per_arch)} thesis "
                 "architectures" if values else "no benchmark figure")
        on = not reasons
        out[flag] = {"default": on, "reasons": reasons, "ratios": per_arch,
                     "line": f"{option}: " + (f"ON BY DEFAULT: {why_tests}; {speed}" if on
                                              else f"not yet: {'; '.join(reasons)}" + (f" ({speed})" if values else ""))}
    return out


def targets(bench: dict) -> dict:
    """The earlier GPU issue's targets, measured or not."""
    sec = bench.get("sections") or {}
    fast = ((sec.get("archs") or {}).get("fast") or {}).get("runs") or {}
    peers = (((sec.get("peers") or {}).get("batch16") or {}).get("fast") or {}).get("timm") or {}
    grid = sec.get("grid") or {}
    got = {"peers_vs_timm": peers.get("ratio"),
           "resnet18_img_s": ((fast.get("resnet18") or {}).get("ce") or {}).get("images_per_s"),
           "seresnet101_img_s": ((fast.get("seresnet101") or {}).get("ce") or {}).get("images_per_s"),
           "grid_minutes_per_seed": grid.get("projected_full_grid_minutes_per_seed")}
    out = {}
    for k, want in TARGETS.items():
        v = got[k]
        met = None if v is None else (v <= want if k == "grid_minutes_per_seed" else v >= want)
        out[k] = {"target": want, "measured": v, "met": met}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.verify")
    p.add_argument("--out", default="gpu-verify.json")
    p.add_argument("--total-s", type=float, default=TOTAL_S)
    args = p.parse_args(argv)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tests = run_tests(min(TESTS_S, args.total_s / 3), Path(tmp) / "gpu.xml")
        left = args.total_s - (time.time() - t0) - MARGIN_S
        bench = run_bench(left, Path(tmp) / "bench.json") if left > 60 else {"skipped": "no time left"}
    result = {"machine": bench.get("machine"), "date": time.strftime("%Y-%m-%d %H:%M"), "tests": tests,
              "bench": bench, "verdict": verdict(tests, bench), "targets": targets(bench),
              "seconds": time.time() - t0, "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES",)}}
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    gpu = (bench.get("machine") or {}).get("gpu", "no GPU")
    print(f"gpu-verify on {gpu}, {result['seconds']:.0f} s:")
    for v in result["verdict"].values():
        print("  " + v["line"])
    for k, t in result["targets"].items():
        print(f"  target {k}: {t['measured'] if t['measured'] is not None else 'not measured'} "
              f"(want {'<=' if k.startswith('grid') else '>='} {t['target']:g})" + ("" if t["met"] is None else
                                                                                    " met" if t["met"] else " missed"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
