"""The GPU path's logic that needs no GPU (issue 24's review, issue 36's): the graphed step's modes and shapes, a
resumed run's learning rate, the memory ledger (the run's end, the planner's keys, the resident cache), out-of-memory
of every kind (inside a capture too) and what follows it, the host-gather thread, the device named. What only a card
can show is in tests/gpu (make test-gpu). The tests marked ``gates`` are the CPU rehearsal's tests section
(make gpu-verify-dry)."""
from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest
import torch

from kdengine.execution import executor, packing
from kdengine.runspec import TrainConfig
from kdengine.training.optim import build_optimizer, load_optimizer_state
from kdengine.training.step import GraphedStep, StepOut

GiB = 2**30


# -- the graphed step, with torch.cuda stood in for ------------------------------------------------------------------
class FakeGraph:
    def __init__(self, cuda) -> None:
        self.cuda, self.mode = cuda, None

    def pool(self):
        return ("pool", id(self))

    def replay(self) -> None:
        self.cuda.replays.append((self.mode, self.cuda.step.mode))


class FakeCuda:
    """torch.cuda as GraphedStep uses it: a graph remembers the branch (mode) and shape it was captured with."""

    class Stream:
        def wait_stream(self, other) -> None: ...

    def __init__(self, step) -> None:
        self.step, self.replays, self.captures, self.eager = step, [], [], 0

    def current_stream(self):
        return self.Stream()

    @contextlib.contextmanager
    def stream(self, s):
        self.eager += 1
        yield

    def CUDAGraph(self):  # noqa: N802 - torch's name
        return FakeGraph(self)

    @contextlib.contextmanager
    def graph(self, g, pool=None, capture_error_mode="global"):
        g.mode = self.step.mode
        self.captures.append({"pool": pool, "mode": capture_error_mode, "graph": g})
        yield


class FakeStep:
    def __init__(self) -> None:
        self.reading = self.keeping = False
        self.opt = type("O", (), {"zero_grad": lambda self, set_to_none=True: None})()

    @property
    def mode(self):
        return self.reading, self.keeping

    def __call__(self, raw):
        return StepOut(torch.zeros(()), {})


def _batch(n):
    return {"pos": torch.arange(n)}


@pytest.mark.gates("cuda_graph")  # make gpu-verify-dry runs these through its tests section
def test_a_change_of_sharing_mode_between_epochs_is_seen_by_the_step():
    """The review's defect: a graph captured while reading shared teacher outputs kept replaying that branch
    after the mode changed (stale logits, saved for every other student). Every replay must be of a graph
    captured under the mode the step is in now."""
    step = FakeStep()
    cuda = FakeCuda(step)
    graphed = GraphedStep(step, batch_size=4, cuda=cuda)
    epoch = [4] * 6 + [2]  # six full batches and a partial one
    step.reading = True  # epoch 1: another student stored this epoch's outputs
    for n in epoch:
        graphed(_batch(n))
    step.reading, step.keeping = False, True  # epoch 2: nobody has: compute and keep them
    for n in epoch:
        graphed(_batch(n))
    step.reading, step.keeping = True, False  # epoch 3: reading again
    for n in epoch:
        graphed(_batch(n))
    assert cuda.replays and all(captured == now for captured, now in cuda.replays), cuda.replays
    assert graphed.captures >= 3  # one per mode at least: recaptured on each change


@pytest.mark.gates("cuda_graph")  # make gpu-verify-dry runs these through its tests section
def test_the_partial_batch_is_graphed_in_the_same_pool_and_capture_is_thread_local():
    step = FakeStep()
    cuda = FakeCuda(step)
    graphed = GraphedStep(step, batch_size=4, cuda=cuda)
    for _ in range(3):  # three epochs of 5 full batches and a partial one
        for n in [4] * 5 + [3]:
            graphed(_batch(n))
    sizes = {n for n in graphed.graphs}
    assert sizes == {4, 3}  # the partial batch has its own graph: it does not run eagerly every epoch
    assert [c["mode"] for c in cuda.captures] == ["thread_local", "thread_local"]
    first, second = cuda.captures
    assert first["pool"] is None and second["pool"] == first["graph"].pool()  # one pool for both
    assert graphed.graph is first["graph"]
    # eager steps: WARMUP full batches, then one partial batch (cuDNN's pick for its shape) before its capture
    assert cuda.eager == GraphedStep.WARMUP + 1


# -- a resumed run's learning rate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_after_a_resume_the_rate_is_the_tensor_the_schedule_fills(optimizer):
    """load_state_dict replaced the graphed optimiser's param groups: its rate became the checkpoint's CPU tensor
    (or float) and its flags the eager run's. The graph would bake that in while the schedule moved another."""
    t = TrainConfig(epochs=4, schedule="cosine", optimizer=optimizer)
    eager_model = torch.nn.Linear(3, 2)
    opt, sched = build_optimizer(eager_model.parameters(), t, torch.device("cpu"), graphed=False)
    eager_model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()  # last.pt of an eager run

    model = torch.nn.Linear(3, 2)
    g_opt, g_sched = build_optimizer(model.parameters(), t, torch.device("cpu"), graphed=True)
    rate = g_opt.param_groups[0]["lr"]
    flags = {k: g_opt.param_groups[0].get(k) for k in ("capturable", "fused")}
    load_optimizer_state(g_opt, saved_opt)
    g_sched.load_state_dict(saved_sched)
    group = g_opt.param_groups[0]
    assert group["lr"] is rate and float(rate) == pytest.approx(sched.get_last_lr()[0])
    assert {k: group.get(k) for k in flags} == flags
    g_sched.step()
    sched.step()
    assert float(rate) == pytest.approx(float(sched.get_last_lr()[0]))  # the schedule reaches the graph's tensor
    if optimizer != "sgd":
        assert all(s["step"].dtype == torch.float32 for s in g_opt.state.values())


def test_graphed_adam_is_fused():
    opt, _ = build_optimizer(torch.nn.Linear(2, 2).parameters(), TrainConfig(optimizer="adam"), torch.device("cpu"),
                             graphed=True)
    g = opt.param_groups[0]
    assert g["fused"] and g["capturable"] and not g.get("foreach") and torch.is_tensor(g["lr"])


# -- the memory ledger -----------------------------------------------------------------------------------------------
def _spec(source="synthetic", **train):
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, build_specs

    return build_specs("baseline", "test_resnet", [], DataConfig(source=source, image_size=32),
                       TrainConfig(**train), KDConfig(), 0)


def test_the_memory_key_tells_the_input_path_the_graph_and_the_eval_batch_apart():
    spec = _spec()
    keys = {packing.memory_key(spec, {"input": i, "cuda_graph": g, "eval_batch": e})
            for i in ("loader", "device") for g in (False, True) for e in (256, 512)}
    assert len(keys) == 8
    assert packing.memory_key(spec) == packing.memory_key(spec, {"input": "loader", "cuda_graph": False,
                                                                 "eval_batch": 256})


def test_the_ledger_records_reserved_memory_and_a_measured_peak_replaces_an_oom(tmp_path, monkeypatch):
    from kdengine.execution.placement import MemoryPeak
    from kdengine.store import RunStore
    from kdengine.training.device import DeviceSetup

    store = RunStore(tmp_path)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 3 * GiB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d=None: 5 * GiB)
    dev = DeviceSetup(torch.device("cuda"), None, True, 0, False, device_input=True, cuda_graph=True)
    trainer = type("T", (), {"dev": dev, "spec": _spec()})()
    key = packing.memory_key(trainer.spec, dev.memory_runtime(16))
    assert "|device|graph|e256" in key
    packing.record_oom(store, key, 4 * GiB)
    assert packing.need(packing.memory_table(store), key)[1] == "raised after an out-of-memory"
    MemoryPeak(store).on_epoch_end(trainer, 1, {})
    entry = packing.memory_table(store)[key]
    assert entry == {"peak": 5 * GiB}  # reserved, not allocated; the OOM's guess gone
    assert packing.need(packing.memory_table(store), key)[1] == "measured"


def test_a_device_input_estimate_counts_the_resident_cache():
    from kdengine.data.cache import cached_nbytes
    from kdengine.execution.placement import resident_bytes
    from kdengine.training.device import DeviceSetup

    spec = _spec("synthetic:images=140,seed=3")
    cpu = DeviceSetup(torch.device("cpu"), None, False, 0, False)
    assert resident_bytes(spec, cpu) == 0
    dev = DeviceSetup(torch.device("cpu"), None, False, 0, False, device_input=True)
    n = cached_nbytes(spec.data)
    assert n == 140 * 32 * 32 and resident_bytes(spec, dev) == n


# -- out of memory, of every kind ------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
    RuntimeError("cudaErrorMemoryAllocation: out of memory at context creation"),
])
def test_every_kind_of_oom_is_an_oom(exc):
    assert executor._is_oom(exc)


def test_not_an_oom():
    assert not executor._is_oom(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not executor._is_oom(ValueError("out of memory"))  # not the card's


class _Place:
    gpu, capacity = "G", 80 * GiB

    def reservation(self, spec):
        return {"gpu": "G", "reserved_bytes": 4 * GiB}


def _queued_run(tmp_path):
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue

    store = RunStore(tmp_path)
    spec = _spec()
    enqueue(store, spec)
    store.claim(spec.run_id, "w")
    return store, spec


def test_an_oom_beside_neighbours_that_have_since_finished_goes_back_to_the_queue(tmp_path):
    store, spec = _queued_run(tmp_path)
    with pytest.raises(executor.Requeued, match="beside 2 run"):  # two neighbours at its admission, none now
        executor._out_of_memory(store, spec, _Place(), lambda m: None, neighbours=2)
    assert store.read_status(spec.run_id).state == "queued"


def _placement(store, capacity=80 * GiB):
    """A real Placement on a stand-in 80 GiB card (its constructor asks torch.cuda for the card)."""
    from kdengine.execution.placement import Placement
    from kdengine.training.device import DeviceSetup

    place = object.__new__(Placement)
    place.gpu, place.capacity, place.store = "G", capacity, store
    place.dev = DeviceSetup(torch.device("cuda"), torch.bfloat16, True, 0, False)
    return place


def _neighbour(store, reserved=GiB):
    d = store.run_dir("neighbour")
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.json").write_text("{}")
    (d / "status.json").write_text(f'{{"state": "running", "gpu": "G", "reserved_bytes": {reserved}}}')


def test_after_its_oom_requeues_a_run_waits_for_an_empty_card_then_runs_alone(tmp_path, monkeypatch):
    """Finding 5: after MAX_OOM_REQUEUES crowded out-of-memories a run failed, although an empty card would have
    fitted it. It now waits for one: its need is the whole card, so it is admitted only alone and nothing joins it;
    crowded even then (a process outside the store), or out of memory alone, it fails: never a loop."""
    from kdengine.errors import RunFailed

    store, spec = _queued_run(tmp_path)
    place = _placement(store)
    monkeypatch.setattr(place, "reservation", lambda spec: {"gpu": "G", "reserved_bytes": 4 * GiB})
    for i in range(executor.MAX_OOM_REQUEUES):
        with pytest.raises(executor.Requeued, match=f"{i + 1} of {executor.MAX_OOM_REQUEUES}"):
            executor._out_of_memory(store, spec, place, lambda m: None, neighbours=1)
        store.claim(spec.run_id, "w")
    with pytest.raises(executor.Requeued, match="wait for an empty card"):
        executor._out_of_memory(store, spec, place, lambda m: None, neighbours=1)
    assert store.read_status(spec.run_id).state == "queued"
    monkeypatch.undo()
    assert place.need(spec) == place.capacity  # the whole card: admitted only alone
    _neighbour(store)
    ok, why = place.admit(spec)
    assert not ok and "waiting for GPU memory" in why
    (store.run_dir("neighbour") / "status.json").write_text('{"state": "finished"}')
    assert place.admit(spec) == (True, "alone on the GPU")
    store.claim(spec.run_id, "w", **place.reservation(spec))
    assert not packing.admits(store, "G", GiB, place.capacity)[0]  # nothing joins it while it runs
    with pytest.raises(RunFailed, match="although it waited for an empty card"):
        executor._out_of_memory(store, spec, place, lambda m: None, neighbours=1)
    assert store.read_status(spec.run_id).state == "failed"


def test_an_oom_alone_on_the_card_fails_at_once(tmp_path):
    from kdengine.errors import RunFailed

    store, spec = _queued_run(tmp_path)
    with pytest.raises(RunFailed, match="alone on the card"):
        executor._out_of_memory(store, spec, _Place(), lambda m: None, neighbours=0)


def test_an_ooms_raised_need_counts_the_cuda_context_once(tmp_path):
    """Finding 5: the claim (the need, context included) was recorded as the OOM's reserved bytes, and need() added
    the context again: each OOM inflated the shape's need by 1.5 contexts more than its memory grew."""
    store, spec = _queued_run(tmp_path)
    place = _placement(store)
    key = place.key(spec)
    packing.record_peak(store, key, 4 * GiB)  # measured: 4 GiB of the allocator's, so a claim of 4.2 + 1 GiB
    claim = place.need(spec)
    assert claim == int(4 * GiB * packing.MEASURED_MARGIN) + packing.CONTEXT_BYTES
    _neighbour(store)
    with pytest.raises(executor.Requeued):
        executor._out_of_memory(store, spec, place, lambda m: None, neighbours=1)
    raised, source = packing.need(packing.memory_table(store), key)
    assert source == "raised after an out-of-memory"
    assert raised == int((claim - packing.CONTEXT_BYTES) * packing.OOM_GROWTH) + packing.CONTEXT_BYTES


def _raised_in_capture(oom: bool) -> BaseException:
    """What a capture that ran out of memory raises: ending the capture fails while the allocator's error is
    handled, so the out-of-memory is only the chained exception, or (oom False) nowhere."""
    try:
        try:
            raise (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB") if oom
                   else RuntimeError("CUDA error: an allocation inside the capture failed"))
        except BaseException:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture\n"
                               "cudaErrorStreamCaptureInvalidated")
    except RuntimeError as exc:
        return exc


def test_an_oom_inside_a_graph_capture_is_an_oom():
    assert executor._is_oom(_raised_in_capture(oom=True))  # found in the chain
    bare = _raised_in_capture(oom=False)
    assert executor._is_oom(bare, free_share=lambda: 0.02)  # a failed capture on a full card
    assert not executor._is_oom(bare, free_share=lambda: 0.6)  # with room left: a capture bug, not memory
    assert not executor._is_oom(bare)  # no card to ask


# -- the host-gather thread, the device named ------------------------------------------------------------------------
@pytest.mark.gates("device_input")  # make gpu-verify-dry runs these through its tests section
def test_the_gather_thread_stops_when_asked():
    """An early stop (the defect threshold, a stop request) waited for the rest of the epoch to be gathered."""
    from kdengine.training.inputs import PREFETCH, HostGather

    images = np.zeros((5000, 8, 8), np.uint8)
    rows = np.arange(5000)
    gather = HostGather(_Slow(images), rows, rows, batch_size=10, pin=False)  # a slow memory map (cold NFS)
    next(iter(gather))
    t0 = time.perf_counter()
    gather.close()
    assert time.perf_counter() - t0 < 1.0 and not gather.thread.is_alive()
    assert gather.gathered <= PREFETCH + 3  # far from the epoch's 500 batches


class _Slow:
    def __init__(self, a) -> None:
        self.a = a

    def __getitem__(self, rows):
        time.sleep(0.005)
        return self.a[rows]


@pytest.mark.gates("device_input")  # make gpu-verify-dry runs these through its tests section
def test_the_gather_thread_hands_on_an_error():
    from kdengine.training.inputs import HostGather

    class Broken:
        def __getitem__(self, rows):
            raise OSError("the NFS share went away")

    gather = HostGather(Broken(), np.arange(20), np.arange(20), batch_size=5, pin=False)
    with pytest.raises(OSError, match="went away"):
        list(gather)
    gather.close()


def test_a_named_cuda_device_becomes_the_current_device(monkeypatch):
    from kdengine.errors import UsageError
    from kdengine.training import device

    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.append(str(d)))
    dev = device.setup_device("cuda:1", device_input=False, cuda_graph=False)
    assert str(dev.device) == "cuda:1" and current == ["cuda:1"]
    with pytest.raises(UsageError, match="2 CUDA device"):
        device.setup_device("cuda:5")


# -- the ledger: the end's evaluation, the keys of planner and worker, the resident cache (N4, N5, N6) ----------
def test_the_ledger_records_the_peak_of_the_runs_end(tmp_path, monkeypatch):
    """N4: the end's evaluation (every split, the best weights, batch 256) may reserve more than any epoch; the peak
    recorded after the last epoch missed it, and packing planned with too small a need."""
    from kdengine.execution.placement import MemoryPeak
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue
    from kdengine.training.device import DeviceSetup
    from kdengine.training.trainer import Trainer

    reserved = [0]
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d=None: reserved[0])
    store = RunStore(tmp_path)
    spec = _spec()
    enqueue(store, spec)
    store.claim(spec.run_id, "w")
    dev = DeviceSetup(torch.device("cuda"), torch.bfloat16, True, 0, False, device_input=True, cuda_graph=True)

    def run(self):
        reserved[0] = 5 * GiB  # the epochs' peak
        for hook in self.extra_hooks:
            hook.on_epoch_end(self, 1, {})
        reserved[0] = 6 * GiB  # the end's evaluation
        return {"run_id": spec.run_id}

    monkeypatch.setattr(Trainer, "run", run)
    executor.run_claimed(store, spec, dev, [], False, lambda m: None)
    key = packing.memory_key(spec, dev.memory_runtime(spec.train.batch_size))
    assert packing.memory_table(store)[key]["peak"] == 6 * GiB
    assert isinstance(MemoryPeak(store), MemoryPeak)


def test_the_planner_keys_runs_as_workers_started_with_the_cli_flags_do(tmp_path, monkeypatch):
    """N5: with --device-input --cuda-graph from the CLI, workers record peaks under '...|device|graph|e256' while
    the planner looked for '...|loader|eager|e256' (the environment's switches): auto never saw a measured peak."""
    from kdengine.execution import spawn
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue
    from kdengine.training.device import DeviceSetup

    store = RunStore(tmp_path)
    spec = _spec()
    enqueue(store, spec, device="cuda")
    fast = {"device_input": True, "cuda_graph": True}
    worker_dev = DeviceSetup(torch.device("cuda"), torch.bfloat16, True, 0, False, **fast)
    packing.record_peak(store, packing.memory_key(spec, worker_dev.memory_runtime(spec.train.batch_size)), 40 * GiB)
    monkeypatch.setattr(spawn, "visible_gpus", lambda: packing.parse_smi("0, NVIDIA H100 80GB HBM3, 81559, 0, 0"))
    monkeypatch.setattr(packing.os, "cpu_count", lambda: 16)
    started = []
    monkeypatch.setattr(spawn, "spawn_worker", lambda *a, **k: started.append(k) or len(started))
    monkeypatch.delenv("KDSTUDY_DEVICE_INPUT", raising=False)
    monkeypatch.delenv("KDSTUDY_CUDA_GRAPH", raising=False)
    spawn.ensure_workers(tmp_path, "cuda", runs_per_gpu="auto", fast=fast)
    assert len(started) == 1  # one 40 GiB run fits an 80 GiB card at a time (16 cores would allow 8)
    assert spawn.fast_flags(started[0]["fast"]) == ["--device-input", "--cuda-graph"]
    plan = packing.plan_workers(store, "auto", spawn.visible_gpus(), cpus=16, fast=fast)
    assert [source for _, _, source, _ in plan[0].shapes] == ["measured"]
    assert spawn.fast_flags({"device_input": False, "cuda_graph": None}) == ["--no-device-input"]


def _cache(source="synthetic:images=140,seed=3"):
    from kdengine.data.cache import build_or_load
    from kdengine.data.config import DataConfig, open_source

    return build_or_load(open_source(DataConfig(source=source, image_size=32)), 32)


def test_the_resident_cache_is_dropped_after_a_run_and_never_outlives_its_budget(monkeypatch):
    """N6: an idle worker kept its device-resident cache (up to a quarter of the card, outside the ledger), and
    device_images handed back a kept copy before it asked the budget."""
    from kdengine.training import inputs
    from kdengine.training.device import DeviceSetup

    cache = _cache()
    dev = DeviceSetup(torch.device("cpu"), None, False, 0, False, device_input=True)
    monkeypatch.delenv(inputs.BUDGET_ENV, raising=False)
    assert inputs.device_images(cache, dev) is not None and inputs._RESIDENT
    monkeypatch.setenv(inputs.BUDGET_ENV, "0.000001")  # the budget shrank (a test, a neighbour's share)
    assert inputs.device_images(cache, dev) is None and not inputs._RESIDENT
    monkeypatch.delenv(inputs.BUDGET_ENV)
    assert inputs.device_images(cache, dev) is not None
    executor.release_device_memory(DeviceSetup(torch.device("cuda"), torch.bfloat16, True, 0, False,
                                               device_input=True))
    assert not inputs._RESIDENT  # the run is over: nothing of it stays on the card
