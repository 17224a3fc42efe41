"""The seed planner (issue 35): `kdengine study plan NAME --detect 0.02`, from a pilot's finished runs or a stated
variance, with its arithmetic shown; checked by simulation: at the planned seeds the planted gain is marked in 80% of
simulated studies, within Monte Carlo error; and in kdtui (`p` on Results)."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from scipy.stats import binomtest

from kdengine.api.planning import parse_variance, plan_seeds
from kdengine.cli import main
from kdengine.errors import UsageError
from kdengine.reports import power as P
from kdengine.store import RunStore
from tests import stats_sim as sim
from tests.test_statistics import FAMILY_TRUTH, _family_table
from tests.tui_helpers import fake_finished_store

FOUR = """seeds = [0, 1]
[data]
source = "synthetic"
image_size = 32
[train]
epochs = 1
[[experiments]]
strategy = "normal"
teachers = ["resnet18", "resnet34", "resnet50", "vgg11"]
students = ["test_resnet"]
"""


def _truth(c=FAMILY_TRUTH) -> str:
    return f"seed={c.seed},image={c.image},residual={c.residual}"


def test_the_plan_holds_by_simulation(tmp_path):
    """A gain stated at the size 5 seeds detect with 80% power (Holm over the study's 4 cells, 600 test images):
    the planner asks for 5 seeds; at 5 seeds the gain is marked in 80% of simulated studies (within Monte Carlo
    error), at 4 in fewer."""
    (tmp_path / "four.toml").write_text(FOUR)
    images = 600
    detect = P.mde(FAMILY_TRUTH, 5, images, 0.05 / 4) * 1.0001
    plan = plan_seeds(RunStore(tmp_path / "runs"), str(tmp_path / "four.toml"), detect, variance=_truth(),
                      images=images)
    assert plan.cells == 4 and plan.alpha == pytest.approx(0.0125) and plan.seeds == 5
    assert plan.steps[-1].power == pytest.approx(0.8, abs=0.002) and plan.steps[-2].power < 0.8
    rng = np.random.default_rng(77)
    n = 250
    rate = {}
    for seeds, k in ((5, n), (4, 120)):
        marked = sum(_family_table(sim.family(rng, seeds, images, [detect, 0.0, 0.0, 0.0])).rows[0][0].marked
                     for _ in range(k))
        rate[seeds] = (marked, k)
    assert binomtest(*rate[5], 0.8).pvalue > 0.01, rate
    assert binomtest(*rate[4], 0.8, alternative="less").pvalue < 0.01, rate


def test_the_plan_shows_its_arithmetic(tmp_path, capsys):
    (tmp_path / "four.toml").write_text(FOUR)
    assert main(["study", "plan", str(tmp_path / "four.toml"), "--detect", "0.05", "--variance", _truth(),
                 "--images", "600", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    for said in ("a gain of +0.0500 in family students_normal", "Holm over 4 cell(s)", "α/4 = 0.0125",
                 "σ²_seed = 8.000e-04", "SE(S, N) = sqrt(σ²_seed/S + σ²_image/N + σ²_residual/(S·N))",
                 "seeds      SE        df   t_crit   power", "→ "):
        assert said in out, (said, out)
    # the test set caps the power where its images' share is large: no number of seeds is enough, and it says so
    plan = plan_seeds(RunStore(tmp_path / "runs"), str(tmp_path / "four.toml"), 0.01, variance="seed=0,image=0.05,"
                      "residual=0.2", images=100)
    assert plan.seeds is None and plan.ceiling < 0.8 and "caps the power" in plan.text()
    # seeds only (a stated variance between seeds)
    plan = plan_seeds(RunStore(tmp_path / "runs"), str(tmp_path / "four.toml"), 0.02, variance="0.0004")
    assert plan.images == 0 and plan.seeds is not None and "between seeds" in plan.text()


@pytest.mark.parametrize("args, message", [
    (["--detect", "0"], "the gain to detect must lie in (0, 2), e.g. 0.02 (two points of accuracy), got 0.0 (--detect"),
    (["--detect", "0.02", "--variance", "seed=x"], "the variance takes seed=V"),
    (["--detect", "0.02", "--variance", "seed=-1"], "must be finite, at least 0"),
    (["--detect", "0.02", "--variance", "seed=0,image=0.1"], "needs the number of test images (--images N)"),
    (["--detect", "0.02", "--variance", "0.001", "--power", "1.5"], "the power must lie in [0.5, 1), got 1.5 (--power"),
])
def test_bad_plans_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "four.toml").write_text(FOUR)
    assert main(["study", "plan", str(tmp_path / "four.toml"), *args, "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_pilot_in_the_store_is_read(tmp_path):
    """A study's finished runs are the pilot: their gains' variance, as the tables' power note has it."""
    from kdengine.study.expand import expand
    from kdengine.study.registry import save_study
    from kdengine.study.schema import load_study

    root = tmp_path / "runs"
    fake_finished_store(root, seed=0, accuracies=(0.8, 0.70, 0.75))
    store, _, _ = fake_finished_store(root, seed=1, accuracies=(0.8, 0.72, 0.73))
    (tmp_path / "pilot.toml").write_text('primary = "normal"\nseeds = [0, 1]\n[data]\nimage_size = 32\n'
                                         '[train]\nepochs = 2\n'
                                         '[[experiments]]\nstrategy = "normal"\nteachers = ["resnet18"]\n'
                                         'students = ["test_resnet"]\n')
    study = load_study(str(tmp_path / "pilot.toml"), data="synthetic")
    save_study(store, study, expand(study))
    from kdengine.reports.study import study_tables

    assert "confirmatory" in " ".join(study_tables(store, "pilot").get("students_normal").notes)  # its primary
    plan = plan_seeds(store, "pilot", 0.02)
    gains = [0.75 - 0.70, 0.73 - 0.72]
    assert plan.components.seed == pytest.approx(np.var(gains, ddof=1)) and plan.images == 0
    assert "the pilot's 1 cell(s) of students_normal at 2 seeds" in plan.text()
    assert plan.seeds is not None and plan.steps[-1].power >= 0.8
    with pytest.raises(UsageError, match="no finished pilot cells in family students_reverse"):
        plan_seeds(store, "pilot", 0.02, family="reverse")
    assert parse_variance("0.5").seed == 0.5
    asyncio.run(_tui_plan(store))


async def _tui_plan(store):
    from kdtui.app import KDStudyApp
    from tests.tui_helpers import wait_for

    app = KDStudyApp(store.root, start_workers=False)
    async with app.run_test(size=(100, 34)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ResultsScreen", timeout=20)
        screen = app.screen
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.view_name == "pilot", timeout=30)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "PlanScreen", timeout=10)
        await pilot.press("enter")  # the default gain, 0.02
        out = app.screen.query_one("#plan-out")
        await wait_for(pilot, lambda: "→ " in str(out.render()), timeout=30)
        assert "Plan for study pilot" in str(out.render()) and "seeds" in str(out.render())


def test_a_study_files_primary_is_checked_and_read(tmp_path, capsys):
    """`primary = ...` in a study file: a strategy of its blocks or a family's name, one line when it is neither;
    the study's tables correct that family alone (tests/test_statistics.py checks the marks)."""
    from kdengine.study.schema import load_study

    (tmp_path / "p.toml").write_text('primary = "normal"\n' + FOUR)
    assert load_study(str(tmp_path / "p.toml")).primary == "normal"
    for good in ("students_normal", "robustness_normal", "sweep_kd.temperature", "attention"):
        (tmp_path / "g.toml").write_text(f'primary = "{good}"\n' + FOUR)
        assert load_study(str(tmp_path / "g.toml")).primary == good
    (tmp_path / "bad.toml").write_text('primary = "reverse"\n' + FOUR)
    assert main(["study", "run", str(tmp_path / "bad.toml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "'primary' must name a strategy of the study (normal)" in err and err.count("\n") == 1


def test_where_the_source_holds_test_images_back_the_plan_says_what_more_would_buy(tmp_path):
    """data.cap_test keeps a test set small; the plan counts the source's test images and plans each larger one."""
    from tests.conftest import SMALL_SYNTH

    (tmp_path / "cap.toml").write_text(FOUR.replace('source = "synthetic"', f'source = "{SMALL_SYNTH}"\ncap_test = 5'))
    plan = plan_seeds(RunStore(tmp_path / "runs"), str(tmp_path / "cap.toml"), 0.15,
                      variance="seed=0.0001,image=0.02,residual=0.2", images=20)
    assert plan.alternatives and plan.alternatives[0][0] == 40 and plan.alternatives[-1][0] > 40
    assert plan.alternatives[-1][1] is not None and (plan.seeds is None or plan.alternatives[-1][1] < plan.seeds)
    assert "data.cap_test holds the test set at 20 of the source's" in plan.text()
    assert f"with {plan.alternatives[-1][0]} test images: {plan.alternatives[-1][1]} seeds" in plan.text()
