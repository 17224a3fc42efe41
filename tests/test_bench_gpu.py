"""benchmarks/gpu.py runs on a machine without a GPU (``--device cpu --quick``): its step breakdown here."""
from __future__ import annotations

import json


def test_the_gpu_benchmark_runs_on_the_cpu(tmp_path):
    from benchmarks.gpu import main

    out = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--quick", "--sections", "breakdown", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["machine"]["device"] == "cpu" and result["quick"] is True
    for mode in ("default", "fast"):
        for what in ("ce", "kd"):
            parts = result["sections"]["breakdown"][mode][what]
            assert parts["steps"] > 0 and parts["device_s"] > 0
            assert abs(sum(parts["shares"].values()) - 1) < 1e-9


def test_a_section_past_its_deadline_is_stopped_and_keeps_its_figures(tmp_path):
    """``--budget-s`` is a hard limit: the packing section (detached workers, minutes on the CPU) is stopped at its
    share of the budget, with every worker it started, and the figures it had are kept."""
    import time

    from benchmarks.gpu import main

    out = tmp_path / "bench.json"
    t0 = time.time()
    main(["--device", "cpu", "--quick", "--sections", "packing", "--budget-s", "6", "--out", str(out)])
    assert time.time() - t0 < 15
    packing = json.loads(out.read_text())["sections"]["packing"]
    assert packing["stopped"].startswith("deadline") and packing["seconds"] < 10
    time.sleep(1)
    assert not _workers_of("packing-"), "a stopped section's workers were left running"


def _workers_of(marker: str) -> list[str]:
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "worker" in cmd and marker in cmd:
            found.append(cmd)
    return found


def test_the_verdict_turns_a_flag_on_only_when_its_tests_pass_and_it_is_faster():
    from benchmarks.verify import targets, verdict

    passed = {"exit": 0, "tests": {"tests.gpu.test_graphed::a": "passed", "tests.gpu.test_cuda::b": "passed"}}
    fast = {"resnet18": {"ce": 1.6, "kd_shared": 1.4}, "seresnet101": {"ce": 1.2, "kd_shared": 1.1}}
    bench = {"sections": {"archs": {"ratios": {"device_input": fast,
                                               "cuda_graph": {"resnet18": {"ce": 1.3, "kd_shared": 0.97},
                                                              "seresnet101": {"ce": 1.1, "kd_shared": 1.05}}},
                                    "fast": {"runs": {"resnet18": {"ce": {"images_per_s": 3200}}}}}}}
    v = verdict(passed, bench)
    assert v["device_input"]["default"] and v["device_input"]["line"].startswith("--device-input: ON BY DEFAULT")
    assert not v["cuda_graph"]["default"] and "not faster on resnet18 (lowest 0.97x)" in v["cuda_graph"]["line"]
    failed = {"exit": 1, "tests": {**passed["tests"], "tests.gpu.test_graphed::test_resume_then_graph": "failed"}}
    v = verdict(failed, bench)
    assert not v["device_input"]["default"] and "test_resume_then_graph" in v["device_input"]["line"]
    assert not verdict({"exit": 5, "tests": {}}, bench)["device_input"]["default"]  # no test ran: never on
    one = {"sections": {"archs": {"ratios": {"device_input": {"resnet18": {"ce": 2.0, "kd_shared": 2.0}}}}}}
    assert "2 at least" in verdict(passed, one)["device_input"]["line"]
    t = targets(bench)
    assert t["resnet18_img_s"]["met"] is True and t["seresnet101_img_s"]["met"] is None
