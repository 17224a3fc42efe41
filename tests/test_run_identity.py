"""Run identity is a contract with users' stores: these ids were computed by store version 1 (kdstudy 0.1).

If one of them changes, every stored teacher would silently stop being reused. Change identity only
with a store version bump and a README note on what happens to older stores.

Store version 3: a setting a run does not read is held at its default in its identity (tf-reg never read
kd.temperature: its virtual teacher's own temperature is its T; Adam has no momentum), so runs that differ only there
are one run. Only a run that had a non-default value in such a setting gets a new id (the tf-reg golden below, at
T=2); every run at the defaults, and every teacher, keeps its id.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdengine.data.config import DataConfig
from kdengine.errors import UsageError
from kdengine.runspec import KDConfig, RunSpec, TrainConfig, baseline_of, build_specs

D = DataConfig(source="synthetic", image_size=32)
D2 = DataConfig(source="synthetic:images=280,seed=3", cap_train=100, skip_bad=True, split_seed=2, image_size=48)
T = TrainConfig(epochs=2)
T2 = TrainConfig(epochs=5, lr=1e-4, optimizer="sgd", schedule="step", patience=2, grad_clip=1.0)
K = KDConfig()
K2 = KDConfig(alpha=0.5, temperature=2.0, reduction="mean", tf_a=0.8, tf_temperature=2.0)

GOLDEN = [
    (lambda: build_specs("baseline", "test_resnet", [], D, T, K, 0), "ce-test_resnet-s0-919b508d", []),
    (lambda: build_specs("normal", "test_resnet", ["resnet18"], D, T, K, 0), "normal-test_resnet-s0-09536ecc",
     ["ce-resnet18-s0-b6807f81"]),
    (lambda: build_specs("reverse", "resnet18", ["test_resnet"], D2, T2, K2, 3), "reverse-resnet18-s3-976a1190",
     ["ce-test_resnet-s3-f3fde99b"]),
    (lambda: build_specs("defective", "test_resnet", ["resnet10t"], D, T, KDConfig(defect_acc=0.4,
                                                                                    defect_check_every=5), 1),
     "defective-test_resnet-s1-73e3f645", ["defective-resnet10t-s1-a46b6aaa"]),
    (lambda: build_specs("tf-self", "test_resnet", [], D, T, K, 0), "tf-self-test_resnet-s0-38b3e650",
     ["ce-test_resnet-s0-919b508d"]),
    (lambda: build_specs("tf-reg", "test_resnet", [], DataConfig(source="synthetic:images=280,seed=3", cap_train=100,
                                                                  skip_bad=True, split_seed=2, image_size=32), T, K2, 0),
     "tf-reg-test_resnet-s0-3c7b98c8", []),  # 42a89b3a before store version 3 (T=2, unread)
    (lambda: build_specs("ensemble", "test_resnet", ["resnet18", "test_efficientnet"], D, T, K, 2),
     "ensemble-test_resnet-s2-40476b82", ["ce-resnet18-s2-daf01028", "ce-test_efficientnet-s2-c60dec2b"]),
    (lambda: build_specs("normal", "test_resnet", ["resnet18"], D,
                         TrainConfig(epochs=2, pretrained=True, pretrained_from="/weights/x.safetensors"), K, 0),
     "normal-test_resnet-s0-5c13f4d4", ["ce-resnet18-s0-e582fda2"]),
    # store version 3: a tf-reg run at the default temperature keeps its id; the method axis (its teachers are the
    # same runs as hinton's)
    (lambda: build_specs("tf-reg", "test_resnet", [], D, T, K, 0), "tf-reg-test_resnet-s0-21c302f7", []),
    (lambda: build_specs("normal", "test_resnet", ["resnet18"], D, T, KDConfig(method="dkd"), 0),
     "normal-dkd-test_resnet-s0-19c528bb", ["ce-resnet18-s0-b6807f81"]),
    (lambda: build_specs("defective", "test_resnet", ["resnet10t"], D, T, KDConfig(method="at", defect_acc=0.4,
                                                                                    defect_check_every=5), 1),
     "defective-at-test_resnet-s1-5a297368", ["defective-resnet10t-s1-a46b6aaa"]),
]


@pytest.mark.parametrize("make, run_id, teachers", GOLDEN, ids=[g[1].split("-s")[0] for g in GOLDEN])
def test_golden_run_ids(make, run_id, teachers):
    spec = make()
    assert spec.run_id == run_id
    assert [t.run_id for t in spec.teachers] == teachers
    # and the round trip through spec.json keeps it
    again = RunSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.run_id == run_id


def test_version_1_spec_files_read_with_the_same_ids():
    fixture = json.loads((Path(__file__).parent / "fixtures" / "spec_v1.json").read_text())
    for item in fixture["specs"]:
        spec = RunSpec.from_dict(item["spec"])
        assert spec.run_id == item["run_id"]
    defective = RunSpec.from_dict(fixture["specs"][0]["spec"])
    assert defective.teacher.regime == "defective" and defective.teacher.strategy is None
    assert defective.teacher.defect_acc == 0.4 and defective.data.image_size == 32
    pre = RunSpec.from_dict(fixture["specs"][1]["spec"])
    assert pre.train.pretrained and pre.train.pretrained_from == "/weights/x.safetensors"


def test_a_new_option_at_its_default_keeps_the_ids():
    """Fields introduced after store version 1 enter identity only when they differ from their default."""
    from dataclasses import dataclass

    from kdengine.options import option

    @dataclass(frozen=True)
    class NewerTrain(TrainConfig):
        warmup_epochs: int = option(0, "linear warm-up epochs", low=0, since=3)

    spec = build_specs("normal", "test_resnet", ["resnet18"], D, NewerTrain(epochs=2), K, 0)
    assert spec.run_id == GOLDEN[1][1] and spec.teacher.run_id == GOLDEN[1][2][0]
    warm = build_specs("normal", "test_resnet", ["resnet18"], D, NewerTrain(epochs=2, warmup_epochs=1), K, 0)
    assert warm.run_id != GOLDEN[1][1]


def test_baseline_is_exactly_one_run():
    normal = GOLDEN[1][0]()
    assert baseline_of(normal).run_id == "ce-test_resnet-s0-919b508d"
    assert baseline_of(GOLDEN[0][0]()) is None
    tf_self = GOLDEN[4][0]()
    assert baseline_of(tf_self).run_id == tf_self.teacher.run_id  # its teacher is its baseline


def test_a_teachers_own_settings_make_another_teacher_but_not_another_baseline():
    own = build_specs("normal", "test_resnet", ["resnet18"], D, T, K, 0, teacher_train=TrainConfig(epochs=30))
    assert own.teacher.train.epochs == 30 and own.train.epochs == 2
    assert own.teacher.run_id != "ce-resnet18-s0-b6807f81"
    assert baseline_of(own).run_id == "ce-test_resnet-s0-919b508d"


@pytest.mark.parametrize("bad, message", [
    ({"model": "x", "seed": -1, "regime": "normal"}, "seed"),
    ({"model": "x", "seed": 2**64, "regime": "normal"}, "seed"),
    ({"model": "x", "regime": "normal", "train": {"lr": float("nan")}}, "finite"),
    ({"model": "x", "regime": "normal", "train": {"epochs": "3"}}, "integer"),
    ({"model": "x", "regime": "normal", "colour": 1}, "unknown keys"),
    ({"model": "x", "regime": "sideways"}, "regime"),
    ({"model": "x", "strategy": "normal", "teachers": []}, "needs --teacher"),
    ({"model": "x", "regime": "normal", "data": []}, "table"),
    ([1, 2], "JSON object"),
])
def test_malformed_specs_are_refused_in_one_line(bad, message):
    with pytest.raises(UsageError, match=message):
        RunSpec.from_dict(bad)


def test_a_setting_a_run_does_not_read_is_not_part_of_it():
    """Adam has no momentum, a constant schedule no step size, tf-reg no kd.temperature, DKD no alpha: runs that
    differ only there are one run, so a sweep of such a setting trains nothing twice."""
    adam = [build_specs("baseline", "test_resnet", [], D, TrainConfig(epochs=2, momentum=m), K, 0) for m in (0.9, 0.5)]
    assert adam[0].run_id == adam[1].run_id == GOLDEN[0][1]
    sgd = [build_specs("baseline", "test_resnet", [], D, TrainConfig(epochs=2, optimizer="sgd", momentum=m), K, 0)
           for m in (0.9, 0.5)]
    assert sgd[0].run_id != sgd[1].run_id
    steps = [TrainConfig(epochs=2, step_size=s) for s in (3, 5)]
    assert len({build_specs("baseline", "test_resnet", [], D, t, K, 0).run_id for t in steps}) == 1
    tf = [build_specs("tf-reg", "test_resnet", [], D, T, KDConfig(temperature=t), 0) for t in (2.0, 8.0)]
    assert tf[0].run_id == tf[1].run_id
    dkd = [build_specs("normal", "test_resnet", ["resnet18"], D, T, KDConfig(method="dkd", alpha=a), 0)
           for a in (0.9, 0.3)]
    assert dkd[0].run_id == dkd[1].run_id
    hinton = [build_specs("normal", "test_resnet", ["resnet18"], D, T, KDConfig(alpha=a), 0) for a in (0.9, 0.3)]
    assert hinton[0].run_id != hinton[1].run_id
    ls = [build_specs("normal", "test_resnet", ["resnet18"], D, T, KDConfig(logit_standardize=True, temperature=t), 0)
          for t in (2.0, 8.0)]
    assert ls[0].run_id == ls[1].run_id  # with logit standardisation the base temperature replaces T
