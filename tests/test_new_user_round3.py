"""What a new user tripped over, round three (issue 38): each defect reproduced, each failed before its fix."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from kdengine.cli import main
from kdengine.paths import runs_dir
from tests.conftest import make_png_folder


def broken_folder(root: Path) -> Path:
    """The issue's data in small: grey PNGs in 3 classes, 3 broken files and one odd-sized RGB image."""
    make_png_folder(root, per_class=14, side=40)
    for cls in ("a", "b", "c"):
        (root / cls / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    rgb = np.random.default_rng(5).integers(0, 255, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "a" / "odd.png")
    return root


def test_data_check_counts_groups_of_readable_images_and_says_what_it_saw(tmp_path, capsys):
    data = broken_folder(tmp_path / "imgs")
    args = ["data", "check", f"folder:{data}", "--skip-bad", "--image-size", "32"]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    splits = summary["splits"]
    assert sum(s["images"] for s in splits.values()) == 3 * 14 + 1  # the broken ones are not images training uses
    for split in splits.values():  # a folder's every image is its own group: the groups are the readable images
        assert split["groups"] == split["images"]
    assert len(summary["skipped"]) == 3
    assert summary["seen"]["colour"] == 1 and summary["seen"]["sizes"] == {"40x40": 42, "50x30": 1}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "images read: 42 grey and 1 RGB (made grey: --color rgb keeps colour); sizes 40×40 (42) and 50×30 (1)" \
        in out


def _failed_on_bad_images(tmp_path):
    """The issue's store after F5 on a folder with broken images: the teacher and the baseline failed on them, the
    student waits for its teacher."""
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, baseline_of, build_specs
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue

    data = broken_folder(tmp_path / "imgs")
    store = RunStore(runs_dir())
    spec = build_specs("normal", "test_resnet", ["resnet10t"], DataConfig(source=f"folder:{data}", image_size=32),
                       TrainConfig(epochs=1), KDConfig(), 0)
    enqueue(store, spec, device="cpu")
    enqueue(store, baseline_of(spec), device="cpu")
    why = f"corrupt or unreadable image: {data}/a/broken.png (use --skip-bad to skip the 3 unreadable image(s))"
    for rid in (spec.teacher.run_id, baseline_of(spec).run_id):
        store.claim(rid, "worker")
        store.finish(rid, "failed", why)
    return store, spec


def test_doctor_names_a_student_waiting_on_a_failed_teacher_and_retry_can_skip_the_bad_images(tmp_path, capsys):
    store, spec = _failed_on_bad_images(tmp_path)
    teacher = spec.teacher.run_id
    assert main(["runs", "doctor"]) == 0
    out = capsys.readouterr().out
    assert "the store is healthy" not in out
    assert f"{spec.run_id}  waits for its teacher {teacher}, which failed" in out
    assert f"kdengine runs retry {teacher} --skip-bad (both are queued anew" in out
    # a retry as it is fails again unless the file was mended: queued all the same, and said, with the way out
    assert main(["runs", "retry", teacher]) == 0
    out = capsys.readouterr().out
    assert "unless the file was mended it fails again (--skip-bad" in out
    assert store.read_status(teacher).state == "queued"
    assert main(["runs", "retry", teacher, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    twin = next(r for r in store.list_ids() if r.startswith("ce-resnet10t") and r != teacher)
    student = next(r for r in store.list_ids() if r.startswith("normal-") and r != spec.run_id)
    assert f"queued {twin} in its place" in out and f"its student {spec.run_id} moved to {student}" in out
    assert store.load_spec(twin).data.skip_bad and store.read_status(twin).state == "queued"
    assert store.load_spec(student).teachers[0].run_id == twin and store.read_status(student).state == "queued"
    assert store.read_status(spec.run_id).state == "stopped"  # it no longer waits for ever
    assert main(["runs", "doctor"]) == 0
    assert "waits for its teacher" not in capsys.readouterr().out


def test_the_resume_hint_after_ctrl_c_is_a_command_that_resumes(tmp_path, capsys, monkeypatch):
    """A study run from a file, interrupted: the hint is a command that works, and the study's name alone (the
    file elsewhere, or gone) finds the study the store knows and finishes it."""
    from kdengine.store import RunStore
    from kdengine.training import trainer
    from tests.conftest import SMALL_SYNTH

    study = tmp_path / "mine.toml"
    study.write_text(f'name = "shapes-kd"\nseeds = [0]\n[data]\nsource = "{SMALL_SYNTH}"\nimage_size = 32\n'
                     '[train]\nepochs = 1\nbatch_size = 32\n[[experiments]]\nstrategy = "normal"\n'
                     'teachers = ["test_resnet"]\nstudents = ["test_resnet"]\n')
    real_run, calls = trainer.Trainer.run, {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # ctrl-c in the second run
        return real_run(self)

    monkeypatch.setattr(trainer.Trainer, "run", interrupted)
    args = ["study", "run", str(study), "--set", "train.lr=0.002", "--device", "cpu", "--quiet"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"kdengine study run {study} --set train.lr=0.002 --device cpu --quiet again" in err, err
    monkeypatch.setattr(trainer.Trainer, "run", real_run)
    study.unlink()  # the name alone: the store's record of the study, its --set included
    assert main(["study", "run", "shapes-kd", "--device", "cpu", "--quiet"]) == 0
    store = RunStore(runs_dir())
    assert {store.read_status(r).state for r in store.list_ids()} == {"finished"}
    assert {store.load_spec(r).train.lr for r in store.list_ids()} == {0.002}
    assert main(["study", "run", "no-such-study"]) == 2
    assert "no study file, preset or study 'no-such-study'" in capsys.readouterr().err


def test_run_labels_do_not_depend_on_what_else_is_in_the_store(tmp_path):
    """A study's seed-0 runs read like its seeds 1 and 2, whatever ad-hoc run was trained beside them."""
    from kdengine import api
    from kdengine.atomic import write_json
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, build_specs
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue

    store = RunStore(tmp_path / "runs")
    data = DataConfig(source="synthetic", image_size=32)

    def spec(seed, temperature, skip_bad=False):
        return build_specs("normal", "resnet10t", ["test_resnet"], DataConfig(**{**vars(data), "skip_bad": skip_bad}),
                           TrainConfig(epochs=1), KDConfig(temperature=temperature), seed)

    study = [spec(seed, t) for seed in (0, 1, 2) for t in (2.0, 4.0)]
    adhoc = spec(0, 2.0, skip_bad=True)
    for s in (*study, adhoc):
        enqueue(store, s, device="cpu")
    write_json(store.root / "studies" / "shapes-kd" / "study.json",
               {"name": "shapes-kd", "runs": [{"run_id": s.run_id} for s in study]})
    points = {r.run_id: r.point for r in api.open(store.root).rows()}
    assert {points[s.run_id] for s in study if s.kd.temperature == 2.0} == {"T=2"}
    assert {points[s.run_id] for s in study if s.kd.temperature == 4.0} == {"T=4"}


def test_runs_of_two_methods_are_told_apart_by_their_method_not_by_a_cut_settings_label(tmp_path):
    """The demo's normal and normal/dist students (same teacher, student and seeds) were look-alikes whose label
    listed what differed ("α=0.5, method=hinton", "α=None, method=dist"), cut to "n… α=0.5, me" at 80 columns.
    The method is already in what the run is: no label, and a sweep within one method keeps its own."""
    from kdengine import api
    from kdengine.data.config import DataConfig
    from kdengine.runspec import KDConfig, TrainConfig, build_specs
    from kdengine.store import RunStore
    from kdengine.store.queue import enqueue

    store = RunStore(tmp_path / "runs")
    data = DataConfig(source="synthetic", image_size=32)
    specs = [build_specs("normal", "resnet10t", ["test_resnet"], data, TrainConfig(epochs=1), kd, seed)
             for seed in (0, 1) for kd in (KDConfig(), KDConfig(method="dist"), KDConfig(method="dist", dist_beta=1.0))]
    for s in specs:
        enqueue(store, s, device="cpu")
    rows = {r.run_id: r for r in api.open(store.root).rows()}
    hinton = [rows[s.run_id] for s in specs if s.kd.method == "hinton"]
    assert {r.point for r in hinton} == {""} and {r.what for r in hinton} == {"normal"}
    dist = {s.kd.dist_beta: rows[s.run_id].point for s in specs if s.kd.method == "dist"}
    assert dist == {1.0: "kd.dist_beta=1", 2.0: "kd.dist_beta=2"}, dist  # the default by its value, not None


def test_shift_names_are_checked_before_the_heavy_imports_and_a_typo_gets_a_suggestion(tmp_path):
    """explain --shift contrast:3 (the old help's example, no shift) and shift --shifts blurr: one line, exit 2,
    said before torch is imported (it took 4-6 s); the help's example is a real shift."""
    import subprocess
    import sys

    code = ("import sys; from kdengine.cli import main; rc = main(sys.argv[1:]); "
            "print('RC', rc, 'torch' in sys.modules)")
    for args, said in ((["explain", "any-run", "--shift", "contrast:3"], "unknown shift 'contrast'"),
                       (["shift", "any-run", "--shifts", "blurr"], "did you mean blur?")):
        done = subprocess.run([sys.executable, "-c", code, *args, "--runs-dir", str(tmp_path / "runs")],
                              capture_output=True, text=True, timeout=120)
        assert done.stdout.split() == ["RC", "2", "False"], (args, done.stdout, done.stderr)
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    from kdengine.cli import build_parser

    explain = build_parser()._subparsers._group_actions[0].choices["explain"]
    help_text = next(a.help for a in explain._actions if "--shift" in a.option_strings)
    example = help_text.split("e.g. ")[1].split(" ")[0]
    from kdengine.data.corruptions import parse_severities, parse_shifts

    name, severity = example.split(":")
    assert parse_shifts(name) == [name] and parse_severities(severity) == [int(severity)]


def test_a_set_typo_is_blamed_on_set_and_study_key_typos_get_a_suggestion(tmp_path, capsys):
    study = tmp_path / "typo.toml"
    study.write_text('name = "x"\n[kd]\ntemprature = 3\n[[experiments]]\nstrategy = "normal"\n'
                     'teachers = ["resnet10t"]\nstudents = ["test_resnet"]\n')
    assert main(["study", "run", str(study), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"study {study}" in err and "unknown key 'kd.temprature'" in err and "did you mean kd.temperature" in err
    study.write_text(study.read_text().replace("temprature", "temperature"))
    assert main(["study", "run", str(study), "--dry-run", "--set", "train.epochs=2", "--set", "kd.alpah=0.3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set kd.alpah=0.3: unknown key 'kd.alpah'") and str(study) not in err, err
    assert "did you mean kd.alpha?" in err


def test_runs_show_says_the_device_asked_for_not_the_one_auto_chose(capsys):
    from tests.conftest import SMALL_SYNTH

    assert main(["train", "--data", SMALL_SYNTH, "--image-size", "32", "--epochs", "1", "--batch-size", "32",
                 "--quiet", "--strategy", "baseline", "--student", "test_resnet"]) == 0  # --device left at auto
    capsys.readouterr()
    from kdengine.store import RunStore

    rid = RunStore(runs_dir()).list_ids()[0]
    assert main(["runs", "show", rid]) == 0
    device = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("device:"))
    assert device.startswith("device: asked for auto; trained on cpu"), device


def test_a_stop_during_the_final_evaluation_says_the_run_will_finish(capsys, monkeypatch):
    """Asked to stop while it evaluates its best checkpoint, a run finishes seconds later: the stop says so, rather
    than "stopping"."""
    from kdengine.store import RunStore
    from kdengine.training import trainer
    from tests.conftest import SMALL_SYNTH

    said = []
    real_evaluate = trainer.Trainer.evaluate

    def evaluate(self, split, final=False, thresholds=None):
        if final and not said:
            main(["runs", "stop", self.run_id])
            said.append(capsys.readouterr().out)
        return real_evaluate(self, split, final, thresholds)

    monkeypatch.setattr(trainer.Trainer, "evaluate", evaluate)
    assert main(["train", "--data", SMALL_SYNTH, "--image-size", "32", "--epochs", "1", "--batch-size", "32",
                 "--quiet", "--device", "cpu", "--strategy", "baseline", "--student", "test_resnet"]) == 0
    store = RunStore(runs_dir())
    rid = store.list_ids()[0]
    assert said == [f"{rid}: too late to stop: it is in its final evaluation and finishes when that ends\n"], said
    assert store.read_status(rid).state == "finished"


def test_the_progress_bar_ends_an_epoch_at_its_last_step_with_no_eta_left():
    """Updates are drawn at most twice a second: the bar stayed at 13/14 with an ETA when the epoch ended, and a
    resumed run's short stretch showed ETA -:--:--."""
    import io

    from kdengine.training.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = Progress("ce-test_resnet-s0", stream=screen)
    bar.start(14, done=7)  # resumed at the epoch's middle
    for done in range(8, 15):
        bar.step(done, "ep 2/2")
    bar.flush()  # the epoch's end
    assert bar.rich.tasks[0].completed == 14
    bar.close()
    drawn = screen.getvalue()
    assert "14/14" in drawn and "-:--:--" not in drawn, drawn


def test_a_label_names_only_what_a_run_reads(tmp_path):
    """Adam against SGD: the Adam run reads no momentum, so its label names none (a default shown for a setting a
    run ignores read as if it mattered); the SGD run's label names its momentum."""
    from kdengine.data.config import DataConfig
    from kdengine.runspec import TrainConfig, ce_spec
    from kdengine.store.records import RunRecord, flat_settings
    from kdengine.store.rows import point_labels
    from kdengine.store.status import RunStatus

    data = DataConfig(source="synthetic", image_size=32)
    adam, sgd = (ce_spec("test_resnet", data, TrainConfig(epochs=1, optimizer=o), 0) for o in ("adam", "sgd"))
    assert "train.momentum" not in flat_settings(adam)  # the identity leaves it out: the label must not invent it
    records = [RunRecord(s.run_id, s, RunStatus("finished"), None) for s in (adam, sgd)]
    labels = point_labels(records)
    assert labels[adam.run_id] == "train.optimizer=adam", labels
    assert labels[sgd.run_id] == "train.momentum=0.9, train.optimizer=sgd", labels
