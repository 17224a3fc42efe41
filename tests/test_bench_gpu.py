"""make gpu-verify and make bench-gpu on a machine without a GPU: the CPU rehearsal of the whole call (make
gpu-verify-dry), what the call does without CUDA, the verdict's rule, the margin's promise (simulated), and each
piece of the benchmark that decides a figure: steady epochs, the grid's projection before all runs finish, the
packed runs' overlap, deadlines that keep figures, test outcomes that survive a killed pytest."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gpu, outcomes, speedup, verify

ROOT = Path(__file__).resolve().parent.parent


# -- the rehearsal ----------------------------------------------------------------------------------------------
def test_the_cpu_rehearsal_yields_every_figure_the_rule_reads_within_each_share(tmp_path):
    """make gpu-verify-dry: the same script, budget split and sections on the CPU on a tiny workload; every section
    yields figures within its share, the JSON holds every field the rule reads (the compute-limit ratio too), and
    --apply writes both verdicts into the defaults file it is pointed at."""
    out, defaults = tmp_path / "dry.json", tmp_path / "fast_path.json"
    env = {**os.environ, "KDSTUDY_FAST_PATH_FILE": str(defaults), "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.verify", "--dry", "--apply", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=verify.DRY_TOTAL_S + 60)
    wall = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["rehearsal"] == [] and verify.missing_fields(r, gpu.QUICK_ARCHS) == []
    assert r["budget"]["total_s"] == verify.TOTAL_S and r["bench"]["shares"] == gpu.SHARES  # the real call's split
    assert r["tests"]["seconds"] <= r["tests"]["limit_s"]
    for name in gpu.SECTIONS:
        block = r["bench"]["sections"][name]
        assert block["seconds"] <= block["limit_s"] and not {"stopped", "error", "skipped"} & set(block), name
    for arch, kinds in r["bench"]["sections"]["archs"]["runs"].items():
        for kind, modes in kinds.items():
            for mode, run in modes.items():
                assert 1 not in run["steady_epochs"] and len(run["steady_rates"]) >= gpu.MIN_STEADY, (arch, mode)
    assert r["bench"]["sections"]["grid"]["projected_over_compute"] > 0
    written = json.loads(defaults.read_text())
    assert {k: v["gpu"] for k, v in written.items()} == {f: "CPU (rehearsal)" for f in verify.FLAGS}
    assert all(written[f]["why"] == r["verdict"][f]["line"] for f in verify.FLAGS)
    assert wall < verify.DRY_TOTAL_S / 3, f"the rehearsal took {wall:.0f} s"


def test_without_cuda_it_stops_at_once_saying_so(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    t0 = time.time()
    assert verify.main(["--out", str(tmp_path / "v.json")]) == 1
    assert time.time() - t0 < 10
    r = json.loads((tmp_path / "v.json").read_text())
    assert [v["line"] for v in r["verdict"].values()] == ["--device-input: not yet: no CUDA device",
                                                          "--cuda-graph: not yet: no CUDA device"]
    assert "no CUDA device" in capsys.readouterr().out


def test_a_rehearsal_never_writes_the_gpus_defaults_file(monkeypatch, capsys):
    monkeypatch.delenv("KDSTUDY_FAST_PATH_FILE", raising=False)
    assert verify.main(["--dry", "--apply"]) == 2
    assert "KDSTUDY_FAST_PATH_FILE" in capsys.readouterr().err


# -- the rule -----------------------------------------------------------------------------------------------------
def _cell(ratio, low):
    return {"ratio": ratio, "low": low, "high": ratio * 1.1}


def _bench(device_input, cuda_graph):
    return {"sections": {"archs": {"ratios": {"device_input": device_input, "cuda_graph": cuda_graph}}}}


def _tests(**outcome):
    gates = {"a": ["device_input"], "b": ["cuda_graph"], "c": ["device_input", "cuda_graph"]}
    return {"exit": 0, "tests": {f"tests/gpu/t.py::{k}": {"gates": gates[k], "outcome": v} for k, v in outcome.items()}}


def test_each_flag_is_decided_by_its_own_tests_and_its_margin():
    fast = {"resnet18": {"ce": _cell(1.6, 1.4), "kd": _cell(1.5, 1.3)},
            "seresnet101": {"ce": _cell(1.2, 1.1), "kd": _cell(1.1, 1.02)}}
    unsure = {"resnet18": {"ce": _cell(1.3, 1.2), "kd": _cell(1.04, 0.97)},  # faster, but not by a margin
              "seresnet101": {"ce": _cell(1.1, 1.05), "kd": _cell(1.05, 1.01)}}
    v = verify.verdict(_tests(a="passed", b="passed", c="passed"), _bench(fast, unsure))
    assert v["device_input"]["default"] and v["device_input"]["line"].startswith("--device-input: ON BY DEFAULT")
    assert not v["cuda_graph"]["default"]
    assert "resnet18 kd (1.04x, lower bound 0.97x)" in v["cuda_graph"]["line"]
    # a graph test failed: the graph waits, the device input does not (N12: every test gated both)
    v = verify.verdict(_tests(a="passed", b="failed", c="passed"), _bench(fast, fast))
    assert v["device_input"]["default"] and not v["cuda_graph"]["default"] and "b" in v["cuda_graph"]["line"]
    v = verify.verdict(_tests(a="passed", b="passed", c="not run"), _bench(fast, fast))
    assert not any(x["default"] for x in v.values()) and "did not run" in v["cuda_graph"]["line"]
    assert not verify.verdict({"exit": 5, "tests": {}}, _bench(fast, fast))["device_input"]["default"]
    one = {"resnet18": fast["resnet18"], "seresnet101": {"ce": fast["seresnet101"]["ce"]}}  # KD stopped: 1 whole arch
    v = verify.verdict(_tests(a="passed", b="passed", c="passed"), _bench(one, fast))
    assert not v["device_input"]["default"] and "2 at least" in v["device_input"]["line"]


def test_the_targets_name_what_was_measured():
    bench = {"sections": {"archs": {"runs": {"resnet18": {"ce": {"fast": {"images_per_s": 3200.0}}}}},
                          "grid": {"projected_minutes_lower_bound": 75.0, "projected_over_compute": 3.0,
                                   "compute_minutes_at_peak": 9.0}}}
    t = verify.targets(bench)
    assert t["resnet18_img_s"]["met"] is True and t["seresnet101_img_s"]["met"] is None
    assert t["grid_minutes_per_seed"]["met"] is False  # even its lower bound misses 60 minutes
    assert t["grid_over_compute_limit"]["measured"] == 3.0


# -- the margin, simulated ----------------------------------------------------------------------------------------
def _rates(rng, n, speed=1.0, noise=0.03):
    return list(1000.0 * speed * np.exp(rng.normal(0.0, noise, n)))


def test_the_margin_calls_no_more_paths_faster_than_it_promises_and_finds_a_planted_speedup():
    """No effect: a 95 % interval's lower bound is above 1.0 in at most 2.5 % of runs (one-sided), and over four
    cells (the intersection-union test) no more often; a planted 1.3x speed-up with 3 % epoch-to-epoch noise,
    three steady epochs against four, is found in at least 95 % of runs."""
    rng = np.random.default_rng(36)
    sims = 2000
    slack = 3 * math.sqrt(0.025 * 0.975 / sims)  # three Monte Carlo standard errors
    null = [speedup.ratio_interval(_rates(rng, 3), _rates(rng, 4)) for _ in range(sims)]
    assert sum(map(speedup.faster, null)) / sims <= 0.025 + slack
    one_slow = [[speedup.ratio_interval(_rates(rng, 3, 1.3), _rates(rng, 4)) for _ in range(3)]
                + [speedup.ratio_interval(_rates(rng, 3), _rates(rng, 4))] for _ in range(sims // 4)]
    assert sum(map(speedup.all_faster, one_slow)) / len(one_slow) <= 0.025 + 2 * slack
    planted = [speedup.ratio_interval(_rates(rng, 3, 1.3), _rates(rng, 4)) for _ in range(sims // 4)]
    assert sum(map(speedup.faster, planted)) / len(planted) >= 0.95
    covered = sum(c["low"] <= 1.3 <= c["high"] for c in planted) / len(planted)
    assert covered >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / len(planted))  # the interval holds the true ratio


def test_no_interval_without_two_steady_epochs_or_any_spread():
    assert speedup.ratio_interval([1200.0], [1000.0, 1001.0])["low"] is None
    flat = speedup.ratio_interval([1200.0, 1200.0], [1000.0, 1000.0])
    assert flat["ratio"] == pytest.approx(1.2) and flat["low"] is None and not speedup.faster(flat)
    assert not speedup.all_faster([])


# -- steady epochs, the grid before it ends, the packed runs' overlap -------------------------------------------------
def _spec(model, teachers=(), seed=0, defective=False):
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, build_specs, ce_spec

    data, train = DataConfig(source="synthetic:images=90,seed=11", image_size=32), TrainConfig(epochs=3)
    if defective:
        return ce_spec(model, data, train, seed, "defective", KDConfig(defect_acc=0.5))
    return build_specs("normal" if teachers else "baseline", model, list(teachers), data, train, KDConfig(), seed)


def _write_run(store, spec, t0, epochs=(), finished=True):
    """A run's events as the trainer writes them, at chosen times: (train_s, images, captures) per epoch."""
    from kdengine.store.runstore import EVENTS

    store.create(spec)
    lines = [{"t": t0, "type": "lifecycle", "state": "running"},
             {"t": t0, "type": "start", "prepare_s": 2.0, "val_images": 20}]
    t = t0 + 2.0
    for i, (train_s, images, captures) in enumerate(epochs, start=1):
        t += train_s + 0.5
        lines.append({"t": t, "type": "epoch", "epoch": i, "epoch_s": train_s + 0.5,
                      "timing": {"train_s": train_s, "images": images, "first_batch_s": 0.01, "val_s": 0.5,
                                 "captures": captures}})
    if finished:
        lines.append({"t": t, "type": "lifecycle", "state": "finished"})
    path = store.run_dir(spec.run_id) / EVENTS
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_steady_epochs_leave_out_the_first_and_every_epoch_with_a_capture(tmp_path):
    """N7: the benchmark's epoch 2 held the partial batch's capture, timed as steady."""
    from kdengine.store import RunStore

    store, spec = RunStore(tmp_path), _spec("test_resnet")
    _write_run(store, spec, 100.0, [(3.0, 300, 1), (2.0, 300, 2), (1.0, 300, 2), (1.0, 300, 2), (1.1, 300, 2)])
    f = gpu.run_figures(store, spec.run_id)
    assert f["steady_epochs"] == [3, 4, 5] and f["steady_rates"] == pytest.approx([300.0, 300.0, 300 / 1.1])
    assert f["first_epoch_extra_s"] == pytest.approx(2.0)


def test_the_grid_projects_before_all_its_runs_finish(tmp_path):
    """N9: the grid projected only when all 32 runs finished; a section stopped at its deadline kept nothing. An
    unfinished run is projected from a finished one of its shape, else of its student; a lower bound while a run
    has neither."""
    from kdengine.store import RunStore

    store = RunStore(tmp_path)
    epochs = [(1.0, 100, 0), (1.0, 100, 0)]
    done = [_spec("test_resnet"), _spec("test_efficientnet", ["test_resnet"])]
    for i, spec in enumerate(done):
        _write_run(store, spec, 100.0 + i, epochs)
    waiting = _spec("test_efficientnet", ["test_convnext"])  # its student ran (with another teacher)
    _write_run(store, waiting, 103.0, finished=False)
    ids = [s.run_id for s in done] + [waiting.run_id]
    flops = {m: 1e6 for m in ("test_resnet", "test_efficientnet", "test_convnext")}
    p = gpu._grid_projection(store, ids, flops, peak_tflops=1.0, started=100.0)
    assert p["finished"] == 2 and p["per_run"][waiting.run_id]["estimated_from"] == "its student"
    assert p["projected_full_grid_minutes_per_seed"] > 0 and p["projected_over_compute"] > 0
    alone = _spec("test_convnext", seed=1)  # no run of its shape or student has finished
    _write_run(store, alone, 104.0, finished=False)
    p = gpu._grid_projection(store, ids + [alone.run_id], flops, 1.0, 100.0)
    assert "projected_full_grid_minutes_per_seed" not in p and p["unprojected_runs"] == [alone.run_id]
    assert p["projected_minutes_lower_bound"] > 0


def test_packing_measures_runs_while_all_are_steady_at_once(tmp_path):
    """N15: vs_one came from 1-epoch runs (start-up, capture and evaluation overlapping, not kernels). Only the
    epochs in the window where every run is past its first count."""
    from kdengine.store import RunStore

    store = RunStore(tmp_path)
    a, b = _spec("test_resnet", seed=0), _spec("test_resnet", seed=1)
    _write_run(store, a, 100.0, [(1.0, 100, 0), (1.0, 100, 0), (1.0, 100, 0), (1.0, 100, 0)])
    _write_run(store, b, 100.5, [(1.0, 100, 0), (2.0, 100, 0), (2.0, 100, 0), (2.0, 100, 0)])
    o = gpu.steady_overlap(store, [a.run_id, b.run_id])
    # both steady from 104.0 (b's second epoch) to 107.5 (a's last): a's epochs 3 and 4 (100 img/s) and b's epoch 2
    # (50 img/s) lie inside; a's epoch 2 began before b was steady, b's later epochs end after a did
    assert o["overlap"] and o["window_s"] == pytest.approx(3.5) and o["per_run"] == pytest.approx([100.0, 50.0])
    late = _spec("test_resnet", seed=2)
    _write_run(store, late, 200.0, [(1.0, 100, 0), (1.0, 100, 0)])
    assert gpu.steady_overlap(store, [a.run_id, late.run_id])["overlap"] is None  # never steady together


# -- deadlines and killed pytests -------------------------------------------------------------------------------------
def test_a_section_stopped_at_its_deadline_keeps_the_figures_it_had(tmp_path, monkeypatch):
    def slow(s, root, keep):
        keep({"measured": 1.0})
        time.sleep(120)

    monkeypatch.setitem(gpu.SECTION_FUNCS, "breakdown", slow)
    t0 = time.time()
    out = gpu.section_in_child("breakdown", gpu.Setup("cpu", True), tmp_path, 2.0, fork=True)
    assert time.time() - t0 < 15
    assert out["measured"] == 1.0 and out["stopped"].startswith("deadline")


def test_a_section_past_its_deadline_is_stopped_with_every_worker_it_started(tmp_path):
    """``--budget-s`` is a hard limit: the packing section (detached workers) is stopped at its share, with every
    worker it started."""
    out = tmp_path / "bench.json"
    before = _packing_workers()  # another session's, on a shared machine
    t0 = time.time()
    gpu.main(["--device", "cpu", "--quick", "--sections", "packing", "--budget-s", "6", "--out", str(out)])
    assert time.time() - t0 < 20
    packing = json.loads(out.read_text())["sections"]["packing"]
    assert packing["stopped"].startswith("deadline") and packing["seconds"] < 10
    time.sleep(1)
    assert not _packing_workers() - before, "a stopped section's workers were left running"


def _packing_workers() -> set[str]:
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "kdengine worker" in cmd and "/packing " in cmd:
            found.add(f"{proc.name} {cmd}")
    return found


def test_a_killed_pytest_keeps_every_outcome_it_had(tmp_path):
    """N11: the outcomes were read from JUnit XML, written at the session's end: a pytest killed at its limit lost
    them all. Each outcome is written as it is known; what never ran reads "not run"."""
    (tmp_path / "test_k.py").write_text(
        "import os, signal, pytest\n"
        "@pytest.mark.gates('device_input')\n"
        "def test_first():\n    pass\n"
        "@pytest.mark.gates('cuda_graph')\n"
        "def test_killed():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        "@pytest.mark.gates('cuda_graph')\n"
        "def test_never():\n    pass\n")
    tests = verify.run_tests(60, [str(tmp_path / "test_k.py")], fork=False, tmp=tmp_path)
    outcome = {k.split("::")[-1]: v["outcome"] for k, v in tests["tests"].items()}
    assert outcome == {"test_first": "passed", "test_killed": "not run", "test_never": "not run"}
    assert verify.tests_for("device_input", tests)[0] and not verify.tests_for("cuda_graph", tests)[0]
    assert outcomes.read(tmp_path / "nothing.jsonl") == {}


def test_an_epochs_training_time_keeps_microseconds(capsys, monkeypatch):
    """The rates the speed-ups are read from come from each epoch's train_s: rounded to milliseconds on the wall
    clock, a 60 ms epoch's rates tied on both paths of the CPU rehearsal and its ratio had no interval (the CI run
    that failed). On a clock that ticks 12.3457 ms a reading, train_s keeps every digit to the microsecond."""
    import json
    import time as real_time
    from types import SimpleNamespace

    from kdengine.cli import main
    from kdengine.paths import runs_dir
    from kdengine.store import RunStore
    from kdengine.training import trainer
    from tests.engine_helpers import FAST

    ticks = iter(range(10**9))
    clock = SimpleNamespace(**{name: getattr(real_time, name) for name in dir(real_time) if not name.startswith("_")})
    clock.perf_counter = clock.time = lambda: 1000.0 + 0.0123457 * next(ticks)  # the wall clock too: either one
    monkeypatch.setattr(trainer, "time", clock)
    assert main(["train", *FAST, "--epochs", "1", "--strategy", "baseline", "--student", "test_resnet", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    epoch = next(e for e in RunStore(runs_dir()).read_events(run_id)[0] if e["type"] == "epoch")
    train_s = epoch["timing"]["train_s"]
    assert train_s > 0 and round(train_s, 3) != train_s and round(train_s, 6) == train_s, train_s
