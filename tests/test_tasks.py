"""Tasks beyond grey single-label radiographs: colour, binary and multi-label data, the metrics the field reports
(against scikit-learn), the multi-label distillation loss (against a float64 reference written from its formula),
MedMNIST+ by name, and the bad inputs of each (one line, exit 2, nothing written)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from kdengine.cli import main
from kdengine.data.config import DataConfig, open_source
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from kdengine.training.metrics import choose_thresholds, ranking_metrics, split_metrics
from kdengine.training.task import MULTILABEL, Task
from tests import method_refs as R
from tests.engine_helpers import FAST

RNG = np.random.default_rng(0)


# -- the metrics, against scikit-learn ------------------------------------------------------------------------------
def _scores(n=200, k=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def test_auroc_and_ap_are_scikit_learns_one_vs_rest():
    y, p = _scores()
    m = ranking_metrics(y, p, list("abcd"))
    for k, name in enumerate("abcd"):
        assert m["auroc_per_class"][name] == pytest.approx(roc_auc_score(y == k, p[:, k]), abs=1e-12)
        assert m["ap_per_class"][name] == pytest.approx(average_precision_score(y == k, p[:, k]), abs=1e-12)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert m["ap"] == pytest.approx(np.mean([average_precision_score(y == k, p[:, k]) for k in range(4)]))


def test_binary_metrics_read_the_positive_class_and_sensitivity_uses_the_val_threshold():
    y, p = _scores(k=2, seed=2)
    yv, pv = _scores(k=2, seed=3)
    thresholds = choose_thresholds(yv, pv)
    fpr, tpr, thr = roc_curve(yv, pv[:, 1])
    assert thresholds == [pytest.approx(min(thr[np.argmax(tpr - fpr)], 1.0))]  # Youden's J on val
    m = ranking_metrics(y, p, ["normal", "pneumonia"], thresholds)
    assert list(m["auroc_per_class"]) == ["pneumonia"]
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p[:, 1]))
    pred = p[:, 1] >= thresholds[0]
    assert m["sensitivity"] == pytest.approx(pred[y == 1].mean()) and m["specificity"] == pytest.approx(
        (~pred[y == 0]).mean())
    target = choose_thresholds(yv, pv, "sensitivity=0.9")[0]
    assert (pv[yv == 1, 1] >= target).mean() >= 0.9  # a stated target sensitivity, reached on val


def test_multilabel_metrics_leave_unknown_labels_out_and_average_over_findings():
    rng = np.random.default_rng(4)
    y = (rng.random((150, 5)) < 0.3).astype(np.int8)
    p = np.clip(0.6 * y + rng.random((150, 5)) * 0.6, 0, 1)
    y[rng.random((150, 5)) < 0.1] = -1  # uncertain under U-Ignore
    m = split_metrics(y, p, list("abcde"), thresholds=[0.5] * 5)
    aurocs = [roc_auc_score(y[y[:, k] >= 0, k], p[y[:, k] >= 0, k]) for k in range(5)]
    assert m["auroc"] == pytest.approx(np.mean(aurocs)) and m["auroc_per_class"]["c"] == pytest.approx(aurocs[2])
    known = y >= 0
    assert m["accuracy"] == pytest.approx(((p >= 0.5) == (y == 1))[known].mean())
    assert m["confusion"]["a"] == [[int(((y[:, 0] == 0) & (p[:, 0] < .5)).sum()), int(((y[:, 0] == 0) & (p[:, 0] >= .5)).sum())],
                                   [int(((y[:, 0] == 1) & (p[:, 0] < .5)).sum()), int(((y[:, 0] == 1) & (p[:, 0] >= .5)).sum())]]


def test_a_class_with_one_kind_of_label_has_no_auroc():
    y = np.array([[1, 0], [1, 1], [1, 0]], np.int8)
    m = ranking_metrics(y, np.array([[.9, .2], [.8, .7], [.7, .1]]), ["always", "sometimes"])
    assert m["auroc_per_class"]["always"] is None and m["auroc"] == m["auroc_per_class"]["sometimes"] == 1.0


# -- the multi-label loss and KD, against a float64 reference -------------------------------------------------------
def test_multilabel_kd_equals_its_formula():
    """Hinton's KD on a multi-label task: the binary KL between the teacher's and the student's sigmoids at T,
    summed over the findings, times T^2, averaged over the batch."""
    from kdengine.data.config import DataConfig as D
    from kdengine.runspec import KDConfig, TrainConfig, build_specs
    from kdengine.training.losses import distiller_for
    from kdengine.training.methods import Outputs

    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3, torch.randn(6, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (6, 5), generator=g).to(torch.int8)
    spec = build_specs("normal", "test_resnet", ["resnet18"], D(), TrainConfig(), KDConfig(alpha=0.7, temperature=3.0), 0)
    d = distiller_for(spec, 5, task=Task(MULTILABEL, 5)).double()

    def ours(s):
        return d.terms(Outputs(s), [Outputs(zt)], y, torch.arange(6))["kd"]

    leaf, ref_leaf = zs.clone().requires_grad_(True), zs.clone().requires_grad_(True)
    value, ref = ours(leaf), 0.7 * R.multilabel_kd(ref_leaf, zt, 3.0)
    value.backward()
    ref.backward()
    torch.testing.assert_close(value, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=1e-10, atol=1e-12)


def test_multilabel_loss_masks_unknown_labels():
    task = Task(MULTILABEL, 3)
    z = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]], dtype=torch.float64)
    y = torch.tensor([[1, -1, 0], [0, 1, -1]], dtype=torch.int8)
    known = [(0, 0, 1.0), (0, 2, 0.0), (1, 0, 0.0), (1, 1, 1.0)]
    bce = [-(t * np.log(1 / (1 + np.exp(-z[i, k].item()))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-z[i, k].item()))))
           for i, k, t in known]
    assert task.loss(z, y).item() == pytest.approx(np.mean(bce))
    assert task.loss(z, y, reduction="sum").item() == pytest.approx(np.sum(bce))


# -- data: colour, binary, multi-label, MedMNIST+ by name --------------------------------------------------------------
def _npz(path: Path, shape, labels, n=(60, 15, 15), seed=0, **extra):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 255, (k, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = labels(rng, k)
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def _balanced(classes: int):
    """Labels (k, 1) with every class present in every split (k >= classes), shuffled."""
    return lambda r, k: r.permutation(np.arange(k) % classes)[:, None]


def medmnist_root(root: Path) -> Path:
    """MedMNIST-format files of each kind at two sizes, named as the official ones."""
    root.mkdir(parents=True, exist_ok=True)
    for size in (28, 64):
        suffix = "" if size == 28 else f"_{size}"
        _npz(root / f"dermamnist{suffix}.npz", (size, size, 3), _balanced(7), n=(70, 21, 21))
        _npz(root / f"pneumoniamnist{suffix}.npz", (size, size), _balanced(2))
        _npz(root / f"chestmnist{suffix}.npz", (size, size),
             lambda r, k: (r.random((k, 14)) < 0.4).astype(np.uint8), n=(80, 30, 30))
        _npz(root / f"organamnist{suffix}.npz", (size, size), _balanced(11), n=(110, 33, 33))
    return root


@pytest.fixture
def medmnist(tmp_path, monkeypatch):
    root = medmnist_root(tmp_path / "medmnist")
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    return root


@pytest.mark.parametrize("name, kind, classes, channels", [
    ("dermamnist", "multiclass", 7, 3), ("pneumoniamnist", "binary", 2, 1), ("chestmnist", "multilabel", 14, 1),
    ("organamnist", "multiclass", 11, 1)])
@pytest.mark.parametrize("size", [28, 64])
def test_medmnist_by_name_reads_the_task_labels_and_splits_from_its_metadata(medmnist, name, kind, classes, channels,
                                                                            size):
    src = open_source(DataConfig(source=f"medmnist:{name}@{size}"))
    assert (src.task_kind, len(src.class_names), src.channels) == (kind, classes, channels)
    assert src.images.shape[1:3] == (size, size)
    assert [len(src.splits[s]) for s in ("train", "val", "test")] == [len(np.load(medmnist / (
        f"{name}.npz" if size == 28 else f"{name}_{size}.npz"))[f"{s}_labels"]) for s in ("train", "val", "test")]
    if name == "chestmnist":
        assert src.class_names[0] == "atelectasis" and src.multilabel
    if name == "pneumoniamnist":
        assert src.class_names == ["normal", "pneumonia"]


def test_colour_is_kept_in_the_cache_and_grey_costs_nothing_more(medmnist, tmp_path, monkeypatch):
    from kdengine.data.cache import build_or_load

    monkeypatch.setenv("KDSTUDY_CACHE", str(tmp_path / "cache"))
    colour = build_or_load(open_source(DataConfig(source="medmnist:dermamnist@28")), 32)
    grey = build_or_load(open_source(DataConfig(source="medmnist:pneumoniamnist@28")), 32)
    assert colour.images.shape[1:] == (32, 32, 3) and colour.channels == 3
    assert grey.images.shape[1:] == (32, 32) and grey.channels == 1
    assert grey.path.stat().st_size == grey.images.shape[0] * 32 * 32  # one byte a pixel, as before
    made_grey = build_or_load(open_source(DataConfig(source="medmnist:dermamnist@28", color="grey")), 32)
    assert made_grey.channels == 1 and made_grey.path != colour.path


@pytest.mark.parametrize("source, task, channels", [
    ("medmnist:dermamnist@28", "multiclass", 3), ("medmnist:pneumoniamnist@64", "binary", 1),
    ("medmnist:chestmnist@28", "multilabel", 1), ("synthetic:images=140,color=1", "multiclass", 3),
    ("synthetic:images=140,labels=multi", "multilabel", 1)])
def test_each_kind_trains_with_its_task_and_metrics(medmnist, capsys, source, task, channels):
    code = main(["train", *FAST, "--data", source, "--epochs", "1", "--strategy", "normal", "--teacher",
                 "test_efficientnet", "--student", "test_resnet", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    m = json.loads(out)
    assert m["task"]["kind"] == task and m["task"]["channels"] == channels
    for key in ("auroc", "ap", "sensitivity", "specificity", "auroc_per_class", "thresholds"):
        assert key in m["test"], key
    store = RunStore(runs_dir())
    from kdengine.store.runstore import read_predictions

    preds = read_predictions(store.run_dir(m["run_id"]) / "predictions.npz")
    probs, labels = preds["test"]["probs"], preds["test"]["label"]
    assert probs.dtype == np.float32 and labels.ndim == (2 if task == "multilabel" else 1)
    # the run's AUROC is scikit-learn's on its own stored predictions
    recomputed = ranking_metrics(labels, probs, m["class_names"])
    assert recomputed["auroc"] == pytest.approx(m["test"]["auroc"], abs=1e-9)


def test_a_csv_manifest_with_a_column_per_finding_is_multi_label(tmp_path):
    from PIL import Image

    rows = ["path,patient,effusion,edema,nodule"]
    rng = np.random.default_rng(0)
    for i in range(40):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(p)
        values = [str(int(v)) for v in (rng.random(3) < 0.5)]
        values[i % 3] = "1" if i % 4 else ("-1" if i % 8 else "")  # uncertain, and a blank
        rows.append(f"{p.name},p{i // 2}," + ",".join(values))
    csv = tmp_path / "findings.csv"
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(Exception, match="uncertain|blank"):
        open_source(DataConfig(source=f"csv:{csv}"))
    src = open_source(DataConfig(source=f"csv:{csv}", uncertain="ignore"))
    assert src.multilabel and src.class_names == ["effusion", "edema", "nodule"]
    labels = np.array([l for s in ("train", "val", "test") for l in src.splits[s].labels])
    assert (labels == -1).sum() == 10 and set(np.unique(labels)) == {-1, 0, 1}
    ones = open_source(DataConfig(source=f"csv:{csv}", uncertain="ones"))
    assert -1 not in np.array([l for s in ("train", "val", "test") for l in ones.splits[s].labels])


# -- bad input ----------------------------------------------------------------------------------------------------------
def _bad_files(tmp_path: Path, medmnist: Path) -> dict[str, str]:
    out = {}
    out["labels out of range"] = str(_npz(tmp_path / "range.npz", (16, 16), lambda r, k: np.full((k, 3), 2)))
    out["a nan label"] = str(_npz(tmp_path / "nan.npz", (16, 16),
                                  lambda r, k: np.where(r.random((k, 3)) < 0.1, np.nan, 1.0)))
    out["uncertain, no policy"] = str(_npz(tmp_path / "unsure.npz", (16, 16), lambda r, k: np.full((k, 3), -1)))
    _npz(medmnist / "pathmnist.npz", (16, 16, 3), lambda r, k: (r.random((k, 9)) < 0.5).astype(np.uint8))
    manifest = tmp_path / "ragged.csv"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    manifest.write_text("path,effusion,edema\na.png,1,0\na.png,1\na.png,0,1,1\n")
    out["ragged manifest"] = str(manifest)
    return out


@pytest.mark.parametrize("case, message", [
    ("labels out of range", "must be 0 or 1"),
    ("a nan label", "blank (NaN)"),
    ("uncertain, no policy", "--uncertain ignore|zeros|ones"),
    ("multi-label named as multi-class", "the file does not hold pathmnist"),
    ("ragged manifest", "fields where the header has 3"),
    ("a size that does not exist", "has sizes 28, 64, 128, 224, not 100"),
    ("a missing file", "pip install medmnist"),
    ("a 3d set", "out of kdstudy's scope"),
    ("class labels out of range", "out of range for 2 classes"),
])
def test_bad_task_input_is_one_line_exit_2_and_nothing_written(case, message, medmnist, tmp_path, capsys):
    files = _bad_files(tmp_path, medmnist)
    _npz(medmnist / "breastmnist.npz", (16, 16), lambda r, k: r.integers(0, 3, (k, 1)))
    source = {"multi-label named as multi-class": "medmnist:pathmnist", "a size that does not exist":
              "medmnist:chestmnist@100", "a missing file": "medmnist:bloodmnist@224", "a 3d set":
              "medmnist:organmnist3d", "class labels out of range": "medmnist:breastmnist"}.get(case)
    source = source or (f"csv:{files[case]}" if case == "ragged manifest" else f"npz:{files[case]}")
    store = tmp_path / "runs"
    code = main(["train", *FAST, "--data", source, "--strategy", "baseline", "--student", "test_resnet",
                 "--runs-dir", str(store)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not store.exists() or not any(store.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--method", "dkd"], "method dkd is defined for multiclass and binary tasks"),
    (["--method", "dist"], "method dist is defined for multiclass and binary tasks"),
    (["--logit-standardize"], "logit standardisation z-scores one softmax"),
])
def test_a_method_the_task_rules_out_is_refused(args, message, medmnist, tmp_path, capsys):
    store = tmp_path / "runs"
    code = main(["train", *FAST, "--data", "medmnist:chestmnist", "--strategy", "normal", "--teacher",
                 "test_efficientnet", "--student", "test_resnet", *args, "--runs-dir", str(store)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not store.exists() or not any(store.iterdir())
    code = main(["train", *FAST, "--data", "medmnist:chestmnist", "--strategy", "tf-reg", "--student", "test_resnet",
                 "--runs-dir", str(store)])
    assert code == 2 and "virtual teacher puts its mass on one class" in capsys.readouterr().err
