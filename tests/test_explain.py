"""kdengine explain: the target layer of each thesis architecture, maps that find the region a label depends on,
weights and metrics untouched, a KD pair's agreement beside its baseline's, the attention table, the report's
gallery, shifted images, the TUI's Looks tab, and the measures themselves."""
from __future__ import annotations

import asyncio
import csv
import hashlib
import json

import numpy as np
import pytest
import torch

from kdengine.cli import main
from kdengine.explain import measures as M
from kdengine.explain.cam import target_layer
from kdengine.models.factory import create_model
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from tests.engine_helpers import FAST, train

THESIS = ["vgg11", "resnet18", "resnet34", "resnet50", "seresnet50", "seresnet101"]


@pytest.mark.parametrize("name, layer", [("vgg11", "features.20"), *((n, "layer4") for n in THESIS[1:])])
def test_the_target_layer_is_the_last_convolutional_stage(name, layer):
    with torch.device("meta"):  # no weights: the architecture only
        net = create_model(name, num_classes=7)
    found, module, reduction = target_layer(net)
    shapes = []
    hook = module.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)) and None)
    with torch.no_grad():
        net(torch.empty(1, 1, 224, 224, device="meta"))
    hook.remove()
    assert found == layer and reduction == 32 and shapes[0][2:] == (7, 7)  # a 7 x 7 map at the thesis's 224 px


def _bright_npz(path):
    """Two classes told apart only by where a bright square lies: top-left (0) or bottom-right (1)."""
    arrays = {}
    for split, n, seed in (("train", 160, 1), ("val", 40, 2), ("test", 40, 3)):
        rng = np.random.default_rng(seed)
        images = rng.integers(20, 70, (n, 64, 64)).astype(np.uint8)
        labels = np.arange(n) % 2
        for i, y in enumerate(labels):
            oy, ox = rng.integers(0, 8, 2) + (8 if y == 0 else 40)
            images[i, oy:oy + 14, ox:ox + 14] = 230
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.reshape(-1, 1)
    np.savez(path, **arrays)
    return path


def _digest(store: RunStore, rid: str) -> dict[str, str]:
    d = store.run_dir(rid)
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in [*sorted((d / "checkpoints").glob("*")), d / "metrics.json"]}


def test_a_map_peaks_on_the_region_the_label_depends_on_and_weights_are_unchanged(capsys, tmp_path):
    data = _bright_npz(tmp_path / "bright.npz")
    train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--data", f"npz:{data}", "--image-size",
          "64", "--epochs", "5", "--batch-size", "16", "--lr", "0.003", "--quiet", "--device", "cpu")
    store = RunStore(runs_dir())
    (rid,) = store.list_ids()
    before = _digest(store, rid)
    assert main(["explain", rid, "--images", "8"]) == 0
    capsys.readouterr()
    assert _digest(store, rid) == before  # weights (best and last) and metrics untouched
    entry = next(iter(json.loads((store.run_dir(rid) / "explain.json").read_text())["entries"].values()))
    # 64 px: layer4 would have 2 x 2 cells, too few to compare maps on; the deepest stage with 5 x 5 or more
    assert entry["layer"] == "layer2" and entry["cells"] == 8 and entry["agreement_measured"]
    assert [i["true"] for i in entry["images"]] == [0, 1] * 4
    # faithful: removing the most relevant pixels costs the class more score than removing the least relevant
    road = [(i["road_least"] - i["road_most"]) - (i["road_random_least"] - i["road_random_most"])
            for i in entry["images"]]  # beyond a random map's (ROAD's chance level is not zero)
    assert np.mean(road) > 0, road
    # and the map depends on the learned weights: re-initialised, the maps disagree (sanity check)
    sanity = [i["sanity_spearman"] for i in entry["images"] if i["sanity_spearman"] is not None]
    assert np.mean(sanity) < 0.5, sanity
    # class 0 is "a bright square top-left": its map peaks there. (Class 1's evidence at this stride-8 stage is as
    # much the empty top-left as the bright bottom-right, so its peak says nothing either way.)
    for image in [i for i in entry["images"] if i["true"] == 0]:
        grid = np.asarray(image["grid"])
        y, x = np.unravel_index(grid.argmax(), grid.shape)
        half = M.GRID // 2
        assert y < half and x < half, (y, x)
    # asked again: read back, nothing computed
    assert main(["explain", rid, "--images", "8"]) == 0
    assert "(1 read back)" in capsys.readouterr().out


def test_a_kd_pair_end_to_end(capsys, tmp_path):
    # 64 px: the last stage's map has 2 x 2 cells (at 32 px a single cell, which cannot say where)
    train(capsys, "--strategy", "normal", "--teacher", "resnet10t", "--student", "test_resnet", *FAST,
          "--image-size", "64", "--data", "synthetic:images=140,seed=3", "--epochs", "1")
    store = RunStore(runs_dir())
    student = next(r for r in store.list_ids() if r.startswith("normal-"))
    assert main(["explain", student, "--images", "6"]) == 0
    out = capsys.readouterr().out
    assert "maps for 3 runs (0 read back), 1 KD run compared with its teacher and baseline" in out
    doc = json.loads((store.run_dir(student) / "explain.json").read_text())
    (slug, entry), = doc["entries"].items()
    agree = entry["agreement"]
    assert slug == "gradcam-test-n6-s0-true" and agree["baseline"].startswith("ce-test_resnet-")
    assert len(agree["teacher_student"]["spearman"]) == 6 and len(agree["teacher_baseline"]["top_iou"]) == 6
    assert (store.run_dir(student) / "explain" / f"{slug}.png").stat().st_size > 10_000
    for rid in store.list_ids():  # the same images for every model
        e = json.loads((store.run_dir(rid) / "explain.json").read_text())["entries"][slug]
        assert [i["row"] for i in e["images"]] == [i["row"] for i in entry["images"]]
    # under a shift: the same images, and a second row in the attention table
    assert main(["explain", student, "--images", "6", "--shift", "blur:2"]) == 0
    capsys.readouterr()
    assert main(["table", "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(open(tmp_path / "t" / "attention.csv")))  # long: one row per cell
    assert list(dict.fromkeys(r["maps"] for r in rows)) == ["gradcam, true class", "gradcam, true class, under blur:2"]
    cells = {r["column"]: r for r in rows if r["maps"] == "gradcam, true class"}
    assert {"ρ teacher–student", "gain ρ", "IoU teacher–baseline", "gain IoU", "ρ chance", "ROAD student"} <= set(cells)
    assert (cells["gain ρ"]["quantity"], cells["gain ρ"]["of"]) == ("gain", "ρ") and cells["gain ρ"]["tested"]
    ts, tb = agree["teacher_student"], agree["teacher_baseline"]
    keep = [i for i in range(6)
            if None not in (ts["spearman"][i], ts["top_iou"][i], tb["spearman"][i], tb["top_iou"][i])]
    assert float(cells["ρ teacher–student"]["mean"]) == pytest.approx(np.mean([ts["spearman"][i] for i in keep]),
                                                                      abs=1e-4)
    # the report's gallery
    assert main(["report", "--all", "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "<h2>Where the models look</h2>" in page and "gradcam maps for the true class on 6 test images" in page
    # trained without figures (KDSTUDY_RUN_FIGURES=0, as the suite does): the report drew the ones it shows
    assert (store.run_dir(student) / "figures" / "confusion.png").is_file()
    asyncio.run(_looks(store, student))


async def _looks(store, student):
    from kdtui.app import KDStudyApp
    from tests.tui_helpers import wait_for

    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(100, 34)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: student in screen.rows, timeout=30)
        screen.query_one("#runs-table").move_cursor(row=screen.shown.index(student))
        await wait_for(pilot, lambda: screen.selected == student, timeout=10)
        await pilot.press("l")
        pane = screen.query_one("#looks-pane")
        await wait_for(pilot, lambda: "image 1/6" in str(pane.render()), timeout=10)
        text = str(pane.render())
        assert "agreement with the teacher: ρ" in text and ("✓ teacher" in text or "✗ teacher" in text)
        assert "▀" in text and "baseline" in text
        await pilot.press("l")
        await wait_for(pilot, lambda: "image 2/6" in str(pane.render()), timeout=10)


def test_bad_requests_are_one_line(capsys, tmp_path, monkeypatch):
    from kdengine.errors import UsageError
    from kdengine.explain.cam import cam_class
    from tests.tui_helpers import fake_study_store

    store, _ = fake_study_store(tmp_path / "runs", seeds=4)
    queued = next(r for r in store.list_ids() if store.read_status(r).state == "queued")
    assert main(["explain", queued, "--runs-dir", str(store.root)]) == 2
    assert "nothing to explain" in capsys.readouterr().err and not (store.run_dir(queued) / "explain.json").exists()
    monkeypatch.setitem(__import__("sys").modules, "pytorch_grad_cam", None)  # grad-cam not installed
    with pytest.raises(UsageError, match=r"pip install 'kdstudy\[explain\]'"):
        cam_class("gradcam")
    for args, message in [(["--images", "0"], "--images must lie in 1..256"),
                          (["--shift", "blur"], "--shift takes NAME:SEVERITY"),
                          (["--shift", "smudge:2"], "unknown shift 'smudge'")]:
        assert main(["explain", "nosuchrun", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_the_measures():
    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32)), rng.random((32, 32))
    from scipy.stats import spearmanr

    assert M.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0])
    assert M.spearman(a, a) == pytest.approx(1.0) and M.spearman(a, np.ones((32, 32))) is None
    assert M.top_iou(a, a) == 1.0 and M.top_mask(a).sum() == 205  # ceil(20% of 1024)
    assert M.top_iou(a, np.zeros((32, 32))) is None  # a flat map has no top region
    assert M.border_mass(np.ones((32, 32))) == pytest.approx(M.border_area())
    edge = np.zeros((32, 32))
    edge[0, :] = 1
    assert M.border_mass(edge) == 1.0
    rows, labels = np.arange(100), np.arange(100) % 4
    chosen = M.balanced_rows(rows, labels, 8, seed=3)
    assert np.bincount(labels[chosen]).tolist() == [2, 2, 2, 2]
    assert chosen.tolist() == M.balanced_rows(rows, labels, 8, seed=3).tolist() != \
        M.balanced_rows(rows, labels, 8, seed=4).tolist()
    cells = np.arange(32 * 32, dtype=float).reshape(32, 32)
    assert np.array_equal(M.to_grid(np.kron(cells, np.ones((7, 7)))), cells)  # 224 px: each cell's mean
    assert np.array_equal(M.to_grid(np.ones((20, 20))), np.ones((32, 32)))  # smaller than the grid


def test_road_removes_twenty_percent_of_the_pixels_either_way():
    """Issue 35, item 5: grad-cam's ROADLeastRelevantFirst(percentile=20) removed 80% of the pixels where the note
    said 20%; and a grad-cam map, 0 over most of the image, removed all or nothing at a tied percentile. Now each
    metric removes exactly 20%, the maps going in as their ranks."""
    from kdengine.explain.cam import road_metrics

    cam = np.zeros((1, 32, 32), np.float32)
    cam[0, :8, :8] = 1.0  # as grad-cam's maps are: mostly 0
    for metric in road_metrics():
        for given, share in ((M.ranked(cam)[0], 0.2), (cam[0], None)):
            seen = []
            metric.perturbation.imputer = lambda img, mask: seen.append(mask.numpy()) or img
            metric.perturbation(torch.rand(1, 32, 32), torch.from_numpy(given))
            removed = 1 - float(seen[0].mean())
            if share is not None:
                assert removed == pytest.approx(share, abs=1 / 1024), (type(metric).__name__, removed)
            else:  # the tied map itself: nowhere near 20% (why the ranks go in)
                assert abs(removed - 0.2) > 0.1, (type(metric).__name__, removed)
