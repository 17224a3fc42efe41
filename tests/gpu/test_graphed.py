"""The graphed step on a real card (make test-gpu), on every path the reviews found broken, each graphed update in
lockstep with the eager step on the same state and batch (``lockstep.py`` says why that, and not a second run),
with cuDNN's deterministic algorithms. What is compared is the weights (and the optimiser's state, BatchNorm's
statistics, the epoch's sums, the shared teacher outputs) as each step left them, never the best checkpoint.

Each test names the fast-path flags its outcome decides (``gates``; make gpu-verify reads them): a lockstep check
compares the graph with the eager step on the same input path, so it decides ``--cuda-graph`` alone.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.gpu import lockstep

pytestmark = pytest.mark.gpu

DATA = "synthetic:images=700,seed=2"  # 471 train images: 29 full batches of 16 and a partial one of 7
MIN_REPLAYS = 40  # of about 55 graphed steps in two epochs: "the schedule never reached the graph" cannot pass


@pytest.fixture(autouse=True)
def _deterministic():
    with lockstep.deterministic():
        yield


def _spec(strategy="baseline", teachers=(), epochs=2, **train):
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, build_specs

    t = TrainConfig(epochs=epochs, batch_size=16, **train)
    teacher = TrainConfig(epochs=2, batch_size=16)  # one teacher for every student here, whatever its settings
    return build_specs(strategy, "resnet10t", list(teachers), DataConfig(source=DATA, image_size=64), t,
                       KDConfig(), 0, teacher_train=teacher)


def _train(store, spec, graph: bool, device="cuda", device_input=True, chatter=False):
    """Train ``spec`` through the trainer itself; graphed, in lockstep (the check is returned), and with
    ``chatter`` beside a thread that makes the pin thread's CUDA calls all along (lockstep.Chatter)."""
    import contextlib

    from kdengine.store.queue import enqueue
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import Trainer

    dev = setup_device(device, device_input=device_input, cuda_graph=graph)
    enqueue(store, spec)
    store.claim(spec.run_id, "test")
    check = lockstep.Lockstep() if graph else None
    trainer = Trainer(store, spec, dev, hooks=[check] if check else [], progress=False, log=lambda m: None)
    noise = lockstep.Chatter(dev.device, check.capturing) if chatter else contextlib.nullcontext()
    with noise:
        metrics = trainer.run()
    torch.cuda.synchronize()
    store.write_metrics(spec.run_id, metrics)
    store.finish(spec.run_id, "finished")
    trainer.chatter = noise if chatter else None
    return trainer, check


def _graphs_of_both_shapes(trainer, check) -> None:
    """N1: the partial batch is graphed too; its size comes from the data, never from a figure written here."""
    partial = len(trainer.feed) % 16
    assert set(check.graphed.graphs) == ({16, partial} if partial else {16})
    assert check.graphed.captures >= (2 if partial else 1)


@pytest.mark.gates("cuda_graph")
@pytest.mark.parametrize("name,train,device,device_input", [
    ("cosine, clipping and SGD, partial batch, device input", {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                                                "schedule": "cosine", "grad_clip": 1.0}, "cuda", True),
    ("Adam, step schedule, with the loader (its pin-memory thread alive at capture)",
     {"schedule": "step", "step_size": 1, "gamma": 0.3}, "cuda", False),
    ("cuda:0 named explicitly", {"schedule": "cosine"}, "cuda:0", True),
])
def test_graphed_matches_eager(tmp_path, name, train, device, device_input):
    from kdengine.store import RunStore

    # a thread making the pin thread's CUDA calls all along: a capture that is not thread-local fails every time
    t, check = _train(RunStore(tmp_path), _spec(**train), True, device, device_input, chatter=True)
    check.assert_agreed(MIN_REPLAYS)
    _graphs_of_both_shapes(t, check)
    assert t.chatter.error is None and t.chatter.during_capture > 0, "no CUDA call beside a capture"
    if device == "cuda:0":
        assert torch.cuda.current_device() == 0 and t.dev.device == torch.device("cuda:0")


@pytest.mark.gates("cuda_graph")
def test_graphed_on_the_host_gather_path(tmp_path, monkeypatch):
    """The cache over its device budget: a thread gathers batches into pinned memory while the step is captured."""
    from kdengine.store import RunStore

    monkeypatch.setenv("KDSTUDY_DEVICE_CACHE_GB", "0.0001")
    t, check = _train(RunStore(tmp_path), _spec(schedule="cosine"), True)
    assert t.images.resident is None  # the host-gather path was the one taken
    check.assert_agreed(MIN_REPLAYS)
    _graphs_of_both_shapes(t, check)


@pytest.mark.gates("cuda_graph")
def test_kd_with_shared_outputs_changing_mode_between_epochs(tmp_path):
    """A student that reads stored teacher outputs in epoch 1 and computes (and keeps) them in epoch 2: the graph
    of epoch 1's branch must not replay in epoch 2, and what it keeps for the others must be the teacher's. One
    store, one teacher (N3: the earlier test compared the logits of two separately trained teachers)."""
    from kdengine.store import RunStore

    store = RunStore(tmp_path)
    first = _spec("normal", ["resnet10t"], epochs=1)  # another student: stores epoch 1's outputs only
    _train(store, first.teachers[0], graph=False)
    _train(store, first, graph=False)
    student = _spec("normal", ["resnet10t"], epochs=2, lr=0.002)
    assert student.teachers[0].run_id == first.teachers[0].run_id
    t, check = _train(store, student, True)
    events = [e for e in store.read_events(student.run_id)[0] if e.get("type") == "epoch"]
    assert [e.get("teacher_outputs") for e in events] == ["shared", "computed"]
    check.assert_agreed(MIN_REPLAYS)  # the kept outputs are among what each step is compared on
    assert {c["epoch"] for c in check.checks if c["did"] == "capture"} == {1, 2}  # captured again in the new mode
    outputs = sorted(store.run_dir(student.teachers[0].run_id).rglob("train-e000*.npy"))
    stored = {p.name: np.load(p) for p in outputs}
    assert "train-e0002.npy" in stored, "epoch 2's outputs were stored for the others"
    # what was kept is the teacher itself on epoch 2's views, recomputed here with the same batches
    again = np.zeros_like(stored["train-e0002.npy"])
    with torch.no_grad():
        for raw in t.feed.epoch(2):
            x, _ = t.feed.view(raw)
            with t.dev.autocast(cache=False):
                again[raw["pos"].cpu().numpy()] = t.teachers[0](x).float().cpu().numpy()
    np.testing.assert_allclose(stored["train-e0002.npy"], again, rtol=2e-2, atol=2e-2)  # bf16's spacing


@pytest.mark.gates("cuda_graph")
def test_resume_then_graph(tmp_path):
    """Stopped after epoch 1 and resumed graphed: the schedule must reach the rate tensor the new graph reads (the
    lockstep's eager step reads the rate the schedule set; a graph that baked in another rate disagrees with it)."""
    from kdengine.store import RunStore
    from kdengine.training import trainer as T
    from kdengine.training.device import setup_device

    spec = _spec(schedule="cosine", epochs=3)
    _, straight = _train(RunStore(tmp_path / "straight"), spec, True)
    straight.assert_agreed(MIN_REPLAYS)

    store = RunStore(tmp_path / "resumed")
    real = T.Trainer.end_epoch

    def end_epoch(self, epoch, *a, **k):
        real(self, epoch, *a, **k)
        if epoch == 1:
            raise KeyboardInterrupt

    T.Trainer.end_epoch = end_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            _train(store, spec, True)
    finally:
        T.Trainer.end_epoch = real
    store.finish(spec.run_id, "stopped", "stopped by the test after epoch 1")
    assert store.requeue(spec.run_id)
    store.claim(spec.run_id, "test")
    check = lockstep.Lockstep()
    trainer = T.Trainer(store, spec, setup_device("cuda", device_input=True, cuda_graph=True), hooks=[check],
                        progress=False, log=lambda m: None)
    trainer.run()
    assert {c["epoch"] for c in check.checks} == {2, 3}  # resumed: epochs 2 and 3 ran here
    check.assert_agreed(MIN_REPLAYS)
    lr = trainer.opt.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and lr.is_cuda and trainer.opt.param_groups[0]["capturable"]
    lrs = {e["epoch"]: e["lr"] for e in store.read_events(spec.run_id)[0] if e.get("type") == "epoch"}
    straight_lrs = {e["epoch"]: e["lr"] for e in RunStore(tmp_path / "straight").read_events(spec.run_id)[0]
                    if e.get("type") == "epoch"}
    assert lrs == pytest.approx(straight_lrs) and len(set(lrs.values())) == 3  # the schedule moved every epoch


@pytest.mark.gates("device_input", "cuda_graph")
def test_the_ledger_counts_reserved_memory_to_the_runs_end_and_the_cache_goes_with_the_run(tmp_path):
    """Through the executor, as a worker runs it: the recorded peak is the allocator's reserved peak of the whole
    run, the end's evaluation included (N4); afterwards the run's device-resident cache is gone (N6)."""
    from kdengine.execution import executor, packing
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue
    from kdengine.training import inputs
    from kdengine.training.device import setup_device

    store = RunStore(tmp_path)
    spec = _spec(epochs=1)
    enqueue(store, spec)
    store.claim(spec.run_id, "test")
    dev = setup_device("cuda", device_input=True, cuda_graph=True)
    executor.run_claimed(store, spec, dev, [], False, lambda m: None)
    key = packing.memory_key(spec, dev.memory_runtime(16))
    peak = packing.memory_table(store)[key]["peak"]
    assert peak == torch.cuda.max_memory_reserved() and peak >= torch.cuda.max_memory_allocated()
    assert not inputs._RESIDENT and torch.cuda.memory_reserved() < peak
