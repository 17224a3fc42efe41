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
