"""CUDA-only checks (``make test-gpu``; ``make test`` does not collect this folder): the graphed step against the
eager one, the device-resident input against the CPU's draws, and a run end to end on the fast path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

# After N steps the graphed and the eager run must hold the same weights within this tolerance: the same kernels
# run in the same order, but cuDNN may pick other (non-deterministic) backward algorithms between processes.
STEPS = 20
REL_TOL = 1e-2


def _trainer(store, graph: bool, seed: int = 0):
    from kdengine.data.config import DataConfig
    from kdengine.runspec import TrainConfig, ce_spec
    from kdengine.training.device import setup_device
    from kdengine.training.trainer import TrainState, Trainer

    dev = setup_device("cuda", device_input=True, cuda_graph=graph)
    spec = ce_spec("resnet10t", DataConfig(source="synthetic:images=700,seed=2", image_size=64),
                   TrainConfig(epochs=1, batch_size=16), seed)
    store.create(spec)
    trainer = Trainer(store, spec, dev, progress=False, log=lambda m: None)
    trainer.prepare()
    trainer.state = TrainState()
    trainer._read_lr()
    return trainer


def test_graphed_and_eager_training_reach_the_same_weights(tmp_path):
    from kdengine.store import RunStore
    from kdengine.training.step import GraphedStep

    weights = {}
    for graph in (False, True):
        trainer = _trainer(RunStore(tmp_path / str(graph)), graph)
        assert isinstance(trainer.run_step, GraphedStep) == graph
        trainer.model.train()
        trainer.step.reset_epoch()
        for i, raw in enumerate(trainer.feed.epoch(1)):
            if i == STEPS:
                break
            trainer.run_step(raw)
        torch.cuda.synchronize()
        if graph:
            assert trainer.run_step.graph is not None  # it was captured and replayed
        weights[graph] = torch.cat([p.detach().float().flatten() for p in trainer.model.parameters()])
        weights[(graph, "seen")] = int(trainer.step.confusion.sum())
    assert weights[(False, "seen")] == weights[(True, "seen")] == STEPS * 16
    diff = (weights[True] - weights[False]).abs().max().item()
    scale = weights[False].abs().max().item()
    assert diff <= REL_TOL * scale, (diff, scale)


def test_device_input_matches_the_cpu_draws():
    from kdengine.data.augment import draw_params
    from kdengine.data.tensor_augment import TensorAugment

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (32, 1, 48, 48), dtype=np.uint8))
    params = torch.from_numpy(draw_params(0, 3, np.arange(32)))
    cpu = TensorAugment(48)(images, params)
    gpu = TensorAugment(48).cuda()(images.cuda(), params.cuda()).cpu()
    assert (cpu - gpu).abs().max().item() <= 1.0  # bilinear weights round differently, by at most one level


def test_a_run_on_the_fast_path_end_to_end(tmp_path, capsys):
    from kdengine.cli import main

    code = main(["train", "--data", "synthetic:images=700,seed=2", "--image-size", "64", "--epochs", "2",
                 "--batch-size", "16", "--device", "cuda", "--device-input", "--cuda-graph", "--quiet", "--json",
                 "--strategy", "normal", "--teacher", "resnet10t", "--student", "test_resnet",
                 "--runs-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    m = json.loads(out)
    assert m["runtime"]["input"] == "device" and m["runtime"]["cuda_graph"] is True
    assert 0 <= m["test"]["accuracy"] <= 1 and np.isfinite(m["test"]["loss"])
