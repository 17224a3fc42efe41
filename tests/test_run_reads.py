"""A run's identity holds only what the run reads, and everything it reads (issue 38, item 1): audited against
the loss itself. For every strategy with a logit method, every method that fits it, with and without logit
standardisation, each ``[kd]`` setting is moved off its default: the student's identity changes exactly when its
loss does. (Feature and embedding methods read only their declared options: ``method_catalog``'s test holds them.)
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

D = DataConfig(source="synthetic:images=280,seed=3", image_size=32)
T = TrainConfig(epochs=2)
K_CLASSES, BATCH = 5, 8
SKIP = {"method", "method_file", "method_sha256", "method_args"}  # the method itself, and a plugin's own settings
TEACHERS = {"normal": ["resnet18"], "reverse": ["resnet10t"], "defective": ["resnet10t"], "tf-self": [],
            "tf-reg": [], "ensemble": ["resnet18", "resnet10t"]}
LOGIT = [m for m, x in methods.CATALOGUE.items() if not x.needs_network]


def _moved(i):
    """A valid value other than the default."""
    if i.choices:
        return next(c for c in i.choices if c != i.default)
    if i.type is bool:
        return not i.default
    if i.type is int:
        return i.default + 1
    if i.type is float:
        return i.default / 2 if i.default else 0.5
    return "1"  # a stage option: indices


def _terms(spec, teachers: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    student = Outputs(torch.randn(BATCH, K_CLASSES, generator=g, dtype=torch.float64))
    given = [Outputs(torch.randn(BATCH, K_CLASSES, generator=g, dtype=torch.float64)) for _ in range(teachers)]
    targets = torch.randint(0, K_CLASSES, (BATCH,), generator=g)
    loss = distiller_for(spec, K_CLASSES, n_train=64)
    loss.on_epoch_start(1)  # a warm-up reads its length from the first epochs on
    return {k: v.detach() for k, v in loss.terms(student, given, targets, torch.arange(BATCH)).items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("strategy", strategies.kd_names())
def test_the_identity_changes_exactly_when_the_loss_does(strategy):
    n_teachers = max(len(TEACHERS[strategy]), strategies.get(strategy).teacher_source == "self")
    wrong = []
    for method in LOGIT:
        for standardize in (False, True):
            base = KDConfig(method=method, logit_standardize=standardize)
            try:
                spec = build_specs(strategy, "test_resnet", TEACHERS[strategy], D, T, base, 0)
            except Exception:  # noqa: BLE001 - a method the strategy does not fit
                continue
            terms = _terms(spec, n_teachers)
            for i in infos(KDConfig):
                if i.name in SKIP:
                    continue
                moved = build_specs(strategy, "test_resnet", TEACHERS[strategy], D, T,
                                    KDConfig(**{**{"method": method, "logit_standardize": standardize},
                                                i.name: _moved(i)}), 0)
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
