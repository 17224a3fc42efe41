"""One source of truth: the strategy catalogue and the config options are declared once, and every caller
(CLI, study schema, launch form, losses, reports) follows them."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from kdengine import strategy_catalog as catalog
from kdengine.cli import main
from kdengine.options import option
from kdengine.paths import runs_dir
from kdengine.runspec import CONFIGS, KDConfig, RunSpec, TrainConfig, build_specs
from kdengine.store import RunStore
from kdengine.training import losses
from kdengine.training.losses import kd_terms, soft_targets
from kdengine.training.methods import Outputs
from tests.engine_helpers import FAST, train
from tests.tui_helpers import wait_for


def test_every_declared_method_is_registered_and_the_reverse():
    from kdengine import method_catalog
    from kdengine.training.methods import METHODS, Method, register_method

    # a method file (the plugin tests) may have registered its own method in this process: the built-ins are
    # those defined in kdengine, and they are exactly the catalogue
    assert set(method_catalog.CATALOGUE) == {n for n, m in METHODS.items() if m.__module__.startswith("kdengine.")}
    with pytest.raises(ValueError, match="registered twice"):
        register_method(METHODS["hinton"])
    assert issubclass(METHODS["dkd"], Method)


@pytest.mark.parametrize("name", [n for n in catalog.CATALOGUE if catalog.CATALOGUE[n].distills])
def test_each_kd_strategy_is_wired_to_a_loss_with_a_kd_term(name):
    """Built from its spec, each strategy's loss (Hinton's method) has a non-zero KD term whose gradient reaches the
    student; with alpha = 0 it is plain cross-entropy. Fails if a strategy lost its distillation term."""
    strat = catalog.CATALOGUE[name]
    teachers = {"given": ["resnet18"] * max(1, strat.min_teachers), "self": [], "virtual": []}[strat.teacher_source]
    kd = KDConfig(alpha=0.7, temperature=3.0)
    spec = build_specs(name, "test_resnet", teachers, CONFIGS["data"](), TrainConfig(), kd, 0)
    loss = losses.distiller_for(spec, num_classes=5)
    torch.manual_seed(0)
    logits = torch.randn(8, 5, requires_grad=True)
    y = torch.randint(0, 5, (8,))
    t_logits = [torch.randn(8, 5) for _ in spec.teachers]
    terms = loss.terms(Outputs(logits), [Outputs(t) for t in t_logits], y, torch.arange(8))
    assert set(terms) == {"ce", "kd"} and terms["kd"].item() > 1e-4
    grad_kd, = torch.autograd.grad(terms["kd"], logits)
    assert grad_kd.abs().sum() > 0
    assert terms["ce"].item() == pytest.approx(0.3 * torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    if strat.teacher_source != "virtual":  # the teachers' softened outputs are the target
        target = torch.stack([soft_targets(t, 3.0) for t in t_logits]).mean(0)
        ref = kd_terms(logits, y, target, 0.7, 3.0)["kd"]
        assert terms["kd"].item() == pytest.approx(ref.item(), rel=1e-6)
    else:  # tf-reg: the virtual teacher at its own temperature, which is also the loss's T
        target = losses.virtual_teacher_targets(y, 5, kd.tf_a, kd.tf_temperature)
        ref = kd_terms(logits, y, target, 0.7, kd.tf_temperature)["kd"]
        assert terms["kd"].item() == pytest.approx(ref.item(), rel=1e-6)
    off = losses.distiller_for(build_specs(name, "test_resnet", teachers, CONFIGS["data"](), TrainConfig(),
                                           KDConfig(alpha=0.0), 0), 5)
    assert off.terms(Outputs(logits), [Outputs(t) for t in t_logits], y, torch.arange(8))["kd"].item() == 0.0


def test_catalogue_parameter_counts_match_timm():
    from kdengine.models.architectures import APPROX_PARAMS
    from kdengine.models.factory import count_params

    for name, params in APPROX_PARAMS.items():
        assert count_params(name, 7, 1) == params, name


# -- a toy strategy: one catalogue entry (who teaches; the method says how) -----------------------------------------
@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(catalog.CATALOGUE, "toy", catalog.Strategy(
        "toy", "Toy KD", "a toy: a given teacher, trained normally", 1, 1, "normal", "given", True))


def test_a_toy_strategy_appears_in_help_schema_and_trains(toy, capsys, tmp_path):
    assert main(["train", "--help"]) == 0
    assert "toy: a toy: a given teacher, trained normally" in capsys.readouterr().out.replace("\n                        ", " ")
    assert main(["study", "schema"]) == 0
    assert "toy" in capsys.readouterr().out
    study = tmp_path / "toy.toml"
    study.write_text('seeds=[0]\n[[experiments]]\nstrategy="toy"\nteachers=["test_efficientnet"]\n'
                     'students=["test_resnet"]\n')
    assert main(["study", "run", str(study), "--dry-run"]) == 0
    assert "toy: test_efficientnet -> test_resnet" in capsys.readouterr().out
    m, _ = train(capsys, "--strategy", "toy", "--teacher", "test_efficientnet", "--student", "test_resnet",
                 "--epochs", "1", "--no-baseline")
    assert m["strategy"] == "toy" and m["run_id"].startswith("toy-test_resnet-") and "agreement" in m["test"]
    events = RunStore(runs_dir()).read_events(m["run_id"])[0]
    assert all(e["terms"]["kd"] > 0 for e in events if e["type"] == "step")


async def test_a_toy_strategy_appears_in_the_launch_form(toy, tmp_path):
    from textual.widgets import Select

    from kdtui.app import KDStudyApp

    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        select = app.screen.query_one("#strategy", Select)
        assert "toy" in [value for _, value in select._options]


# -- a new option: one field ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainWithWarmup(TrainConfig):
    warmup_epochs: int = option(0, "linear warm-up epochs before the schedule", low=0, since=3, advanced=True)


@pytest.fixture
def warmup(monkeypatch):
    monkeypatch.setitem(CONFIGS, "train", TrainWithWarmup)


def test_a_new_option_appears_in_help_schema_and_study_files(warmup, capsys, tmp_path):
    assert main(["train", "--help"]) == 0
    assert "--warmup-epochs N" in capsys.readouterr().out
    assert main(["study", "schema"]) == 0
    assert "warmup_epochs" in capsys.readouterr().out
    from kdengine.study.expand import expand
    from kdengine.study.schema import load_study

    path = tmp_path / "w.toml"
    path.write_text('[train]\nwarmup_epochs = 2\n[[experiments]]\nstrategy="baseline"\nstudents=["test_resnet"]\n')
    (run,) = expand(load_study(str(path)))
    assert run.spec.train.warmup_epochs == 2
    assert RunSpec.from_dict(json.loads(json.dumps(run.spec.to_dict()))) == run.spec
    with pytest.raises(Exception, match="warmup_epochs must be >= 0"):
        load_study(str(path), sets=["train.warmup_epochs=-1"])
    # and the flag reaches the spec
    assert main(["train", *FAST, "--strategy", "baseline", "--student", "test_resnet", "--warmup-epochs", "3",
                 "--queue"]) == 0
    capsys.readouterr()
    (rid,) = RunStore(runs_dir()).list_ids()
    assert RunStore(runs_dir()).load_spec(rid).train.warmup_epochs == 3


async def test_a_new_option_appears_in_the_launch_form(warmup, tmp_path):
    from kdtui.app import KDStudyApp
    from kdtui.forms import spec_from_form

    app = KDStudyApp(tmp_path / "runs", start_workers=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LaunchScreen", timeout=10)
        app.screen.query_one("#more").collapsed = False  # an advanced option: under "More options"
        await wait_for(pilot, lambda: app.screen.query("#warmup_epochs"), timeout=10)
        field = app.screen.query_one("#warmup_epochs")
        assert field.value == "0"
        field.value = "4"
        spec = spec_from_form(app.screen.values(), app.store)
        assert spec.train.warmup_epochs == 4


# -- a teacher's own settings ----------------------------------------------------------------------------------------
def test_train_says_which_teacher_it_reuses_and_why_it_trains_one(capsys):
    args = ("--strategy", "normal", "--teacher", "test_efficientnet", "--student", "test_resnet", "--no-baseline")
    first, err = train(capsys, *args, "--epochs", "1", "--quiet")
    teacher_1 = first["teachers"][0]["run_id"]
    from kdengine.cli import main as cli

    code = cli(["train", *[a for a in FAST if a != "--quiet"], *args, "--json", "--loader-workers", "0"])
    out, err = capsys.readouterr()
    second = json.loads(out)
    assert code == 0 and second["teachers"][0]["run_id"] != teacher_1
    assert f"differs in train.epochs 1→2; to distil from it instead, pass --teacher {teacher_1}" in err
    # by run id: the 1-epoch teacher teaches a 2-epoch student, and is reused, not retrained
    code = cli(["train", *[a for a in FAST if a != "--quiet"], "--strategy", "normal", "--teacher", teacher_1,
                "--student", "test_convnext", "--no-baseline", "--json"])
    out, err = capsys.readouterr()
    third = json.loads(out)
    assert code == 0 and third["teachers"][0]["run_id"] == teacher_1
    assert f"reusing finished run {teacher_1}" in err and err.count(teacher_1) == 1  # said once (issue 26)
    # by its own settings: the same teacher again
    fourth, _ = train(capsys, "--strategy", "normal", "--teacher", "test_efficientnet", "--student",
                      "test_convnext", "--teacher-set", "epochs=1", "--no-baseline")
    assert fourth["teachers"][0]["run_id"] == teacher_1
    assert sum(e["type"] == "start" for e in RunStore(runs_dir()).read_events(teacher_1)[0]) == 1


def test_teacher_by_run_id_must_fit(capsys):
    first, _ = train(capsys, "--strategy", "baseline", "--student", "test_efficientnet", "--epochs", "1")
    code = main(["train", *FAST, "--strategy", "defective", "--teacher", first["run_id"], "--student", "test_resnet"])
    err = capsys.readouterr().err
    assert code == 2 and "needs a defective teacher" in err
    code = main(["train", *FAST, "--image-size", "48", "--strategy", "normal", "--teacher", first["run_id"],
                 "--student", "test_resnet"])
    err = capsys.readouterr().err
    assert code == 2 and "saw other data (image_size 32→48)" in err


def test_study_teacher_train_section(tmp_path):
    from kdengine.runspec import baseline_of
    from kdengine.study.expand import expand
    from kdengine.study.schema import load_study

    path = tmp_path / "t.toml"
    path.write_text('seeds=[0]\n[train]\nepochs=2\n[teacher_train]\nepochs=30\nlr=0.01\n'
                    '[[experiments]]\nstrategy="normal"\nteachers=["resnet18"]\nstudents=["test_resnet"]\n')
    plan = expand(load_study(str(path)))
    (student,) = [p for p in plan if p.spec.kind == "kd"]
    assert (student.spec.teacher.train.epochs, student.spec.teacher.train.lr) == (30, 0.01)
    assert student.spec.train.epochs == 2 and baseline_of(student.spec).train.epochs == 2
    assert {p.run_id for p in plan} == {student.run_id, student.spec.teacher.run_id, baseline_of(student.spec).run_id}


def test_catalogue_minimum_image_size_is_timms():
    """The TUI checks image sizes of catalogue models without torch, from MIN_IMAGE_SIZE: it must be exact."""
    from kdengine.errors import UsageError
    from kdengine.models.architectures import MIN_IMAGE_SIZE, known_names
    from kdengine.models.factory import check_buildable

    for name in known_names():
        check_buildable(name, MIN_IMAGE_SIZE, False)
        with pytest.raises(UsageError, match="too small"):
            check_buildable(name, MIN_IMAGE_SIZE - 1, False)


def test_balanced_is_the_thesis_subset_and_explicit_caps_win():
    from kdengine.cli import build_parser
    from kdengine.commands.common import data_config

    base = ["train", "--data", "synthetic", "--strategy", "baseline", "--student", "test_resnet"]
    cfg = data_config(build_parser().parse_args([*base, "--balanced"]))
    assert (cfg.cap_train, cfg.cap_test) == (2201, 250)
    cfg = data_config(build_parser().parse_args([*base, "--balanced", "--cap-train", "500"]))
    assert (cfg.cap_train, cfg.cap_test) == (500, 250)
