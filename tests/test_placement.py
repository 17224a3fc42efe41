"""Placement (a run keeps the device it asked for) and packing (workers per GPU, fitted to measured peaks)."""
from __future__ import annotations

import pytest

from kdengine.execution import packing
from kdengine.cli import main
from kdengine.errors import UsageError
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from kdengine.execution.worker import Worker, next_claimable
from tests.engine_helpers import FAST

SMI = """0, NVIDIA H100 80GB HBM3, 81559, 1024, 37
1, NVIDIA H100 80GB HBM3, 81559, 0, 0
garbage line
"""


def test_a_cpu_worker_never_takes_a_run_queued_for_cuda(capsys):
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--queue",
                 "--device", "cuda"]) == 0
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_efficientnet", "--queue",
                 "--device", "auto"]) == 0
    capsys.readouterr()
    store = RunStore(runs_dir())
    cuda_run, auto_run = store.list_ids()
    assert store.read_status(cuda_run).device == "cuda" and store.read_status(auto_run).device == "auto"
    assert next_claimable(store, "cpu").run_id == auto_run
    assert next_claimable(store, "cuda").run_id == cuda_run
    assert not store.claim(cuda_run, "w", "cpu")
    assert Worker(store, "cpu", once=True).run() == 0
    assert store.read_status(auto_run).state == "finished"
    assert store.read_status(cuda_run).state == "queued"  # still waiting for a CUDA worker
    # where it trained is in the run's status and events, and runs show/list say it
    status = store.read_status(auto_run)
    assert status.trained_on["device"] == "cpu" and status.device == "auto"
    start = next(e for e in store.read_events(auto_run)[0] if e["type"] == "start")
    assert start["trained_on"]["device"] == "cpu" and start["trained_on"]["gpu"] is None
    assert main(["runs", "show", auto_run]) == 0
    assert "trained on cpu" in capsys.readouterr().out
    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "cuda" in listing.split(cuda_run)[1].splitlines()[0]
    # asking again, for the CPU, moves the queued run (the latest request wins)
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--queue",
                 "--device", "cpu"]) == 0
    assert store.read_status(cuda_run).device == "cpu"


def test_nvidia_smi_parsing():
    gpus = packing.parse_smi(SMI)
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0]["name"] == "NVIDIA H100 80GB HBM3" and gpus[0]["memory_total_mib"] == 81559
    assert gpus[0]["utilization"] == 37 and gpus[0]["memory_used_mib"] == 1024


@pytest.mark.parametrize("text", ["0", "9", "many", "-1"])
def test_runs_per_gpu_is_checked(text):
    with pytest.raises(UsageError, match="--runs-per-gpu"):
        packing.parse_runs_per_gpu(text)
    assert packing.parse_runs_per_gpu("auto") == "auto" and packing.parse_runs_per_gpu("8") == 8


def test_runs_show_on_a_live_run_and_runs_list_and_delete(capsys, tmp_path):
    from tests.tui_helpers import fake_finished_store, fake_study_store

    store, plan = fake_study_store(tmp_path / "runs")
    running = next(r for r in store.list_ids() if store.read_status(r).state == "running")
    assert main(["runs", "show", running, "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "progress: training; epoch 1/2, step 2/4 (25%), ETA 2m05s" in out
    assert main(["runs", "list", "--runs-dir", str(store.root)]) == 0
    listing = capsys.readouterr().out
    queued = next(r for r in store.list_ids() if store.read_status(r).state == "queued")
    assert " nan" not in listing and listing.split(queued)[1].splitlines()[0].rstrip().endswith("–")
    # two settings in one store: the list tells them apart
    other = tmp_path / "two"
    fake_finished_store(other, epochs=2)
    fake_finished_store(other, epochs=1)
    assert main(["runs", "list", "--runs-dir", str(other)]) == 0
    listing = capsys.readouterr().out
    rows = [line for line in listing.splitlines() if line.startswith("normal-")]
    assert len(rows) == 2 and {r.split()[-1] for r in rows} == {"epochs=1", "epochs=2"}
    # delete: says what goes, asks (or --yes), and refuses without a terminal
    teacher = next(r for r in store.list_ids() if r.startswith("ce-resnet10t-") and
                   store.read_status(r).state == "finished")
    assert main(["runs", "delete", teacher, "--runs-dir", str(store.root)]) == 2
    assert "needs a confirmation: pass --yes" in capsys.readouterr().err and store.exists(teacher)
    assert main(["runs", "delete", teacher, "--archive", "--yes", "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "use it as a teacher" in out and f"archived {teacher} to" in out and not store.exists(teacher)
    assert list((store.root / ".archive").glob(f"{teacher}-*"))
    assert main(["runs", "delete", running, "--yes", "--runs-dir", str(store.root)]) == 2
    assert "is running: stop it first" in capsys.readouterr().err
