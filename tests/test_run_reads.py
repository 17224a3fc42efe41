"""A run's identity holds only what the run reads, and everything it reads (issue 38, item 1): audited against
the loss itself. For every KD strategy, every method that fits it (logit, feature and embedding), with and without
logit standardisation, each ``[kd]`` setting is moved off its default: the student's identity changes exactly when
its loss does, over two steps (CRD's banks carry the first step into the second). Stand-in models: a four-stage
shape with random feature maps and embeddings; no network is built.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from kdengine import method_catalog as methods
from kdengine import strategy_catalog as strategies
from kdengine.data.config import DataConfig
from kdengine.api.evaluation import target_runs
from kdengine.options import infos
from kdengine.reports.stats import Summary
from kdengine.reports.study import study_tables
from kdengine.reports.tables import build
from kdengine.store import RunStore
from kdengine.store.queue import enqueue
from kdengine.store.records import collect
from kdengine.study.expand import expand
from kdengine.study.registry import save_study, study_dir
from kdengine.study.schema import load_study
from kdengine.runspec import KDConfig, TrainConfig, build_specs
from kdengine.training.losses import distiller_for
from kdengine.training.methods import Outputs
from kdengine.training.methods.base import ModelShape
from tests.tui_helpers import _metrics

D = DataConfig(source="synthetic:images=280,seed=3", image_size=32)
T = TrainConfig(epochs=2)
K_CLASSES, BATCH, SIZE = 5, 4, 32
SHAPE = ModelShape((4, 8, 16, 32), (2, 4, 8, 16), 12)  # a model's stages and embedding, as timm's feature_info says
N_TRAIN = 64
BASE = {"crd_negatives": 8}  # fewer negatives than images, so that one more is read as asked (and the test is cheap)
SKIP = {"method", "method_file", "method_sha256", "method_args"}  # the method itself, and a plugin's own settings
TEACHERS = {"normal": ["resnet18"], "reverse": ["resnet10t"], "defective": ["resnet10t"], "tf-self": [],
            "tf-reg": [], "ensemble": ["resnet18", "resnet10t"]}


def _moved(i):
    """A valid value other than the default (and, for a stage option, another stage than the default's)."""
    if i.choices:
        return next(c for c in i.choices if c != i.default)
    if i.type is bool:
        return not i.default
    if i.type is int:
        return i.default + 1
    if i.type is float:
        return i.default / 2 if i.default else 0.5
    return "0"  # a stage option: the stem's stage (the defaults: the middle one, every one after the stem)


def _maps(g, stages: list[int]) -> list[torch.Tensor]:
    return [torch.randn(BATCH, SHAPE.stage_channels[s], SIZE // SHAPE.stage_reductions[s],
                        SIZE // SHAPE.stage_reductions[s], generator=g) for s in stages]


def _terms(spec, teachers: int) -> list[dict[str, torch.Tensor]]:
    """The loss's terms over two steps, from the same outputs and the same initial modules."""
    torch.manual_seed(0)  # adapters and heads start alike
    loss = distiller_for(spec, K_CLASSES, n_train=N_TRAIN, student=SHAPE, teachers=(SHAPE,) * teachers)
    m = loss.method
    g = torch.Generator().manual_seed(0)
    student = Outputs(torch.randn(BATCH, K_CLASSES, generator=g, dtype=torch.float64), _maps(g, m.student_stages),
                      torch.randn(BATCH, SHAPE.embedding_dim, generator=g))
    given = [Outputs(torch.randn(BATCH, K_CLASSES, generator=g, dtype=torch.float64), _maps(g, m.teacher_stages(i)),
                     torch.randn(BATCH, SHAPE.embedding_dim, generator=g)) for i in range(teachers)]
    targets = torch.randint(0, K_CLASSES, (BATCH,), generator=g)
    loss.on_epoch_start(1)  # a warm-up reads its length from the first epochs on
    return [{k: v.detach() for k, v in loss.terms(student, given, targets, torch.arange(BATCH)).items()}
            for _ in range(2)]


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread computes them at once, where a busy pool of two waits milliseconds per op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("strategy", strategies.kd_names())
def test_the_identity_changes_exactly_when_the_loss_does(strategy, one_thread):
    n_teachers = max(len(TEACHERS[strategy]), strategies.get(strategy).teacher_source == "self")
    wrong = []
    for method in methods.CATALOGUE:
        for standardize in (False, True):
            if standardize and not methods.CATALOGUE[method].standardizable:
                continue
            base = KDConfig(method=method, logit_standardize=standardize, **BASE)
            try:
                spec = build_specs(strategy, "test_resnet", TEACHERS[strategy], D, T, base, 0)
            except Exception:  # noqa: BLE001 - a method the strategy does not fit
                continue
            terms = _terms(spec, n_teachers)
            for i in infos(KDConfig):
                if i.name in SKIP:
                    continue
                moved = build_specs(strategy, "test_resnet", TEACHERS[strategy], D, T,
                                    KDConfig(**{"method": method, "logit_standardize": standardize, **BASE,
                                                i.name: _moved(i) if i.name not in BASE else BASE[i.name] + 1}), 0)
                same_id = moved.identity()["kd"] == spec.identity()["kd"]
                if same_id != _same(terms, _terms(moved, n_teachers)):
                    why = "is not in the identity but changes the loss" if same_id else \
                        "is in the identity but the loss does not read it"
                    wrong.append(f"{strategy}/{method}{' +ls' if standardize else ''}: kd.{i.name} {why}")
    assert not wrong, "\n".join(wrong)


def test_a_strategys_own_temperature_replaces_every_method_temperature():
    """tf-reg's T is its virtual teacher's own (kd.tf_temperature), with logit standardisation too: neither
    kd.temperature nor kd.ls_temperature is part of a tf-reg run, so sweeping them trains it once."""
    for key in ("temperature", "ls_temperature"):
        ids = {build_specs("tf-reg", "test_resnet", [], D, T, KDConfig(logit_standardize=True, **{key: t}), 0).run_id
               for t in (1.5, 3.0)}
        assert len(ids) == 1, key
    tf = {build_specs("tf-reg", "test_resnet", [], D, T, KDConfig(tf_temperature=t), 0).run_id for t in (1.5, 3.0)}
    assert len(tf) == 2
    # declared once, by the strategy: nothing else names tf-reg to decide it
    assert [s.name for s in strategies.CATALOGUE.values() if s.temperature] == ["tf-reg"]


def test_runs_that_repeat_another_are_one_point_one_seed_and_one_test(tmp_path):
    """A store trained before the identity held only what a run reads has two tf-reg runs per seed from a
    temperature sweep (T=1 and T=2, under two ids), equal but for the setting they do not read. The tables keep one
    of each: no second point, no doubled n, no copy counted by Holm; runs.csv has one row per run; a note says so."""
    path = tmp_path / "sw.toml"
    path.write_text('name = "sw"\nseeds = [0, 1]\n[data]\nsource = "synthetic"\nimage_size = 32\n[train]\nepochs = 1\n'
                    '[kd]\ntemperature = [1, 2]\n[[experiments]]\nstrategy = "normal"\nteachers = ["resnet10t"]\n'
                    'students = ["test_resnet"]\n[[experiments]]\nstrategy = "tf-reg"\nstudents = ["test_resnet"]\n')
    study = load_study(str(path))
    store = RunStore(tmp_path / "runs")
    plan = expand(study)
    save_study(store, study, plan)
    for p in plan:
        enqueue(store, p.spec)
        store.claim(p.run_id, "fake")
        store.write_metrics(p.run_id, _metrics(p.run_id, 0.6 + 0.05 * p.spec.seed + 0.1 * (p.spec.kind == "kd")))
        store.finish(p.run_id, "finished")
    # the older store: each tf-reg run's twin at the other temperature, under its old id, listed by the study too
    record_path = study_dir(store, "sw") / "study.json"
    record = json.loads(record_path.read_text())
    twins = []
    for p in [p for p in plan if p.spec.strategy == "tf-reg"]:
        twin = f"tf-reg-test_resnet-s{p.spec.seed}-0ld0{p.spec.seed}000"
        shutil.copytree(store.run_dir(p.run_id), store.run_dir(twin))
        header = json.loads((store.run_dir(twin) / "spec.json").read_text())
        header["spec"]["kd"]["temperature"] = 2.0
        (store.run_dir(twin) / "spec.json").write_text(json.dumps(header))
        record["runs"].append({"run_id": twin, "roles": ["student"], "strategies": ["tf-reg"]})
        twins.append(twin)
    record_path.write_text(json.dumps(record))
    assert {store.load_spec(t).run_id for t in twins} == {p.run_id for p in plan if p.spec.strategy == "tf-reg"}
    for tables in (study_tables(store, "sw"), build(collect(store))):
        tf = tables.get("students_tf-reg")
        test = next(dict(zip(tf.columns, row)) for row in tf.rows if "test" in row)
        assert test["virtual"].n == 2 and test["gain virtual"].n == 2  # two seeds, not four runs
        assert any("2 run(s) repeat another run's computation" in n for n in tf.notes)
        long = tables.long[(tables.long["split"] == "test") & (tables.long["strategy"] == "tf-reg")]
        assert sorted(long["run_id"]) == sorted(p.run_id for p in plan if p.spec.strategy == "tf-reg")
        # no cell, and so no test of a family that Holm corrects, is made from a copy
        made_of = [rid for t in tables.tables for row in t.rows for c in row if isinstance(c, Summary) and c.key
                   for rid in c.key[3]]
        assert made_of and not any(twin in rid for rid in made_of for twin in twins)
    # shift and explain evaluate each computation once too
    assert sorted(target_runs(store, "sw")[1]) == sorted(p.run_id for p in plan)
