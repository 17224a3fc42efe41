"""Training views shared by the runs of one process (data/view_cache.py): the same batches, bit for bit, made once
per (data, seed, epoch); never a part-made epoch, never past the budget."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from kdengine.data import loader as loader_mod
from kdengine.data import memo
from kdengine.data.view_cache import VIEWS
from kdengine.data.cache import build_or_load
from kdengine.data.config import open_source
from kdengine.runspec import DataConfig
from kdengine.training.checkpoints import load_best
from kdengine.training.device import setup_device
from kdengine.training.inputs import LoaderFeed
from tests.conftest import SMALL_SYNTH
from tests.engine_helpers import train


@pytest.fixture()
def cache():
    return build_or_load(open_source(DataConfig(source=SMALL_SYNTH, image_size=32)), 32)


def _batches(feed, epoch):
    return [(b["x"].clone(), b["y"].clone(), b["pos"].clone()) for b in feed.epoch(epoch)]


def _same(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya, pa), (xb, yb, pb) in zip(a, b):
        assert (xa.dtype, ya.dtype, pa.dtype) == (xb.dtype, yb.dtype, pb.dtype)
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(pa, pb)


def test_the_next_feed_of_the_same_seed_takes_the_same_batches(cache, monkeypatch):
    dev = setup_device("cpu")
    made = LoaderFeed(cache, 0, 32, dev)
    first = _batches(made, 1)
    assert made.views_from_cache == 0 and VIEWS.held_bytes() == len(made.rows) * 32 * 32
    again = LoaderFeed(cache, 0, 32, dev)
    _same(first, _batches(again, 1))
    assert again.views_from_cache == 1
    # off: made again by albumentations, and the same
    monkeypatch.setenv(memo.BUDGET_ENV, "0")
    VIEWS.clear()
    off = LoaderFeed(cache, 0, 32, dev)
    _same(first, _batches(off, 1))
    assert off.views_from_cache == 0 and VIEWS.held_bytes() == 0
    monkeypatch.delenv(memo.BUDGET_ENV)
    # another seed, another epoch: other views, not the kept ones
    other = LoaderFeed(cache, 1, 32, dev)
    assert not torch.equal(_batches(other, 1)[0][0], first[0][0]) and other.views_from_cache == 0
    assert not torch.equal(_batches(made, 2)[0][0], first[0][0])


def test_kept_views_leave_the_random_generators_as_the_loader_does(cache):
    """A step's dropout or drop-path draws from torch's global generator after the loader started its epoch (the
    loader draws a seed from it): an epoch from kept views must leave every generator where making it would."""
    dev = setup_device("cpu")

    def after(feed):
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
        for _ in feed.epoch(1):
            pass
        return random.random(), np.random.random(), torch.rand(3).tolist()

    made = after(LoaderFeed(cache, 0, 32, dev))
    feed = LoaderFeed(cache, 0, 32, dev)
    assert after(feed) == made and feed.views_from_cache == 1


def test_a_part_made_epoch_is_never_kept(cache):
    dev = setup_device("cpu")
    feed = LoaderFeed(cache, 0, 32, dev)
    batches = feed.epoch(1)
    next(batches)
    batches.close()  # a defective teacher at its threshold, ctrl-c
    assert VIEWS.held_bytes() == 0
    later = LoaderFeed(cache, 0, 32, dev)
    _batches(later, 1)
    assert later.views_from_cache == 0


def test_the_budget_holds_and_the_oldest_epoch_goes_first(cache, monkeypatch):
    dev = setup_device("cpu")
    n = len(cache.rows("train"))
    monkeypatch.setenv(memo.BUDGET_ENV, str(1.5 * n * 32 * 32 / 2 ** 20))  # one epoch fits, two do not
    feed = LoaderFeed(cache, 0, 32, dev)
    _batches(feed, 1)
    _batches(feed, 2)
    assert VIEWS.held_bytes() == n * 32 * 32
    probe = LoaderFeed(cache, 0, 32, dev)
    _batches(probe, 2)
    assert probe.views_from_cache == 1
    _batches(probe, 1)
    assert probe.views_from_cache == 1  # epoch 1 was evicted for epoch 2
    monkeypatch.setenv(memo.BUDGET_ENV, str(0.5 * n * 32 * 32 / 2 ** 20))  # one epoch is too big
    VIEWS.clear()
    _batches(LoaderFeed(cache, 0, 32, dev), 1)
    assert VIEWS.held_bytes() == 0


def test_a_cache_rebuilt_in_place_is_not_taken_for_the_old_one(cache):
    dev = setup_device("cpu")
    _batches(LoaderFeed(cache, 0, 32, dev), 1)
    data = cache.path.read_bytes()
    cache.path.write_bytes(data)  # the same path, written again: a new mtime
    feed = LoaderFeed(cache, 0, 32, dev)
    _batches(feed, 1)
    assert feed.views_from_cache == 0


def _outcome(store) -> tuple[dict, np.ndarray, dict]:
    run = next(p for p in store.iterdir() if (p / "metrics.json").is_file())
    weights, _ = load_best(run / "checkpoints")
    with np.load(run / "predictions.npz") as z:
        probs = {k: z[k] for k in z.files}
    return json.loads((run / "metrics.json").read_text())["test"], probs, weights


def test_a_run_on_kept_views_trains_to_the_same_numbers(capsys, tmp_path, monkeypatch):
    calls = []
    real = loader_mod.augment
    monkeypatch.setattr(loader_mod, "augment", lambda *a: calls.append(1) or real(*a))
    outcomes = []
    for name, budget in (("made", None), ("kept", None), ("off", "0")):
        if budget is not None:
            monkeypatch.setenv(memo.BUDGET_ENV, budget)
        calls.clear()
        train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--runs-dir", str(tmp_path / name))
        outcomes.append((name, len(calls), _outcome(tmp_path / name)))
    (_, made_calls, made), (_, kept_calls, kept), (_, off_calls, off) = outcomes
    assert made_calls > 0 and kept_calls == 0 and off_calls == made_calls  # the second run made no view
    for other in (kept, off):
        assert other[0] == made[0]  # every test metric, exactly
        assert made[1].keys() == other[1].keys() and all(np.array_equal(made[1][k], other[1][k]) for k in made[1])
        assert all(torch.equal(made[2][k], other[2][k]) for k in made[2])
