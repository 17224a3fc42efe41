"""The method axis end to end: every method trains with every strategy it fits, a study over methods shares its
teachers and baselines, a killed run resumes bitwise (CRD's memory bank included), a run's files say its method,
your own method from a file or an entry point, and the bad inputs of the axis (one line, exit 2, nothing written)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdengine import method_catalog
from kdengine.cli import main
from kdengine.paths import runs_dir
from kdengine.store import RunStore
from kdengine.study.expand import expand
from kdengine.study.schema import load_study
from tests.engine_helpers import FAST, train

# the smallest study that trains every pairing: about 65 training images (three steps), tiny models, one epoch
TINY = 'source = "synthetic:images=100,seed=5"\nimage_size = 32\n'
LOGIT = [n for n, m in method_catalog.CATALOGUE.items() if not m.needs_network]
ALL = list(method_catalog.CATALOGUE)


NETWORK_TEACHERS = {"normal": ["test_efficientnet"], "reverse": ["test_efficientnet"], "defective": ["test_efficientnet"],
                    "tf-self": [], "ensemble": ["test_efficientnet", "test_convnext"]}


def _study(tmp_path: Path) -> Path:
    """Every strategy with a teacher network with every method, tf-reg with every logit method: one study."""
    text = f"name = \"every-method\"\nseeds = [0]\n[data]\n{TINY}[train]\nepochs = 1\nbatch_size = 32\n" \
           "[kd]\ndefect_acc = 0.05\ncrd_negatives = 8\n"
    for strategy, methods in {**{s: ALL for s in NETWORK_TEACHERS}, "tf-reg": LOGIT}.items():
        teachers = json.dumps(NETWORK_TEACHERS.get(strategy, []))
        text += (f"[[experiments]]\nstrategy = \"{strategy}\"\nteachers = {teachers}\n"
                 f"students = [\"test_resnet\"]\nkd.method = {json.dumps(methods)}\n")
    path = tmp_path / "every.toml"
    path.write_text(text)
    return path


def test_every_method_trains_with_every_strategy_it_fits(capsys, tmp_path):
    path = _study(tmp_path)
    plan = expand(load_study(str(path)))
    students = [p.spec for p in plan if "student" in p.roles]
    pairs = {(s.strategy, s.kd.method) for s in students}
    assert len(pairs) == len(students) == 5 * len(ALL) + len(LOGIT)
    # the methods share their teachers and their baseline: one per model (and the defective teacher)
    assert sorted(p.run_id.split("-s0")[0] for p in plan if p.spec.kind == "ce") == \
        ["ce-test_convnext", "ce-test_efficientnet", "ce-test_resnet", "defective-test_efficientnet"]
    assert main(["study", "run", str(path), "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    store = RunStore(runs_dir())
    for spec in students:
        assert store.read_status(spec.run_id).state == "finished", spec.run_id
        steps = [e for e in store.read_events(spec.run_id)[0] if e["type"] == "step"]
        terms = set(steps[0]["terms"]) - {"ce"}
        assert terms and all(steps[0]["terms"][t] == steps[0]["terms"][t] for t in terms), spec.run_id  # not NaN
        assert (spec.kd.method == "hinton") == (terms == {"kd"}), (spec.run_id, terms)
        metrics = store.read_metrics(spec.run_id)
        assert metrics["method"] == spec.kd.method


@pytest.mark.parametrize("method", ["crd", "fitnet"])
def test_a_run_killed_mid_epoch_resumes_bitwise_with_its_methods_state(capsys, tmp_path, monkeypatch, method):
    """The method's state (CRD's banks and heads and Z, FitNet's regressor) is in last.pt: a run killed in its
    second epoch resumes from the first and ends exactly where an uninterrupted run ends."""
    from kdengine.training import trainer
    from kdengine.training.step import TrainStep

    saved = []  # the method's state in each last.pt written (a finished run's last.pt is removed)
    real_save = trainer.save_last
    monkeypatch.setattr(trainer, "save_last", lambda d, state: (saved.append({k: v.clone() for k, v in
                                                                              state.get("method", {}).items()}),
                                                                 real_save(d, state))[1])
    args = ("--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet", "--method", method,
            "--crd-negatives", "16", "--epochs", "2")
    ref, _ = train(capsys, *args, "--runs-dir", str(tmp_path / "ref"))
    steps_per_epoch = next(e for e in RunStore(tmp_path / "ref").read_events(ref["run_id"])[0]
                           if e["type"] == "start")["steps_per_epoch"]
    real = TrainStep.__call__
    calls = {"n": 0}

    def killed(self, raw):
        if self.loss.method is not None:  # the student's steps (its teacher trains first)
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 1:  # the first step of its second epoch
                raise RuntimeError("simulated kill mid-epoch")
        return real(self, raw)

    monkeypatch.setattr(TrainStep, "__call__", killed)
    teacher = ref["teachers"][0]["run_id"]  # finished: the killed run's store has it, and trains only the student
    shutil.copytree(RunStore(tmp_path / "ref").run_dir(teacher), RunStore(tmp_path / "crash").run_dir(teacher))
    with pytest.raises(RuntimeError, match="simulated kill"):
        main(["train", *FAST, *args, "--runs-dir", str(tmp_path / "crash")])
    capsys.readouterr()
    monkeypatch.setattr(TrainStep, "__call__", real)
    store = RunStore(tmp_path / "crash")
    assert store.read_status(ref["run_id"]).state == "failed"
    resumed, _ = train(capsys, *args, "--runs-dir", str(tmp_path / "crash"))
    assert any(e["type"] == "resume" and e["epoch"] == 1 for e in store.read_events(ref["run_id"])[0])
    assert resumed["test"]["loss"] == ref["test"]["loss"] and resumed["test"]["confusion"] == ref["test"]["confusion"]
    student = [m for m in saved if m]  # the reference's two epochs, the killed run's first, the resumed run's second
    assert len(student) == 4
    a, b = student[1], student[3]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(student[0][k], a[k]) for k in a)  # the state did move in the second epoch
    if method == "crd":
        assert {"method.bank_s0", "method.bank_t0", "method.z"} <= set(a)
    # the exported student carries none of it
    from safetensors import safe_open

    with safe_open(str(store.checkpoint_dir(ref["run_id"]) / "best.safetensors"), framework="pt") as fh:
        assert not any(k.startswith("method.") or "regressor" in k or "bank" in k for k in fh.keys())


def test_a_method_in_the_run_id_and_its_files(capsys):
    m, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet",
                 "--method", "dist", "--epochs", "1")
    assert m["run_id"].startswith("normal-dist-test_resnet-s0-") and m["method"] == "dist"
    store = RunStore(runs_dir())
    spec = json.loads((store.run_dir(m["run_id"]) / "spec.json").read_text())
    assert spec["spec"]["kd"]["method"] == "dist" and spec["store_version"] == 3
    out = subprocess.run([sys.executable, "-m", "kdengine", "runs", "list", "--json"], capture_output=True, text=True,
                         env={**__import__("os").environ, "KDSTUDY_HOME": str(runs_dir())})
    row = next(r for r in json.loads(out.stdout) if r["run_id"] == m["run_id"])
    assert row["method"] == "dist"


# -- your own method ---------------------------------------------------------------------------------------------
DOC = Path(__file__).parent.parent / "docs" / "methods.md"


def _doc_example() -> str:
    """The complete example of docs/methods.md, as a user would copy it."""
    text = DOC.read_text()
    start = text.index("```python\n", text.index("## Your own method")) + len("```python\n")
    return text[start:text.index("```", start)]


def test_the_documented_method_file_trains(capsys, tmp_path):
    path = tmp_path / "my_kd.py"
    path.write_text(_doc_example())
    m, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet",
                 "--method", "logit-mse", "--method-file", str(path), "--method-args", "weight=0.5", "--epochs", "1")
    steps = [e for e in RunStore(runs_dir()).read_events(m["run_id"])[0] if e["type"] == "step"]
    assert steps and "logit_mse" in steps[0]["terms"] and steps[0]["terms"]["logit_mse"] > 0
    # the file is pinned: changed after the run was specified, a queued run refuses it
    spec = RunStore(runs_dir()).load_spec(m["run_id"])
    assert spec.kd.method_sha256 and spec.kd.method_file == str(path)
    path.write_text(_doc_example() + "\n# changed\n")
    from kdengine.errors import UsageError
    from kdengine.training.methods.plugins import load_method_file

    with pytest.raises(UsageError, match="has changed since the run was specified"):
        load_method_file(spec.kd.method_file, spec.kd.method_sha256)


def test_an_entry_point_method_is_found_by_name(tmp_path):
    """A package that declares a kdstudy.methods entry point: its method is offered and trains by name alone."""
    pkg = tmp_path / "site"
    (pkg / "kdplug").mkdir(parents=True)
    (pkg / "kdplug" / "__init__.py").write_text(_doc_example().replace('"logit-mse"', '"plug-mse"'))
    dist = pkg / "kdplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kdplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kdstudy.methods]\nplug-mse = kdplug:LogitMSE\n")
    code = ("import sys; from kdengine import method_catalog as m; from kdengine.runspec import KDConfig;"
            "from kdengine.training.methods.plugins import method_class;"
            "assert 'plug-mse' in m.names(), m.names(); print(method_class(KDConfig(method='plug-mse')).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": f"{pkg}:{Path(__file__).parent.parent}"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LogitMSE"


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--strategy", "tf-reg", "--method", "rkd"], "virtual teacher has none"),
    (["--method", "dkd", "--dkd-beta", "-1"], "must lie in [0, 1000]"),
    (["--method", "at", "--at-stages", "1,9"], "stage 9 does not exist"),
    (["--method", "fitnet", "--fitnet-stage", "7"], "stage 7 does not exist"),
    (["--method", "fitnet", "--fitnet-stage", "deep"], "must be 'middle' or stage indices"),
    (["--method", "x", "--method-file", "{bad}"], "failed to import: RuntimeError: boom"),
    (["--method", "x", "--method-file", "{empty}"], "registers no method"),
    (["--method", "x", "--method-file", "{missing}"], "cannot be read"),
    (["--method", "x", "--method-file", "{good}"], "registers logit-mse, not 'x'"),
])
def test_bad_method_input_is_one_line_exit_2_and_nothing_written(capsys, tmp_path, args, message):
    files = {"bad": 'raise RuntimeError("boom")\n', "empty": "x = 1\n", "good": _doc_example()}
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    args = [a.format(**{n: str(tmp_path / f"{n}.py") for n in (*files, "missing")}) for a in args]
    strategy = [] if "--strategy" in args else ["--strategy", "normal", "--teacher", "test_efficientnet"]
    store = tmp_path / "runs"
    code = main(["train", *FAST, "--student", "test_resnet", *strategy, *args, "--runs-dir", str(store)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not store.exists() or not any(store.iterdir())
