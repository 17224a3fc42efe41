"""Fault injection: SIGKILL a worker at random moments, some of them in the middle of a checkpoint write, across
a teacher and its student; resume after each kill; compare with an uninterrupted run.

    python -m benchmarks.faults [--kills 20] [--seed 0]      (make faults)

The test suite runs a short version (tests/test_fault_injection.py). What must hold:
- no finished epoch is lost: each resume starts right after the last epoch whose checkpoint was written;
- no temp file is left behind;
- the final best weights are bitwise equal to those of an uninterrupted run, and so are the metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = "synthetic:images=280,seed=3"
RUN = ["--data", DATA, "--image-size", "32", "--batch-size", "32", "--device", "cpu", "--strategy", "normal",
       "--teacher", "test_resnet", "--student", "test_efficientnet", "--no-baseline", "--quiet"]
PAUSE = "KDSTUDY_FAULT_PAUSE_WRITES"
CHECKPOINTS = ("best.safetensors", "last.pt")


def kdengine(*args, env=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kdengine", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=600)
    if check and result.returncode != 0:
        raise RuntimeError(f"kdengine {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result


def quietly(*args) -> None:
    """A kdengine command in this process (no interpreter start-up); its output is dropped, its failure raised."""
    import contextlib
    import io

    from kdengine.cli import main as cli

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli(list(args))
    if code != 0:
        raise RuntimeError(f"kdengine {' '.join(args)} exited {code}: {err.getvalue()[-2000:]}")


def _last_epoch(run_dir: Path) -> int:
    """The last epoch whose resumable checkpoint is on disk (0: none; -1: the run is finished)."""
    import torch

    if (run_dir / "metrics.json").is_file():
        return -1
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return 0
    return torch.load(last, map_location="cpu", weights_only=True)["state"]["epoch"]


def _checkpoint_write_in_progress(root: Path) -> bool:
    return any(any(c in p.name for c in CHECKPOINTS) for p in root.rglob(".*.tmp"))


def run_with_kills(root: Path, kills: int, epochs: int, seed: int = 0, log=print) -> dict:
    """Queue normal KD (teacher and student, ``epochs`` each), then train it through ``kills`` SIGKILLs."""
    rng = random.Random(seed)
    quietly("train", *RUN, "--epochs", str(epochs), "--queue", "--runs-dir", str(root))
    from kdengine.store import RunStore

    store = RunStore(root)
    checkpoints_at_kill: list[dict[str, int]] = []
    done = 0
    mid_write = 0
    while done < kills:
        if all(store.read_status(r).state == "finished" for r in store.list_ids()):
            break
        during_write = done % 2 == 0  # every other kill lands inside a checkpoint write
        student_only = done >= kills // 2  # the second half of the kills wait for the student
        skip_writes = rng.randint(1, 3)  # which checkpoint write to kill in: not always the first one
        progress = rng.randint(4, 14)  # or: how many logged steps and epochs into this process's work
        env = {PAUSE: "0.4:" + ",".join(CHECKPOINTS)} if during_write else {}
        proc = subprocess.Popen([sys.executable, "-m", "kdengine", "worker", "--once", "--device", "cpu",
                                 "--runs-dir", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **env}, start_new_session=True)
        deadline = time.time() + 180
        counted: dict[str, int] = {}
        seen, killed = set(), False
        running: list[str] = []
        while proc.poll() is None and time.time() < deadline:
            running = [r for r in store.list_ids() if store.read_status(r).state == "running"]
            if student_only:
                running = [r for r in running if not r.startswith("ce-")]
            if running and during_write:
                seen |= {p.name for p in root.rglob(".*.tmp") if any(c in p.name for c in CHECKPOINTS)}
                killed = len(seen) > skip_writes and _checkpoint_write_in_progress(root)
            elif running:
                events = len([e for e in store.read_events(running[0])[0] if e["type"] in ("step", "epoch")])
                counted.setdefault(running[0], events)
                killed = events - counted[running[0]] >= progress
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.02)
        if not killed:
            proc.wait()
            continue
        done += 1
        mid_write += during_write
        checkpoints_at_kill.append({"running": running,
                                    "safe": {r: _last_epoch(store.run_dir(r)) for r in store.list_ids()}})
        log(f"kill {done}/{kills}: {'during a checkpoint write' if during_write else 'at a random moment'} of "
            f"{', '.join(running)}; epochs safe on disk: {checkpoints_at_kill[-1]['safe']}")
        # resume: half of the time through `runs doctor --fix` (which requeues interrupted runs and removes
        # temp files), half through `runs retry` (the claim removes the run's temp files)
        if done % 2:
            quietly("runs", "doctor", "--fix", "--runs-dir", str(root))
        else:
            for r in [r for r in store.list_ids() if store.read_status(r).stale]:
                quietly("runs", "retry", r, "--runs-dir", str(root))
    quietly("worker", "--once", "--device", "cpu", "--runs-dir", str(root))
    return {"kills": done, "mid_write_kills": mid_write, "checkpoints_at_kill": checkpoints_at_kill}


def compare(root: Path, reference: Path, report: dict) -> dict:
    """The checks of the module docstring; returns what was found (all True when everything holds)."""
    from safetensors.torch import load_file

    from kdengine.store import RunStore

    store, ref = RunStore(root), RunStore(reference)
    ids = store.list_ids()
    result = {"same_runs": sorted(ids) == sorted(ref.list_ids()),
              "all_finished": all(store.read_status(r).state == "finished" for r in ids),
              "no_temp_files_in_runs": not any(list(store.run_dir(r).rglob("*.tmp")) for r in ids)}
    quietly("runs", "doctor", "--fix", "--runs-dir", str(root))  # and the workers' own records
    result["no_temp_files_after_doctor"] = not list(root.rglob("*.tmp"))
    weights, metrics = True, True
    for rid in ids:
        a = load_file(store.checkpoint_dir(rid) / "best.safetensors")
        b = load_file(ref.checkpoint_dir(rid) / "best.safetensors")
        weights &= a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and bool((a[k] == b[k]).all())
                                                and a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
        ma, mb = store.read_metrics(rid), ref.read_metrics(rid)
        metrics &= all(ma[s]["loss"] == mb[s]["loss"] and ma[s]["confusion"] == mb[s]["confusion"]
                       for s in ("train", "val", "test"))
    result.update(best_weights_bitwise_equal=weights, metrics_equal=metrics)
    # no finished epoch lost: each resume starts right after the epoch that was safe on disk when its run was killed
    lost = []
    for rid in ids:
        resumes = [e["epoch"] for e in store.read_events(rid)[0] if e["type"] == "resume"]
        expected = [k["safe"][rid] for k in report["checkpoints_at_kill"] if rid in k["running"] and k["safe"][rid] > 0]
        if resumes != expected:
            lost.append({"run": rid, "resumed_after": resumes, "safe_at_kills": expected})
    result["no_finished_epoch_lost"] = not lost
    result["lost"] = lost
    killed_runs = {r for k in report["checkpoints_at_kill"] for r in k["running"]}
    result["teacher_and_student_killed"] = len(killed_runs) >= 2
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("KDSTUDY_DATA", str(tmp / "data"))
        t0 = time.time()
        kdengine("train", *RUN, "--epochs", str(args.epochs), "--runs-dir", str(tmp / "reference"))
        report = run_with_kills(tmp / "killed", args.kills, args.epochs, args.seed)
        result = compare(tmp / "killed", tmp / "reference", report)
        result.update(kills=report["kills"], mid_write_kills=report["mid_write_kills"],
                      seconds=round(time.time() - t0, 1))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    ok = all(v for k, v in result.items() if k not in ("lost", "kills", "mid_write_kills", "seconds"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
