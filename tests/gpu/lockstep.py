"""Lockstep: every graphed update checked against the eager step on the same state and the same batch.

The graphed run's own trainer, one step at a time: snapshot everything an update changes (the weights, BatchNorm's
running statistics, the optimiser's state and learning-rate tensors, the epoch's running sums, the shared teacher
outputs being kept), run the step eagerly, note the result, restore the snapshot in place (the graphs hold these
tensors' addresses), then let :class:`GraphedStep` do the same step (a warm-up, a capture and its first replay, or
a replay) and compare the two results. The run goes on from the graph's result, so every later replay is checked
too, on the state the graph itself produced; and each check reads the weights as the step left them, never the
best checkpoint (``Trainer.run()`` ends by loading that).

Why this rather than an eager run beside a graphed run (the earlier tests): two runs that differ by a rounding
in one step drift apart chaotically (a 1e-7 gradient perturbation gave a weight ratio of 0.71 after 60 SGD
steps), so their tolerance had to be loose enough to pass a defect, or tight enough to fail correct code. One
update from one state has no such drift: what differs is only the replay itself. ``deterministic()`` removes
the last source of noise (cuDNN's atomic-add algorithms, cuBLAS's split reductions), which Adam's normalisation
could otherwise blow up for gradients near zero; the two results then agree to rounding, and REL_TOL = 1e-2 of
the update is still 50x below the smallest defect in view: a replay that does nothing differs by 1.0 of the
update, a rate stale by one epoch of a 3-epoch cosine schedule by 0.5 or more, a stale teacher logit or an
input not copied into the graph by far more.

The models used draw no random numbers in a step (no dropout or drop-path), so both paths see the same numbers.
"""
from __future__ import annotations

import contextlib
import threading

import torch

REL_TOL = 1e-2
LOSS_TOL = 1e-3


@contextlib.contextmanager
def deterministic():
    """cuDNN's deterministic algorithms (cudnn.benchmark still picks among them). cuBLAS's fixed workspaces
    ($CUBLAS_WORKSPACE_CONFIG) must be set before the process's first cuBLAS call: tests/gpu/conftest.py does."""
    old = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic = old


def state_tensors(trainer) -> dict[str, dict[str, torch.Tensor]]:
    """Everything one update changes, by kind and name (the live tensors, not copies)."""
    step, opt = trainer.step, trainer.step.opt
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    optim, rates = {}, {}
    for gi, group in enumerate(opt.param_groups):
        if torch.is_tensor(group["lr"]):
            rates[f"group{gi}.lr"] = group["lr"]
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v):
                    optim[f"{names.get(id(p), id(p))}.{k}"] = v
    return {"weights": dict(trainer.model.named_parameters()),
            "buffers": {n: b for n, b in trainer.model.named_buffers() if b.is_floating_point()},
            "counters": {n: b for n, b in trainer.model.named_buffers() if not b.is_floating_point()},
            "optimizer": optim, "rates": rates,
            "sums": {"loss_sum": step.loss_sum, "ce_sum": step.ce_sum, "confusion": step.confusion},
            "teacher_outputs": {f"teacher{i}": t for i, t in enumerate(step.teacher_logits)}}


def _clone(tensors):
    return {kind: {n: t.detach().clone() for n, t in group.items()} for kind, group in tensors.items()}


@torch.no_grad()
def _restore(tensors, saved) -> None:
    for kind, group in tensors.items():
        for n, t in group.items():
            t.copy_(saved[kind][n])


def _flat(group: dict) -> torch.Tensor:
    return torch.cat([t.detach().double().flatten() for t in group.values()]) if group else torch.zeros(0)


def compare(before, eager, graphed) -> dict[str, float]:
    """Per kind: ||graphed - eager|| / ||eager - before||, the graph's error as a share of what the update changed
    (0 where the update changed nothing and neither did the graph; inf where only the graph changed it)."""
    out = {}
    for kind in before:
        b, e, g = _flat(before[kind]), _flat(eager[kind]), _flat(graphed[kind])
        if b.numel() != e.numel():  # the optimiser's first step creates its state: from nothing
            b = torch.zeros_like(e)
        moved, err = (e - b).norm().item(), (g - e).norm().item()
        out[kind] = err / moved if moved > 0 else (0.0 if err == 0 else float("inf"))
    return out


class Lockstep:
    """A trainer hook that puts every step of a graphed run in lockstep with the eager step (see the module's note).

    ``checks``: one record per step: its epoch, what the graphed step did (``eager`` warm-up, ``capture``,
    ``replay``), the relative error per kind and the losses. ``during_capture``: set while a step that captures
    runs (a chattering thread counts its calls made then). ``final``: the weights as the last epoch left them."""

    def __init__(self) -> None:
        self.checks: list[dict] = []
        self.capturing = threading.Event()
        self.final: torch.Tensor | None = None
        self.start: torch.Tensor | None = None

    # -- the hook ----------------------------------------------------------------------------------------------
    def on_start(self, trainer) -> None:
        self.trainer, self.graphed = trainer, trainer.run_step
        trainer.run_step = self.step
        self.start = self.weights()

    def on_epoch_start(self, trainer, epoch) -> None:
        self.epoch = epoch

    def on_step(self, trainer, epoch, step, out) -> bool:
        return False

    def on_epoch_end(self, trainer, epoch, event) -> None:
        self.final = self.weights()

    def weights(self) -> torch.Tensor:
        return torch.cat([p.detach().float().flatten() for p in self.trainer.model.parameters()]).clone()

    # -- one step in lockstep --------------------------------------------------------------------------------
    def step(self, raw: dict):
        g = self.graphed
        opt = g.step.opt
        tensors = state_tensors(self.trainer)  # again each step: the optimiser's state appears at its first step
        before, stateless = _clone(tensors), [p for group in opt.param_groups for p in group["params"]
                                              if p not in opt.state]
        e_out = g._eager(raw)  # the warm-up's own path: a side stream, joined back
        eager = _clone(state_tensors(self.trainer))
        e_loss = e_out.loss.float().item()
        _restore(tensors, before)
        for p in stateless:  # the state the eager step created: the graphed step creates its own
            opt.state.pop(p, None)
        captures = g.captures
        n = int(raw["pos"].shape[0])
        if n not in g.graphs or g.mode != g.step.mode:  # this call may capture
            self.capturing.set()
        try:
            out = g(raw)
        finally:
            self.capturing.clear()
        graphed = _clone(state_tensors(self.trainer))
        did = ("capture" if g.captures > captures else
               "replay" if n in g.graphs and out is g.graphs[n].out else "eager")
        moved = (_flat(eager["weights"]) - _flat(before["weights"])).norm().item()
        self.checks.append({"epoch": self.epoch, "did": did, "n": n, "rel": compare(before, eager, graphed),
                            "moved": moved, "loss_eager": e_loss, "loss_graphed": out.loss.float().item()})
        return out

    # -- the verdict ---------------------------------------------------------------------------------------------
    def assert_agreed(self, min_replays: int) -> None:
        """Every graphed step (capture or replay) agreed with the eager step on every kind, and there were enough of
        them; the warm-up steps (eager both ways) agreed too."""
        bad = [c for c in self.checks if max(c["rel"].values()) > REL_TOL
               or abs(c["loss_graphed"] - c["loss_eager"]) > LOSS_TOL * max(1.0, abs(c["loss_eager"]))]
        assert not bad, f"{len(bad)} of {len(self.checks)} steps disagree with the eager step; first: {bad[0]}"
        graphed = [c for c in self.checks if c["did"] != "eager"]
        assert len([c for c in graphed if c["did"] == "replay"]) >= min_replays, \
            f"{len(graphed)} graphed steps of {len(self.checks)}: the schedule never reached the graph"
        still = [c for c in graphed if c["moved"] == 0.0]
        assert not still, f"{len(still)} graphed steps whose update changed no weight: nothing was compared there"
        assert self.final is not None and (self.final - self.start).norm() > 0, "the weights never moved"

    def worst(self) -> dict[str, float]:
        kinds = self.checks[0]["rel"] if self.checks else {}
        return {k: max(c["rel"][k] for c in self.checks) for k in kinds}


class Chatter:
    """A thread that keeps making the CUDA calls the loader's pin-memory thread and the host-gather thread make:
    pinning host memory (cudaHostAlloc, while its blocks are new) and, as the caching host allocator does before it
    reuses a block, querying an event (recorded on a stream of its own). A capture in the default "global" error
    mode forbids such calls from any thread, so finding 1 (capture not thread-local) fails every time rather than
    when the pin thread happens to be busy (it is most likely idle at capture). ``during_capture`` counts the calls
    made while ``capturing`` is set: the test asserts that some were."""

    def __init__(self, device: torch.device, capturing: threading.Event) -> None:
        self.device, self.capturing = device, capturing
        self.calls = self.during_capture = 0
        self.error: BaseException | None = None  # a thread's exception is otherwise lost: the test asserts none
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chatter", daemon=True)

    def _run(self) -> None:
        try:
            if self.device.index is not None:  # "cuda" names the current device, which a new thread starts on
                torch.cuda.set_device(self.device.index)
            stream, held = torch.cuda.Stream(), []
            while not self.stop.is_set():
                held.append(torch.empty(1 << 18, dtype=torch.uint8).pin_memory())
                done = torch.cuda.Event()
                done.record(stream)
                done.query()
                self.calls += 1
                self.during_capture += self.capturing.is_set()
                if len(held) >= 256:  # 64 MiB pinned at most
                    held.clear()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def __enter__(self) -> "Chatter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
