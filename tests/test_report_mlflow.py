"""Figures at the end of every run, the self-contained HTML report, and MLflow (the tracker, and the export)."""
from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from kdengine.cli import main
from kdengine.store import RunStore

STUDY = ('seeds = [0, 1]\n[data]\nsource = "synthetic:images=140,seed=3"\nimage_size = 32\n[train]\nepochs = 2\n'
         '[shift]\nshifts = "blur,gamma"\nseverities = "1,3"\n'
         '[[experiments]]\nstrategy = "normal"\nteachers = ["test_efficientnet"]\nstudents = ["test_resnet"]\n')


@pytest.fixture(scope="module")
def study_store(tmp_path_factory):
    """A small study, trained once for this module: normal KD over two seeds, evaluated under two shifts."""
    root = tmp_path_factory.mktemp("study")
    path = root / "mini.toml"
    path.write_text(STUDY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDSTUDY_RUN_FIGURES", "1")  # the default: every run draws its figures at its end
        assert main(["study", "run", str(path), "--quiet", "--device", "cpu", "--runs-dir", str(root / "runs")]) == 0
    return RunStore(root / "runs")


def png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_every_run_has_its_figures(study_store):
    for rid in study_store.list_ids():
        folder = study_store.run_dir(rid) / "figures"
        for name in ("curves.png", "confusion.png", "reliability.png"):
            im = png((folder / name).read_bytes())
            assert im.width > 300 and im.height > 200, (rid, name)
        metrics = study_store.read_metrics(rid)
        bins = metrics["test"]["calibration"]
        assert sum(b["count"] for b in bins) == metrics["test"]["n"] and len(bins) == 15
        ece = sum(abs(b["accuracy"] - b["confidence"]) * b["count"] for b in bins if b["count"]) / metrics["test"]["n"]
        assert ece == pytest.approx(metrics["test"]["ece"], abs=1e-12)


def test_the_html_report_is_self_contained(study_store, tmp_path, capsys):
    assert main(["report", "mini", "--out", str(tmp_path), "--runs-dir", str(study_store.root)]) == 0
    capsys.readouterr()
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # opens offline
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    for data, alt in images:
        im = png(base64.b64decode(data))
        assert im.width > 100, alt
    alts = [alt for _, alt in images]
    runs = study_store.list_ids()
    assert sum("test confusion matrix" in a for a in alts) == len(runs)
    # readable where the page shows them (issue 26: tiny text): two to a row, the counts at 8 points or more there
    from kdengine.reports.figures import CONFUSION_COUNT_PT, CONFUSION_DISPLAY_PX

    assert ".grid.pairs figure { width: 48%" in page and '<div class="grid pairs"><figure>' in page
    for data, alt in images:
        if "test confusion matrix" in alt:
            assert CONFUSION_COUNT_PT * CONFUSION_DISPLAY_PX / png(base64.b64decode(data)).width >= 8, alt
    # a wide table scrolls inside the page instead of widening it (the robustness table was wider than the page)
    assert page.count("<table>") == page.count('<div class="wide"><table>') > 0
    assert sum("its baseline" in a for a in alts) == 2  # each student over its baseline and teacher
    assert sum("under acquisition shift" in a for a in alts) == 1  # student against baseline, mean over seeds
    for heading in ("Tables", "Students, their baselines and teachers", "Robustness under acquisition shift",
                    "Confusion matrices"):
        assert f"<h2>{heading}</h2>" in page
    assert "gain test_efficientnet" in page and "under shift" in page and "SYNTHETIC" in page
    assert main(["report", "--out", str(tmp_path / "all"), "--all", "--runs-dir", str(study_store.root)]) == 0
    assert (tmp_path / "all" / "report.html").is_file()
    assert main(["report", "--out", str(tmp_path / "x"), "--runs-dir", str(study_store.root)]) == 2


def test_mlflow_export_is_idempotent(study_store, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'exported.db'}"
    assert main(["export", "mlflow", "--study", "mini", "--uri", uri, "--runs-dir", str(study_store.root)]) == 0
    first = capsys.readouterr().out
    assert main(["export", "mlflow", "--study", "mini", "--uri", uri, "--runs-dir", str(study_store.root)]) == 0
    second = capsys.readouterr().out
    n = len(study_store.list_ids())
    assert f"exported {n} run(s); 0 already" in first and f"exported 0 run(s); {n} already" in second
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("kdstudy")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == n
    student = next(r for r in runs if r.data.tags["strategy"] == "normal")
    rid = student.data.tags["kdstudy.run_id"]
    history = client.get_metric_history(student.info.run_id, "val/accuracy")
    epochs = [e for e in study_store.read_events(rid)[0] if e["type"] == "epoch"]
    assert [h.step for h in history] == [1, 2]
    assert [h.value for h in history] == pytest.approx([e["val"]["accuracy"] for e in epochs])
    assert student.data.tags["study"] == "mini" and student.data.tags["teacher"] == "test_efficientnet"
    assert student.data.params["train.epochs"] == "2"
    assert student.data.metrics["final/test/accuracy"] == pytest.approx(study_store.read_metrics(rid)["test"]["accuracy"])


def test_the_mlflow_tracker_logs_a_run_live(capsys, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from tests.engine_helpers import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("KDSTUDY_RUN_FIGURES", "1")  # the default: the figures go to MLflow with the run
    root = tmp_path / "runs"
    m, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet",
                 "--epochs", "2", "--tracker", "mlflow", "--runs-dir", str(root), "--no-baseline")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")  # the default: SQLite beside the run store
    exp = client.get_experiment_by_name("kdstudy")
    runs = {r.data.tags["kdstudy.run_id"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {m["run_id"], m["teachers"][0]["run_id"]}
    run = client.get_run(runs[m["run_id"]].info.run_id)
    assert run.info.status == "FINISHED"
    assert [h.step for h in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert run.data.metrics["final/test/accuracy"] == pytest.approx(m["test"]["accuracy"])
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    figs = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"confusion_matrix.json", "classification_report.json"} <= arts
    assert {"figures/curves.png", "figures/confusion.png", "figures/reliability.png"} == figs
    assert run.data.tags["student"] == "test_resnet" and run.data.tags["seed"] == "0"
    assert (root / "mlartifacts").is_dir()
