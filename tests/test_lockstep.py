"""The GPU tests' lockstep check (tests/gpu/lockstep.py) on the CPU: a faithful stand-in for CUDA graphs passes
it, and each way a replay can go wrong fails it (a replay that does nothing, a learning rate baked in at capture,
an input never copied into the graph). So the check the GPU tests rest on can fail, and fails only on wrong replays.

The stand-in runs :class:`GraphedStep` itself: a "capture" runs the step and undoes it (a real capture records
and does not run), a "replay" runs the captured step again on the graph's static inputs and writes the result
into the captured outputs, as a CUDA graph does."""
from __future__ import annotations

import contextlib

import pytest
import torch

from kdengine.training.step import GraphedStep
from tests.gpu import lockstep


@pytest.fixture(autouse=True)
def _one_thread():
    """Both paths run in this process, so their agreement holds at any thread count; one is the fastest on a
    shared 2-core machine (its thread pools otherwise contend with the other processes')."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Graph:
    def __init__(self, cuda) -> None:
        self.cuda, self.run = cuda, None

    def pool(self):
        return id(self)

    def replay(self) -> None:
        if self.run is not None:
            self.run()


class _Recording:
    """The trainer's step as GraphedStep sees it; remembers what a capture ran (its input and its outputs)."""

    def __init__(self, step, cuda) -> None:
        self.inner, self.cuda = step, cuda

    @property
    def mode(self):
        return self.inner.mode

    @property
    def opt(self):
        return self.inner.opt

    def __call__(self, raw):
        out = self.inner(raw)
        if self.cuda.capturing is not None:
            self.cuda.capturing.update(raw=raw, out=out)
        return out


class EmulatedCuda:
    """torch.cuda as GraphedStep uses it; ``defect`` makes the replays wrong in one way."""

    def __init__(self, trainer, defect: str | None = None) -> None:
        self.trainer, self.defect, self.capturing = trainer, defect, None

    class Stream:
        def wait_stream(self, other) -> None: ...

    def current_stream(self):
        return self.Stream()

    @contextlib.contextmanager
    def stream(self, s):
        yield

    def CUDAGraph(self):  # noqa: N802 - torch's name
        return _Graph(self)

    @contextlib.contextmanager
    def graph(self, g, pool=None, capture_error_mode="global"):
        tensors = lockstep.state_tensors(self.trainer)
        saved = lockstep._clone(tensors)
        self.capturing = {}
        try:
            yield
        finally:
            lockstep._restore(tensors, saved)  # a capture records the step; it changes nothing
            captured, self.capturing = self.capturing, None
        g.run = self._replay(captured)

    def _replay(self, captured):
        step, out = self.trainer.step, captured["out"]
        raw = {k: v.clone() for k, v in captured["raw"].items()} if self.defect == "stale input" else captured["raw"]
        group = step.opt.param_groups[0]
        baked = float(group["lr"])

        def run() -> None:
            if self.defect == "no-op":
                return
            now = group["lr"]
            if self.defect == "stale rate":
                group["lr"] = baked
            new = step(raw)
            group["lr"] = now
            with torch.no_grad():  # a replay writes into the graph's own output tensors
                out.loss.copy_(new.loss)
                for k, v in new.terms.items():
                    out.terms[k].copy_(v)
        return run


class Emulate:
    """A hook, before the lockstep's: the run's step becomes a GraphedStep on the emulated CUDA."""

    def __init__(self, defect=None) -> None:
        self.defect = defect

    def on_start(self, trainer) -> None:
        cuda = EmulatedCuda(trainer, self.defect)
        trainer.run_step = GraphedStep(_Recording(trainer.step, cuda), trainer.spec.train.batch_size, cuda=cuda)

    def on_epoch_start(self, trainer, epoch) -> None: ...

    def on_step(self, trainer, epoch, step, out) -> bool:
        return False

    def on_epoch_end(self, trainer, epoch, event) -> None: ...


def _run(tmp_path, defect=None, epochs=3) -> lockstep.Lockstep:
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, build_specs
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import Trainer

    store = RunStore(tmp_path)
    spec = build_specs("baseline", "test_resnet", [], DataConfig(source="synthetic:images=140,seed=3", image_size=32),
                       TrainConfig(epochs=epochs, batch_size=16, optimizer="sgd", momentum=0.9, lr=0.05,
                                   schedule="cosine"), KDConfig(), 0)
    enqueue(store, spec)
    store.claim(spec.run_id, "test")
    check = lockstep.Lockstep()
    trainer = Trainer(store, spec, setup_device("cpu", device_input=True, cuda_graph=False),
                      hooks=[Emulate(defect), check], progress=False, log=lambda m: None)
    trainer.run()
    return check


def test_a_faithful_replay_agrees_with_the_eager_step_at_every_step(tmp_path):
    check = _run(tmp_path)
    did = [c["did"] for c in check.checks]
    assert did.count("capture") == 2 and did.count("replay") >= 10  # the full and the partial batch's graphs
    check.assert_agreed(min_replays=10)
    assert check.worst()["weights"] == 0.0  # the same arithmetic, on the CPU: bit for bit


@pytest.mark.parametrize("defect", ["no-op", "stale rate", "stale input"])
def test_each_wrong_replay_fails_the_check(tmp_path, defect):
    check = _run(tmp_path, defect, epochs=2)  # the second epoch's replays: a rate baked in during the first
    with pytest.raises(AssertionError, match="disagree with the eager step"):
        check.assert_agreed(min_replays=1)
    assert check.worst()["weights"] > 50 * lockstep.REL_TOL  # far above the tolerance, not near it
