"""A run's identity holds only what the run reads, and everything it reads (issue 38, item 1): audited against
the loss itself. For every KD strategy, every method that fits it (logit, feature and embedding), with and without
logit standardisation, each ``[kd]`` setting is moved off its default: the student's identity changes exactly when
its loss does, over two steps (CRD's banks carry the first step into the second). Stand-in models: a four-stage
shape with random feature maps and embeddings; no network is built.
"""
from __future__ import annotations

import pytest
import torch

from kdengine import method_catalog as methods
from kdengine import strategy_catalog as strategies
from kdengine.data.config import DataConfig
from kdengine.options import infos
from kdengine.runspec import KDConfig, TrainConfig, build_specs
from kdengine.training.losses import distiller_for
from kdengine.training.methods import Outputs
from kdengine.training.methods.base import ModelShape

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
