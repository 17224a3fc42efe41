"""The graphed step against the eager one on a real card, on every path the review found broken (make test-gpu).

Each check trains the same run twice, eagerly and graphed (same seed, data, order and augmentation draws), through
the trainer itself, and compares every step's loss and the weights' movement. Tolerances, and why:

- **per-step loss**: |graphed − eager| ≤ LOSS_TOL (3e-2, relative). Both run bf16 autocast with the same kernels in
  the same order, but cuDNN's benchmark may choose other algorithms in the two processes' runs, and bf16 has 8
  bits of mantissa (0.4 % per rounding): a few steps of such drift stay well under 3 %, while a replay on stale
  teacher logits or a frozen learning rate moves the loss by far more within an epoch.
- **weight movement**: ‖Δw_graphed − Δw_eager‖ / ‖Δw_eager‖ ≤ DELTA_TOL (0.1), Δw = final − initial weights. A
  graph whose replays did nothing has ratio 1.0; one that trained at a stale rate or on stale logits, about its
  error's share of the movement; eager-vs-eager reruns on a card sit near 1e-3 to 1e-2.

Two epochs of ~40 steps each (the partial batch included): enough steps that "replays did nothing" or "the
schedule never reached the graph" cannot pass.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

LOSS_TOL = 3e-2
DELTA_TOL = 0.1
DATA = "synthetic:images=700,seed=2"  # 490 train images: 30 full batches of 16 and a partial one of 10


class Recorder:
    """Every step's loss (cloned: a replay returns the graph's own tensor), and the weights at the start."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.start = None

    def on_start(self, trainer) -> None:
        self.start = torch.cat([p.detach().float().flatten().clone() for p in trainer.model.parameters()])

    def on_epoch_start(self, trainer, epoch) -> None: ...

    def on_step(self, trainer, epoch, step, out) -> bool:
        self.losses.append(out.loss.detach().float().clone())
        return False

    def on_epoch_end(self, trainer, epoch, event) -> None: ...


def _spec(strategy="baseline", teachers=(), epochs=2, **train):
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, build_specs

    t = TrainConfig(epochs=epochs, batch_size=16, **train)
    teacher = TrainConfig(epochs=2, batch_size=16)  # one teacher for every student here, whatever its settings
    return build_specs(strategy, "resnet10t", list(teachers), DataConfig(source=DATA, image_size=64), t,
                       KDConfig(), 0, teacher_train=teacher)


def _train(store, spec, graph: bool, device="cuda", device_input=True):
    from kdengine.store.queue import enqueue
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import Trainer

    dev = setup_device(device, device_input=device_input, cuda_graph=graph)
    enqueue(store, spec)
    store.claim(spec.run_id, "test")
    rec = Recorder()
    trainer = Trainer(store, spec, dev, hooks=[rec], progress=False, log=lambda m: None)
    metrics = trainer.run()
    torch.cuda.synchronize()
    end = torch.cat([p.detach().float().flatten() for p in trainer.model.parameters()])
    store.write_metrics(spec.run_id, metrics)
    store.finish(spec.run_id, "finished")
    return trainer, rec, end, metrics


def _compare(eager, graphed):
    (_, r_e, end_e, _), (t_g, r_g, end_g, _) = eager, graphed
    assert len(r_e.losses) == len(r_g.losses) > 40
    le, lg = torch.stack(r_e.losses).cpu(), torch.stack(r_g.losses).cpu()
    rel = ((lg - le).abs() / le.abs().clamp_min(1e-3)).max().item()
    assert rel <= LOSS_TOL, rel
    d_e, d_g = end_e - r_e.start, end_g - r_g.start
    assert d_e.norm() > 0
    ratio = ((d_g - d_e).norm() / d_e.norm()).item()
    assert ratio <= DELTA_TOL, ratio
    return t_g


def _teacher(store, student, device_input=True):
    """Train a KD spec's teacher (eagerly)."""
    _train(store, student.teachers[0], graph=False, device_input=device_input)


@pytest.mark.parametrize("name,train,device,device_input", [
    ("cosine, clipping and SGD, partial batch, device input", {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                                                "schedule": "cosine", "grad_clip": 1.0}, "cuda", True),
    ("Adam, step schedule, with the loader (its pin-memory thread alive at capture)",
     {"schedule": "step", "step_size": 1, "gamma": 0.3}, "cuda", False),
    ("cuda:0 named explicitly", {"schedule": "cosine"}, "cuda:0", True),
])
def test_graphed_matches_eager(tmp_path, name, train, device, device_input):
    from kdengine.store import RunStore

    spec = _spec(**train)
    eager = _train(RunStore(tmp_path / "e"), spec, False, device, device_input)
    graphed = _train(RunStore(tmp_path / "g"), spec, True, device, device_input)
    t = _compare(eager, graphed)
    assert t.run_step.captures >= 2 and set(t.run_step.graphs) == {16, 10}  # the partial batch is graphed too
    if device == "cuda:0":
        assert torch.cuda.current_device() == 0 and t.dev.device == torch.device("cuda:0")


def test_graphed_on_the_host_gather_path(tmp_path, monkeypatch):
    """The cache over its device budget: a thread gathers batches into pinned memory while the step is captured."""
    from kdengine.store import RunStore

    monkeypatch.setenv("KDSTUDY_DEVICE_CACHE_GB", "0.0001")
    spec = _spec(schedule="cosine")
    eager = _train(RunStore(tmp_path / "e"), spec, False)
    graphed = _train(RunStore(tmp_path / "g"), spec, True)
    t = _compare(eager, graphed)
    assert t.images.resident is None  # the host-gather path was the one taken


def test_kd_with_shared_outputs_changing_mode_between_epochs(tmp_path):
    """A student that reads stored teacher outputs in epoch 1 and computes (and keeps) them in epoch 2: the graph
    of epoch 1's branch must not replay in epoch 2, and what it stores for the others must be the teacher's."""
    from kdengine.store import RunStore

    outputs = {}
    for graph in (False, True):
        store = RunStore(tmp_path / str(graph))
        first = _spec("normal", ["resnet10t"], epochs=1)  # another student: stores epoch 1's outputs only
        _teacher(store, first)
        _train(store, first, graph=False)
        student = _spec("normal", ["resnet10t"], epochs=2, lr=0.002)
        outputs[graph] = _train(store, student, graph)
        events = [e for e in store.read_events(student.run_id)[0] if e.get("type") == "epoch"]
        assert [e.get("teacher_outputs") for e in events] == ["shared", "computed"]
        assert student.teachers[0].run_id == first.teachers[0].run_id
        shared = sorted((store.run_dir(student.teachers[0].run_id)).rglob("train-e0002.npy"))
        assert shared, "epoch 2's outputs were stored for the others"
        outputs[(graph, "e2")] = np.load(shared[0])
    _compare(outputs[False], outputs[True])
    # the logits saved for every other student are the teacher's, not a stale buffer
    np.testing.assert_allclose(outputs[(True, "e2")], outputs[(False, "e2")], rtol=2e-2, atol=2e-2)


def test_resume_then_graph(tmp_path):
    """Stopped after epoch 1 and resumed graphed: the schedule must reach the graph's rate tensor."""
    from kdengine.store import RunStore
    from kdengine.training import trainer as T

    spec = _spec(schedule="cosine", epochs=3)
    straight = _train(RunStore(tmp_path / "straight"), spec, True)

    store = RunStore(tmp_path / "resumed")
    stop_after = {"epoch": 1}
    real = T.Trainer.end_epoch

    def end_epoch(self, epoch, *a, **k):
        real(self, epoch, *a, **k)
        if epoch == stop_after["epoch"]:
            raise KeyboardInterrupt

    T.Trainer.end_epoch = end_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            _train(store, spec, True)
    finally:
        T.Trainer.end_epoch = real
    from kdengine.training.device import setup_device

    store.finish(spec.run_id, "stopped", "stopped by the test after epoch 1")
    assert store.requeue(spec.run_id)

    store.claim(spec.run_id, "test")
    rec = Recorder()
    trainer = T.Trainer(store, spec, setup_device("cuda", device_input=True, cuda_graph=True), hooks=[rec],
                        progress=False, log=lambda m: None)
    trainer.run()
    lr = trainer.opt.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and lr.is_cuda and trainer.opt.param_groups[0]["capturable"]
    lrs = {e["epoch"]: e["lr"] for e in store.read_events(spec.run_id)[0] if e.get("type") == "epoch"}
    straight_lrs = {e["epoch"]: e["lr"] for e in RunStore(tmp_path / "straight").read_events(spec.run_id)[0]
                    if e.get("type") == "epoch"}
    assert lrs == pytest.approx(straight_lrs)
    end = torch.cat([p.detach().float().flatten() for p in trainer.model.parameters()])
    _, r_s, end_s, _ = straight
    ratio = ((end - end_s).norm() / (end_s - r_s.start).norm()).item()
    assert ratio <= DELTA_TOL, ratio


def test_the_ledger_counts_reserved_memory(tmp_path):
    from kdengine.execution import packing
    from kdengine.execution.placement import MemoryPeak
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import Trainer

    store = RunStore(tmp_path)
    spec = _spec(epochs=1)
    enqueue(store, spec)
    store.claim(spec.run_id, "test")
    dev = setup_device("cuda", device_input=True, cuda_graph=True)
    trainer = Trainer(store, spec, dev, hooks=[MemoryPeak(store)], progress=False, log=lambda m: None)
    trainer.run()
    key = packing.memory_key(spec, dev.memory_runtime(16))
    peak = packing.memory_table(store)[key]["peak"]
    assert peak >= torch.cuda.max_memory_allocated() and peak == torch.cuda.max_memory_reserved()
