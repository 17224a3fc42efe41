"""Every source on small fixtures: indexing, grouping, determinism, skips and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kdengine.cli import main
from kdengine.data.cache import build_or_load
from kdengine.data.config import DataConfig, open_source
from kdengine.errors import DataError
from tests.conftest import SMALL_SYNTH


def _groups(src, split):
    return set(src.splits[split].groups)


def assert_no_shared_groups(src):
    tr, va, te = (_groups(src, s) for s in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)


def test_synthetic_is_deterministic_grouped_and_labelled_synthetic():
    a = open_source(DataConfig(source=SMALL_SYNTH))
    b = open_source(DataConfig(source=SMALL_SYNTH))
    assert a.class_names == ["elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist"]
    for split in ("train", "val", "test"):
        assert a.splits[split].refs == b.splits[split].refs
    assert np.array_equal(a.images, b.images)
    assert_no_shared_groups(a)
    s = a.summary()
    assert s["synthetic"] is True and "not real" in s["description"]
    # several images per patient, so grouping is exercised
    assert len(a.splits["train"]) > len(_groups(a, "train"))
    other_seed = open_source(DataConfig(source="synthetic:images=280,seed=4"))
    assert not np.array_equal(other_seed.images, a.images)


def test_synthetic_classes_differ_visibly():
    src = open_source(DataConfig(source=SMALL_SYNTH))
    labels = np.asarray([src.splits["train"].labels]).ravel()
    imgs = src.images[np.asarray(src.splits["train"].refs)]
    means = [imgs[labels == c].astype(float).mean(0) for c in range(7)]
    # class-average images are distinct (each class has its own topology)
    dists = [np.abs(means[i] - means[j]).mean() for i in range(7) for j in range(i + 1, 7)]
    assert min(dists) > 1.0


def test_mura_body_part(clean_mura_tree):
    src = open_source(DataConfig(source=f"mura:{clean_mura_tree}"))
    assert src.class_names == ["elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist"]
    # 7 parts x 2 test patients x 2 studies x 2 images; ._ files and .DS_Store skipped
    assert len(src.splits["test"]) == 7 * 2 * 2 * 2
    assert len(src.splits["train"]) + len(src.splits["val"]) == 7 * 4 * 2 * 2
    assert_no_shared_groups(src)
    assert all(g.startswith("patient") for g in src.splits["val"].groups)
    assert any("._image1.png" in s.path for s in src.skipped)
    assert all(not p.split("/")[-1].startswith(".") for p in src.all_refs())
    # the test split is MURA's valid/
    assert all("/valid/" in p for p in src.splits["test"].refs)
    # labels follow the folder
    for ref, y in zip(src.splits["train"].refs, src.splits["train"].labels):
        assert f"XR_{src.class_names[y].upper()}" in ref


def test_mura_abnormality_inherits_study_label(clean_mura_tree):
    src = open_source(DataConfig(source=str(clean_mura_tree), task="abnormality"))
    assert src.kind == "mura" and src.class_names == ["normal", "abnormal"]
    for split in ("train", "val", "test"):
        for ref, y in zip(src.splits[split].refs, src.splits[split].labels):
            assert ("_positive" in ref) == (y == 1)


def test_mura_cap_per_class(clean_mura_tree):
    src = open_source(DataConfig(source=f"mura:{clean_mura_tree}", cap_train=10, cap_test=3))
    counts = np.bincount(src.splits["train"].labels + src.splits["val"].labels, minlength=7)
    assert counts.tolist() == [10] * 7
    assert np.bincount(src.splits["test"].labels, minlength=7).tolist() == [3] * 7


def test_mura_corrupt_image_named_then_skipped(mura_tree):
    src = open_source(DataConfig(source=f"mura:{mura_tree}"))
    with pytest.raises(DataError, match=r"XR_HAND/patient\d+/study1_\w+/image1.png"):
        build_or_load(src, 32)
    src = open_source(DataConfig(source=f"mura:{mura_tree}"))
    cache = build_or_load(src, 32, skip_bad=True)
    total = sum(len(src.splits[s]) for s in ("train", "val", "test"))
    usable = sum(len(cache.rows(s)) for s in ("train", "val", "test"))
    assert usable == total - 1
    assert any("corrupt" in s.reason for s in src.skipped)


def test_mura_reads_rgb_and_any_size(clean_mura_tree):
    src = open_source(DataConfig(source=f"mura:{clean_mura_tree}"))
    rgb = [r for r in src.all_refs() if r.endswith("image2.png")][0]
    img = src.load(rgb)
    assert img.ndim == 2 and img.dtype == np.uint8


def test_folder_single_tree_is_stratified(folder_tree):
    src = open_source(DataConfig(source=f"folder:{folder_tree}"))
    assert src.class_names == ["benign", "malignant", "normal"]
    for split in ("train", "val", "test"):
        assert set(src.splits[split].labels) == {0, 1, 2}
    assert sum(len(src.splits[s]) for s in ("train", "val", "test")) == 36
    assert any(".hidden.png" in s.path for s in src.skipped)


def test_folder_with_split_folders(tmp_path, folder_tree):
    import shutil

    root = tmp_path / "split"
    for split, n in (("train", 8), ("test", 4)):
        for cls in ("benign", "malignant", "normal"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                shutil.copy(folder_tree / cls / f"img{i}.png", root / split / cls / f"{i}.png")
    src = open_source(DataConfig(source=str(root)))
    assert src.kind == "folder"
    assert len(src.splits["test"]) == 12
    assert len(src.splits["train"]) + len(src.splits["val"]) == 24


def test_npz(npz_file):
    src = open_source(DataConfig(source=f"npz:{npz_file}"))
    assert [len(src.splits[s]) for s in ("train", "val", "test")] == [60, 15, 15]
    assert src.class_names == ["0", "1", "2", "3"]
    assert src.load(0).shape == (28, 28)
    assert open_source(DataConfig(source=str(npz_file))).kind == "npz"


def test_same_seed_same_split_other_seed_other_split(clean_mura_tree):
    a = open_source(DataConfig(source=f"mura:{clean_mura_tree}", split_seed=1))
    b = open_source(DataConfig(source=f"mura:{clean_mura_tree}", split_seed=1))
    c = open_source(DataConfig(source=f"mura:{clean_mura_tree}", split_seed=2))
    assert a.splits["val"].refs == b.splits["val"].refs
    assert a.splits["val"].refs != c.splits["val"].refs


# -- bad input: one line, exit 2 -------------------------------------------------------------

def _check(capsys, *argv):
    code = main(["data", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("spec, message", [
    ("/no/such/path", "no such file or directory"),
    ("mura:/no/such/mura", "no such file or directory"),
    ("synthetic:images=abc", "must be a number"),
    ("synthetic:colour=red", "bad option"),
])
def test_bad_specs(capsys, spec, message):
    code, out, err = _check(capsys, spec)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_wrong_mura_layout_names_expected_folder(capsys, tmp_path):
    (tmp_path / "MURA-v1.1" / "train").mkdir(parents=True)
    code, _, err = _check(capsys, f"mura:{tmp_path}")
    assert code == 2 and "expected the folder" in err and "valid" in err


def test_corrupt_image_exit_2_then_skip(capsys, mura_tree):
    code, _, err = _check(capsys, f"mura:{mura_tree}", "--image-size", "32")
    assert code == 2 and "image1.png" in err and "--skip-bad" in err
    code, out, _ = _check(capsys, f"mura:{mura_tree}", "--image-size", "32", "--skip-bad", "--json")
    assert code == 0
    summary = json.loads(out)
    reasons = [s["reason"] for s in summary["skipped"]]
    assert sum("corrupt" in r for r in reasons) == 1
    assert summary["groups_shared_between_splits"] == 0


def test_one_class_refused(capsys, tmp_path, folder_tree):
    import shutil

    root = tmp_path / "one"
    shutil.copytree(folder_tree / "benign", root / "benign")
    code, _, err = _check(capsys, f"folder:{root}")
    assert code == 2 and "at least 2 classes" in err


def test_class_missing_from_split(capsys, tmp_path, folder_tree):
    import shutil

    root = tmp_path / "split"
    for split in ("train", "test"):
        for cls in ("benign", "malignant"):
            if split == "test" and cls == "malignant":
                continue
            shutil.copytree(folder_tree / cls, root / split / cls)
    code, _, err = _check(capsys, f"folder:{root}")
    assert code == 2 and "malignant" in err and "test" in err


def test_empty_dataset(capsys, tmp_path):
    (tmp_path / "e" / "a").mkdir(parents=True)
    (tmp_path / "e" / "b").mkdir(parents=True)
    code, _, err = _check(capsys, f"folder:{tmp_path / 'e'}")
    assert code == 2 and "empty" in err


def test_npz_missing_array(capsys, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, train_images=np.zeros((4, 8, 8), np.uint8))
    code, _, err = _check(capsys, f"npz:{path}")
    assert code == 2 and "train_labels" in err


def test_check_prints_summary(capsys, clean_mura_tree):
    code, out, _ = _check(capsys, f"mura:{clean_mura_tree}", "--image-size", "32")
    assert code == 0
    assert "shared between splits: 0" in out and "elbow" in out and "ok: the data is usable" in out


def test_check_synthetic_says_synthetic(capsys):
    code, out, _ = _check(capsys, SMALL_SYNTH, "--no-decode")
    assert code == 0 and "SYNTHETIC" in out
