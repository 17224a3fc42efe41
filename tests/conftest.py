"""Shared fixtures: isolated data/cache/run folders, and small datasets the tests make themselves."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray 2.60 turns token auth on by default
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A run's PNGs (half a second each, some 200 runs in the suite) are drawn where a test looks at them:
# test_report_mlflow trains with them on; the report draws the ones it shows when they are missing.
os.environ.setdefault("KDSTUDY_RUN_FIGURES", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs two pytest workers on 2 cores: a torch thread pool each (and in every child a test starts)
    # would oversubscribe them, and OpenMP's spinning threads then run several times slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from kdengine.data import memo  # noqa: E402

MURA_PARTS = ("ELBOW", "FINGER", "FOREARM", "HAND", "HUMERUS", "SHOULDER", "WRIST")
# A small synthetic set that trains in seconds; shared across tests via the data folder.
SMALL_SYNTH = "synthetic:images=280,seed=3"


def pytest_ignore_collect(collection_path, config):
    """tests/gpu needs a CUDA device, tests/browser Chromium: each is collected only when asked for with
    ``-m gpu`` (make test-gpu) or ``-m browser`` (make test-browser)."""
    if collection_path.name in ("gpu", "browser") and collection_path.parent.name == "tests":
        return collection_path.name not in (config.getoption("markexpr") or "")
    return None


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Each test gets its own run store; the data folder (generated sets, caches) is shared per session."""
    shared = tmp_path_factory.getbasetemp() / "shared-data"
    shared.mkdir(exist_ok=True)
    home = tmp_path_factory.mktemp("runs")
    monkeypatch.setenv("KDSTUDY_DATA", str(shared))
    monkeypatch.delenv("KDSTUDY_CACHE", raising=False)
    monkeypatch.setenv("KDSTUDY_HOME", str(home))
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    monkeypatch.delenv("NEPTUNE_MODE", raising=False)
    memo.clear_all()  # what a test computes is its own (the data folder is shared, the memos are not)
    return home


def _png(path: Path, rng: np.random.Generator, rgb: bool = False, size=None) -> None:
    h, w = size or (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
    arr = rng.integers(0, 255, (h, w, 3) if rgb else (h, w), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_mura_tree(root: Path, patients_per_part: int = 4, corrupt: bool = True, seed: int = 0) -> Path:
    """A MURA-v1.1-shaped tree with real PNGs, the four CSVs, hidden files and (optionally) one corrupt PNG."""
    rng = np.random.default_rng(seed)
    base = root / "MURA-v1.1"
    pid = 0
    corrupt_path = None
    for split, n_pat in (("train", patients_per_part), ("valid", max(1, patients_per_part // 2))):
        image_rows, study_rows = [], []
        for part in MURA_PARTS:
            for _ in range(n_pat):
                pid += 1
                for s in range(1, 3):
                    positive = (pid + s) % 2 == 0
                    study = base / split / f"XR_{part}" / f"patient{pid:05d}" / f"study{s}_{'positive' if positive else 'negative'}"
                    study_rows.append([f"MURA-v1.1/{study.relative_to(base).as_posix()}/", "1" if positive else "0"])
                    for k in range(1, 3):
                        img = study / f"image{k}.png"
                        _png(img, rng, rgb=(k == 2))
                        image_rows.append(f"MURA-v1.1/{img.relative_to(base).as_posix()}")
                    # macOS resource fork beside the images: must be skipped
                    (study / "._image1.png").write_bytes(b"\x00\x05\x16\x07junk")
        (base / f"{split}_image_paths.csv").write_text("\n".join(image_rows) + "\n")
        (base / f"{split}_labeled_studies.csv").write_text("\n".join(",".join(r) for r in study_rows) + "\n")
        if corrupt and split == "train":
            first_hand = next(r for r in image_rows if "XR_HAND" in r and r.endswith("image1.png"))
            corrupt_path = root / first_hand
    (base / ".DS_Store").write_bytes(b"junk")
    if corrupt and corrupt_path is not None:
        assert corrupt_path.exists(), corrupt_path
        corrupt_path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture
def mura_tree(tmp_path) -> Path:
    return make_mura_tree(tmp_path / "mura")


@pytest.fixture
def clean_mura_tree(tmp_path) -> Path:
    return make_mura_tree(tmp_path / "mura", corrupt=False)


def make_png_folder(root: Path, classes=("a", "b", "c"), per_class: int = 10, side: int = 40) -> Path:
    """``root/<class>/<i>.png``: random grayscale PNGs, the same for the same arguments."""
    rng = np.random.default_rng(0)
    for cls in classes:
        for i in range(per_class):
            _png(root / cls / f"{i}.png", rng, size=(side, side))
    return root


@pytest.fixture
def folder_tree(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "imgs"
    for cls in ("benign", "malignant", "normal"):
        for i in range(12):
            _png(root / cls / f"img{i}.png", rng)
    (root / "benign" / ".hidden.png").write_bytes(b"x")
    return root


@pytest.fixture
def npz_file(tmp_path) -> Path:
    rng = np.random.default_rng(2)
    path = tmp_path / "toymnist.npz"
    arrays = {}
    for split, n in (("train", 60), ("val", 15), ("test", 15)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 4).reshape(-1, 1)
    np.savez(path, **arrays)
    return path
