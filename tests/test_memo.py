"""The process memos (data/memo.py) beside the training views: a synthetic set (and another site's rendering) made
once per process, the test images under a shift computed once for every run; each gives what computing it
again gives, bit for bit, and nothing is kept with the budget at 0."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kdengine.cli import main
from kdengine.data import corruptions, memo
from kdengine.data.arrays import GENERATED
from kdengine.data.config import DataConfig, open_source
from kdengine.paths import runs_dir
from kdengine.shift import evaluate as shift_eval
from kdengine.store import RunStore
from tests.engine_helpers import train

SITE = "synthetic:images=140,seed=5,site=1"


def _count(monkeypatch, module, name):
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_a_synthetic_site_is_rendered_once_per_process(monkeypatch):
    renders = _count(monkeypatch, corruptions, "render_site")
    first = open_source(DataConfig(source=SITE)).images
    again = open_source(DataConfig(source=SITE)).images
    assert len(renders) == 1 and again is first and not first.flags.writeable  # nobody can change the kept set
    GENERATED.clear()
    monkeypatch.setenv(memo.BUDGET_ENV, "0")
    off = open_source(DataConfig(source=SITE)).images
    assert len(renders) == 2 and np.array_equal(off, first)
    monkeypatch.delenv(memo.BUDGET_ENV)
    assert GENERATED.held_bytes() == 0  # with the budget at 0 nothing was kept


def test_shift_evaluation_with_the_memo_is_the_evaluation_without_it(capsys, monkeypatch):
    m, _ = train(capsys, "--strategy", "baseline", "--student", "test_resnet", "--epochs", "1")
    rid = m["run_id"]
    shifts = _count(monkeypatch, shift_eval, "apply_shift")
    store = RunStore(runs_dir())
    results = []
    for budget in (None, None, "0"):
        if budget is not None:
            monkeypatch.setenv(memo.BUDGET_ENV, budget)
        before = len(shifts)
        assert main(["shift", rid, "--shifts", "blur,gaussian_noise", "--severities", "1,4", "--force"]) == 0
        capsys.readouterr()
        (entry,) = json.loads((store.run_dir(rid) / "shift.json").read_text())["entries"].values()  # one request
        results.append((len(shifts) - before, entry))
    (made, first), (kept, second), (off, third) = results
    assert (made, kept, off) == (4, 0, 4)  # a second run of the same data computes no shift again
    for other in (second, third):
        assert other["cells"] == first["cells"] and other["clean"] == first["clean"]


@pytest.mark.parametrize("mb", ["0", "-1", "nonsense"])
def test_the_budget_reads_plainly(monkeypatch, mb):
    monkeypatch.setenv(memo.BUDGET_ENV, mb)
    assert memo.budget_bytes() == (0 if mb in ("0", "-1") else memo.DEFAULT_BUDGET_MB * 2 ** 20)
