"""CUDA-only checks of the device-resident input (``make test-gpu``; ``make test`` does not collect this folder): its
augmentation against the CPU's draws, its host-gather path against its resident path, and runs end to end on it,
with and without the graph. The graphed step's checks are in test_graphed.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

DATA = "synthetic:images=700,seed=2"


@pytest.mark.gates("device_input")
def test_device_input_matches_the_cpu_draws():
    from kdengine.data.augment import draw_params
    from kdengine.data.tensor_augment import TensorAugment

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (32, 1, 48, 48), dtype=np.uint8))
    params = torch.from_numpy(draw_params(0, 3, np.arange(32)))
    cpu = TensorAugment(48)(images, params)
    gpu = TensorAugment(48).cuda()(images.cuda(), params.cuda()).cpu()
    assert (cpu - gpu).abs().max().item() <= 1.0  # bilinear weights round differently, by at most one level


@pytest.mark.gates("device_input")
def test_the_host_gather_path_feeds_what_the_resident_path_feeds(monkeypatch):
    """Over the device budget, batches are gathered on the host by a thread and copied: the views and labels of
    an epoch must be the resident path's, batch for batch."""
    from kdengine.data.cache import build_or_load
    from kdengine.data.config import DataConfig, open_source
    from kdengine.training import inputs
    from kdengine.training.device import setup_device

    dev = setup_device("cuda", device_input=True, cuda_graph=False)
    cache = build_or_load(open_source(DataConfig(source=DATA, image_size=64)), 64)
    views = {}
    for path, budget in (("resident", None), ("gathered", "0.0001")):
        if budget:
            monkeypatch.setenv(inputs.BUDGET_ENV, budget)
        images = inputs.Images(cache, dev, inputs.device_images(cache, dev))
        assert (images.resident is None) == (path == "gathered")
        feed = inputs.DeviceFeed(cache, 0, 16, dev, images)
        views[path] = [tuple(t.cpu() for t in feed.view(raw)) for raw in feed.epoch(2)]
        if path == "gathered":
            assert not feed.gather.thread.is_alive()
    assert len(views["resident"]) == len(views["gathered"]) == -(-len(cache.rows("train")) // 16)
    for (xr, yr), (xg, yg) in zip(views["resident"], views["gathered"]):
        assert torch.equal(yr, yg) and torch.equal(xr, xg)
    inputs.release_resident()


def _train_cli(tmp_path, capsys, *flags):
    from kdengine.cli import main

    code = main(["train", "--data", DATA, "--image-size", "64", "--epochs", "2", "--batch-size", "16", "--device",
                 "cuda", *flags, "--quiet", "--json", "--runs-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    m = json.loads(out)
    assert 0 <= m["test"]["accuracy"] <= 1 and np.isfinite(m["test"]["loss"])
    return m


@pytest.mark.gates("device_input")
def test_a_run_on_the_device_input_end_to_end(tmp_path, capsys):
    m = _train_cli(tmp_path, capsys, "--device-input", "--no-cuda-graph", "--strategy", "baseline", "--student",
                   "test_resnet")
    assert m["runtime"]["input"] == "device" and m["runtime"]["cuda_graph"] is False


@pytest.mark.gates("device_input", "cuda_graph")
def test_a_run_on_the_fast_path_end_to_end(tmp_path, capsys):
    m = _train_cli(tmp_path, capsys, "--device-input", "--cuda-graph", "--strategy", "normal", "--teacher",
                   "resnet10t", "--student", "test_resnet", "--no-baseline")
    assert m["runtime"]["input"] == "device" and m["runtime"]["cuda_graph"] is True
