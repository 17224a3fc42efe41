"""Packing from the first run: slots from the cores, memory needs from estimates (then measured peaks),
admission at the claim, out-of-memory back to the queue, and the dry-run plan with a stand-in nvidia-smi."""
from __future__ import annotations

import os
import stat

import pytest

from kdengine.cli import main
from kdengine.execution import packing
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from tests.engine_helpers import FAST

GiB, MiB = 2**30, 2**20
SMI_80GB = "0, NVIDIA H100 80GB HBM3, 81559, 0, 0\n1, NVIDIA H100 80GB HBM3, 81559, 0, 0\n"


def queue(*args) -> None:
    assert main(["train", *FAST, "--queue", *args]) == 0


def test_auto_packs_from_the_first_run_and_tightens_with_measured_peaks(capsys):
    queue("--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet")
    capsys.readouterr()
    store = RunStore(runs_dir())
    gpus = packing.parse_smi(SMI_80GB)
    # nothing measured yet: the box's cores decide (16 cores, 2 GPUs: 8 each), not "one until a peak is known"
    plan = packing.plan_workers(store, "auto", gpus, cpus=16)
    assert [(p.index, p.workers) for p in plan] == [(0, 8), (1, 8)]
    assert "admitted when its memory fits" in plan[0].why
    assert [p.workers for p in packing.plan_workers(store, "auto", gpus, cpus=6)] == [3, 3]  # the cores bound it
    # a measured 12 GiB peak for every queued shape: 1.05 x 12 GiB + 0.6 GiB of context = 13,502 MiB; 5 fit in 90 %
    for key in packing.queued_keys(store):
        packing.record_peak(store, key, 12 * GiB)
    plan = packing.plan_workers(store, "auto", gpus, cpus=16)
    assert [p.workers for p in plan] == [5, 5] and "at most 5" in plan[0].why
    assert all(source == "measured" and fit == 5 for _, _, source, fit in plan[0].shapes)
    assert [p.workers for p in packing.plan_workers(store, 3, gpus, cpus=16)] == [3, 3]  # asked for: as asked


def test_needs_estimate_then_measure_and_estimates_are_checked_against_peaks(tmp_path):
    store = RunStore(tmp_path)
    packing.record_estimate(store, "a", 1 * GiB)
    packing.record_estimate(store, "b", 3 * GiB)
    table = packing.memory_table(store)
    assert packing.need(table, "a") == (GiB + packing.CONTEXT_BYTES, "estimated")
    assert packing.need(table, "z") == (None, "unknown")
    packing.record_peak(store, "a", 2 * GiB)  # the estimate fell short by 2x: every other estimate is scaled by it
    table = packing.memory_table(store)
    assert packing.need(table, "a")[1] == "measured"
    value, source = packing.need(table, "b")
    assert value == 6 * GiB + packing.CONTEXT_BYTES and "x2.00 from measured peaks" in source
    packing.record_oom(store, "a", 4 * GiB)  # out of memory with 4 GiB reserved: the need grows past it
    assert packing.need(packing.memory_table(store), "a") == (6 * GiB + packing.CONTEXT_BYTES,
                                                         "raised after an out-of-memory")
    packing.record_peak(store, "a", GiB)  # a smaller peak never replaces a larger one
    assert packing.memory_table(store)["a"]["peak"] == 2 * GiB


def test_admission_keeps_the_gpu_within_its_memory(tmp_path):
    store = RunStore(tmp_path)
    for i, reserved in enumerate((30 * GiB, 30 * GiB)):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "spec.json").write_text("{}")
        (d / "status.json").write_text(f'{{"state": "running", "gpu": "G", "reserved_bytes": {reserved}}}')
    capacity = 80 * GiB
    ok, why = packing.admits(store, "G", 10 * GiB, capacity)  # 60 of 72 GiB taken: 10 fits
    assert ok and "beside 2 run(s)" in why
    ok, why = packing.admits(store, "G", 13 * GiB, capacity)
    assert not ok and "waiting for GPU memory" in why and "12.0 GiB left" in why
    assert packing.admits(store, "other", 79 * GiB, capacity)[0]  # alone on its GPU: always admitted


def test_out_of_memory_beside_others_requeues_and_alone_fails(monkeypatch):
    import torch

    from kdengine.errors import RunFailed
    from kdengine.execution import executor
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import Trainer

    queue("--strategy", "baseline", "--student", "test_resnet")
    store = RunStore(runs_dir())
    (rid,) = store.list_ids()
    spec = store.load_spec(rid)

    class Place:
        gpu, capacity = "G", 80 * GiB

        def admit(self, spec):
            return True, "ok"

        def reservation(self, spec):
            return {"gpu": "G", "reserved_bytes": 4 * GiB}

    def oom(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "run", oom)
    neighbour = store.run_dir("neighbour")
    neighbour.mkdir()
    (neighbour / "spec.json").write_text("{}")
    (neighbour / "status.json").write_text('{"state": "running", "gpu": "G", "reserved_bytes": 1}')
    dev = setup_device("cpu")
    with pytest.raises(executor.Requeued, match="less crowded slot"):
        executor.ensure_finished(store, spec, dev, progress=False, log=lambda m: None, requeue=False,
                                 placement=Place())
    status = store.read_status(rid)
    assert status.state == "queued" and "out of GPU memory beside 1 run" in status.reason
    # 1.5 x what it had reserved of the allocator's (its 4 GiB claim less the CUDA context, which need() adds)
    assert packing.memory_table(store)[packing.memory_key(spec)]["oom"] == int(1.5 * (4 * GiB - packing.CONTEXT_BYTES))
    (neighbour / "status.json").write_text('{"state": "finished"}')  # now it is alone on the card: no retry loop
    with pytest.raises(RunFailed, match="alone on the card"):
        executor.ensure_finished(store, spec, dev, progress=False, log=lambda m: None, requeue=False,
                                 placement=Place())
    assert store.read_status(rid).state == "failed"


def test_worker_dry_run_prints_the_plan_with_a_stand_in_80gb_card(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 81559, 0, 0'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    thesis = ["--image-size", "224", "--batch-size", "16"]
    for student in ("resnet18", "resnet50"):
        queue("--strategy", "baseline", "--student", student, *thesis)
    capsys.readouterr()
    store = RunStore(runs_dir())
    before = sorted(p.name for p in store.root.rglob("*"))
    assert main(["worker", "--runs-per-gpu", "auto", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "GPU 0 (NVIDIA H100 80GB HBM3, 80 GiB)" in out
    workers = int(out.split("GiB): ")[1].split(" worker")[0])
    assert 1 <= workers <= min(8, os.cpu_count() or 1)
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    r18, r50 = lines["resnet18|-|b16|224px|loader|eager|e256"], lines["resnet50|-|b16|224px|loader|eager|e256"]
    need = {k: float(v.split("needs ")[1].split(" GiB")[0]) for k, v in (("r18", r18), ("r50", r50))}
    assert 0.6 < need["r18"] < need["r50"] < 8 and "(estimated)" in r18  # resnet50 at batch 16 needs more, not 80 GB
    assert sorted(p.name for p in store.root.rglob("*")) == before  # started nothing, wrote nothing
    assert not store.live_workers()
