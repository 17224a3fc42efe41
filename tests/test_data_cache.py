"""The decoded-image cache: hit, miss, invalidation, half-written files; augmentation determinism."""
from __future__ import annotations

import os
import time

import numpy as np

from kdengine.data.augment import augment, sample_seed, train_transform
from kdengine.data.cache import build_or_load, letterbox
from kdengine.data.config import DataConfig, open_source


def test_letterbox_keeps_aspect_and_centres():
    img = np.full((20, 40), 200, np.uint8)
    out = letterbox(img, 32)
    assert out.shape == (32, 32)
    assert out[0].max() == 0 and out[-1].max() == 0  # padded top and bottom
    assert out[16].min() == 200


def test_cache_miss_then_hit_then_invalidated(folder_tree, monkeypatch):
    src = open_source(DataConfig(source=f"folder:{folder_tree}"))
    first = build_or_load(src, 24)
    assert not first.hit
    ref = src.splits["test"].refs[0]
    row = src.all_refs().index(ref)
    assert np.array_equal(first.images[row], letterbox(src.load(ref), 24))

    # later runs never decode again
    from kdengine.data import files

    def boom(path):
        raise AssertionError("decoded on a cache hit")

    monkeypatch.setattr(files, "decode_gray", boom)
    second = build_or_load(open_source(DataConfig(source=f"folder:{folder_tree}")), 24)
    assert second.hit and np.array_equal(np.asarray(second.images), np.asarray(first.images))
    monkeypatch.undo()

    # another size is another cache
    assert not build_or_load(open_source(DataConfig(source=f"folder:{folder_tree}")), 16).hit

    # a changed file invalidates it
    time.sleep(0.01)
    path = folder_tree / "normal" / "img0.png"
    from PIL import Image

    Image.fromarray(np.zeros((30, 30), np.uint8)).save(path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = build_or_load(open_source(DataConfig(source=f"folder:{folder_tree}")), 24)
    assert not third.hit


def test_half_written_cache_is_never_used(folder_tree):
    src = open_source(DataConfig(source=f"folder:{folder_tree}"))
    cache = build_or_load(src, 20)
    meta = cache.path.with_suffix(".json")
    # simulate a crash after the array was written but before the metadata
    meta.unlink()
    with open(cache.path, "r+b") as fh:
        fh.truncate(100)
    again = build_or_load(open_source(DataConfig(source=f"folder:{folder_tree}")), 20)
    assert not again.hit
    assert again.path.stat().st_size == again.images.shape[0] * 20 * 20
    # a truncated array with intact metadata is also rebuilt
    with open(again.path, "r+b") as fh:
        fh.truncate(10)
    assert not build_or_load(open_source(DataConfig(source=f"folder:{folder_tree}")), 20).hit


def test_augmentation_is_deterministic_per_seed():
    tf = train_transform(32)
    img = (np.arange(48 * 48) % 251).astype(np.uint8).reshape(48, 48)
    img = letterbox(img, 32)
    a = augment(tf, img, sample_seed(1, 0, 5))
    b = augment(train_transform(32), img, sample_seed(1, 0, 5))
    c = augment(tf, img, sample_seed(1, 1, 5))
    assert a.shape == (32, 32) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_loader_same_seed_same_batches():
    import torch

    from kdengine.data.loader import CachedImages, make_loader
    from tests.conftest import SMALL_SYNTH

    src = open_source(DataConfig(source=SMALL_SYNTH))
    cache = build_or_load(src, 32)

    def first_batch(seed, workers=0):
        ds = CachedImages(cache, "train", train=True, seed=seed)
        loader, sampler = make_loader(ds, 16, shuffle=True, workers=workers)
        sampler.epoch = 2
        x, y, pos = next(iter(loader))
        sampler.epoch = 3  # the same loader (its processes persist) draws the next epoch's order and views
        x_next, _, pos_next = next(iter(loader))
        assert not torch.equal(pos, pos_next)
        return x, pos

    x1, r1 = first_batch(0)
    x2, r2 = first_batch(0, workers=2)
    x3, r3 = first_batch(1)
    assert torch.equal(r1, r2) and torch.equal(x1, x2)
    assert not torch.equal(r1, r3)


def test_dataset_pickles_without_the_images():
    import pickle

    from kdengine.data.loader import CachedImages
    from tests.conftest import SMALL_SYNTH

    cache = build_or_load(open_source(DataConfig(source=SMALL_SYNTH)), 32)
    ds = CachedImages(cache, "val", train=False, seed=0)
    blob = pickle.dumps(ds)
    assert len(blob) < cache.images.nbytes / 4  # the worker maps the file itself
    clone = pickle.loads(blob)
    x, y, pos = clone[3]
    row = ds.rows[pos]
    assert (x.numpy()[0] == np.asarray(cache.images[row])).all() and y == int(cache.labels[row])
