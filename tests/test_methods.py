"""Each distillation method's loss against its paper's formula and against torchdistill 1.1.5.

The references (tests/method_refs.py) were written in float64 from the papers, by someone who had not seen kdstudy's
implementation (tests/test_method_refs.py checks them against the papers' stated properties). Here every method is
reached by name through the one registry (the run's Distiller, built from a spec, as a run builds it) and fed plain
float64 tensors: values and gradients must agree to round-off. Where torchdistill implements the same method (KD,
DKD is mdistiller's only, DIST, logit standardisation, AT, RKD, PKT, CRD), its implementation is fed the same
tensors and must agree too, with the conventions mapped as the comments say.
"""
from __future__ import annotations

import pytest
import torch

from kdengine.data.config import DataConfig
from kdengine.runspec import KDConfig, TrainConfig, build_specs
from kdengine.training.losses import distiller_for
from kdengine.training.methods import METHODS, ModelShape, Outputs
from kdengine.training.methods.attention import at_loss
from kdengine.training.methods.crd import bank_update
from kdengine.training.methods.fitnet import hint_loss
from kdengine.training.methods.relational import pkt_loss, rkd_parts
from tests import method_refs as R

D64 = torch.float64
DATA = DataConfig(source="synthetic", image_size=32)
STUDENT = ModelShape((16, 24, 32), (2, 4, 8), 40)
TEACHER = ModelShape((32, 48, 64, 96), (2, 4, 8, 16), 56)


def close(a, b, rtol=1e-9, atol=1e-12):
    torch.testing.assert_close(torch.as_tensor(a, dtype=D64), torch.as_tensor(b, dtype=D64), rtol=rtol, atol=atol)


def value_and_grads(fn, *inputs):
    """fn's value and its gradients with respect to ``inputs`` (fresh leaves, so two fns never share a graph)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves)


def same(fn_a, fn_b, *inputs, rtol=1e-9, atol=1e-12):
    va, ga = value_and_grads(fn_a, *inputs)
    vb, gb = value_and_grads(fn_b, *inputs)
    close(va, vb, rtol, atol)
    for a, b in zip(ga, gb):
        close(a, b, rtol, atol)
    return va


def distiller(method="hinton", strategy="normal", teachers=("resnet18",), **kd):
    spec = build_specs(strategy, "test_resnet", list(teachers), DATA, TrainConfig(), KDConfig(method=method, **kd), 0)
    d = distiller_for(spec, 7, n_train=64, student=STUDENT, teachers=(TEACHER,) * max(1, len(spec.teachers)))
    d.on_epoch_start(10_000)  # past any warm-up
    return d.double()


def kd_sum(d, zs, zt, y):
    """The distillation terms of a Distiller (everything but the hard-label loss), from logits alone."""
    terms = d.terms(Outputs(zs), [Outputs(zt)], y, torch.arange(len(y)))
    return sum(v for k, v in terms.items() if k != "ce")


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(7)
    zs = torch.randn(8, 7, generator=g, dtype=D64) * 2
    zt = torch.randn(8, 7, generator=g, dtype=D64) * 3
    y = torch.randint(0, 7, (8,), generator=g)
    return zs, zt, y


# -- the registry -------------------------------------------------------------------------------------------------
def test_every_method_is_reached_by_name_and_computes_from_plain_tensors():
    """Built through the one registry from a spec, each method turns plain tensors (logits, feature maps,
    embeddings) into finite, named terms whose gradient reaches the student."""
    g = torch.Generator().manual_seed(0)
    for name in METHODS:
        d = distiller(name, crd_negatives=16)
        zs = torch.randn(8, 7, dtype=D64, generator=g, requires_grad=True)
        fs = [torch.randn(8, c, 16 // r, 16 // r, dtype=D64, generator=g, requires_grad=True)
              for c, r in zip(STUDENT.stage_channels, STUDENT.stage_reductions)]
        s = Outputs(zs, [fs[i] for i in d.method.student_stages], torch.randn(8, 40, dtype=D64, generator=g))
        t = Outputs(torch.randn(8, 7, dtype=D64, generator=g),
                    [torch.randn(8, TEACHER.stage_channels[i], 16 // TEACHER.stage_reductions[i],
                                 16 // TEACHER.stage_reductions[i], dtype=D64, generator=g)
                     for i in d.method.teacher_stages(0)], torch.randn(8, 56, dtype=D64, generator=g))
        s.embedding.requires_grad_(True)
        terms = d.terms(s, [t], torch.randint(0, 7, (8,), generator=g), torch.arange(8))
        kd = sum(v for k, v in terms.items() if k != "ce")
        assert "ce" in terms and len(terms) >= 2 and torch.isfinite(kd), name
        reached = [x for x in (zs, *fs, s.embedding) if x.requires_grad]
        grads = torch.autograd.grad(kd, reached, allow_unused=True)
        assert any(gr is not None and gr.abs().sum() > 0 for gr in grads), name


# -- logit methods --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T, alpha, reduction", [(4.0, 0.9, "batchmean"), (1.0, 0.5, "batchmean"), (3.0, 1.0, "mean")])
def test_hinton_equals_the_paper(logits, T, alpha, reduction):
    zs, zt, y = logits
    d = distiller("hinton", temperature=T, alpha=alpha, reduction=reduction)
    same(lambda s: kd_sum(d, s, zt, y), lambda s: alpha * R.hinton_kd(s, zt, T, reduction), zs)


def test_hinton_equals_torchdistill(logits):
    """torchdistill's KDLoss puts its alpha on the cross-entropy: ours (alpha on KD) = theirs with 1 - alpha."""
    from torchdistill.losses.mid_level import KDLoss

    zs, zt, y = logits
    ours = distiller("hinton", temperature=4.0, alpha=0.9)
    theirs = KDLoss(".", "output", ".", "output", temperature=4.0, alpha=0.1, beta=0.9)
    same(lambda s: sum(ours.terms(Outputs(s), [Outputs(zt)], y, torch.arange(8)).values()),
         lambda s: theirs({".": {"output": s}}, {".": {"output": zt}}, y), zs)


@pytest.mark.parametrize("K", [7, 2])
def test_dkd_equals_the_paper(K):
    g = torch.Generator().manual_seed(3)
    zs, zt = torch.randn(8, K, dtype=D64, generator=g) * 2, torch.randn(8, K, dtype=D64, generator=g) * 3
    y = torch.randint(0, K, (8,), generator=g)
    d = distiller("dkd", dkd_alpha=1.5, dkd_beta=8.0, temperature=4.0)
    same(lambda s: kd_sum(d, s, zt, y), lambda s: R.dkd(s, zt, y, 1.5, 8.0, 4.0), zs)


def test_dkd_warms_up_over_its_epochs(logits):
    zs, zt, y = logits
    d = distiller("dkd", dkd_warmup=4)
    full = kd_sum(d, zs, zt, y)
    d.on_epoch_start(1)
    close(kd_sum(d, zs, zt, y), full / 4)  # min(epoch / warmup, 1), the first epoch 1 (mdistiller)


def test_dkd_equals_mdistiller_convention(logits):
    """mdistiller masks the target with -1000 where kdstudy takes the K - 1 other classes exactly: the same
    numbers (mdistiller's dkd_loss, restated in two lines: torchdistill has no DKD)."""
    import torch.nn.functional as F

    zs, zt, y = logits
    T = 4.0
    gt = F.one_hot(y, 7).bool()
    nckd_md = F.kl_div(F.log_softmax(zs / T - 1000.0 * gt, 1), F.softmax(zt / T - 1000.0 * gt, 1),
                       reduction="sum") * T * T / 8
    d = distiller("dkd", dkd_alpha=0.0, dkd_beta=1.0, temperature=T)
    close(kd_sum(d, zs, zt, y), nckd_md)


def test_dist_equals_the_paper(logits):
    zs, zt, y = logits
    d = distiller("dist", dist_beta=2.0, dist_gamma=1.5, temperature=4.0)
    same(lambda s: kd_sum(d, s, zt, y), lambda s: R.dist(s, zt, 2.0, 1.5, 4.0, cos_mode="add"), zs)


def test_dist_equals_torchdistill(logits):
    """torchdistill clamps each norm at eps (F.cosine_similarity) where the authors add eps to their product: with
    eps 0 the two are one formula; at the default 1e-8 they part in the sixth digit on a batch of 8 (the columns of
    softened probabilities have small spread)."""
    from torchdistill.losses.mid_level import DISTLoss

    from kdengine.training.methods.dist import dist_parts

    zs, zt, y = logits
    theirs = DISTLoss(".", "output", ".", "output", beta=1.0, gamma=2.0, tau=4.0, eps=0.0)
    same(lambda s: (lambda p: p[0] + 2.0 * p[1])(dist_parts(s, zt, 4.0, eps=0.0)),
         lambda s: theirs({".": {"output": s}}, {".": {"output": zt}}), zs)
    ours = distiller("dist", dist_beta=1.0, dist_gamma=2.0, temperature=4.0)
    theirs.eps = 1e-8
    same(lambda s: kd_sum(ours, s, zt, y), lambda s: theirs({".": {"output": s}}, {".": {"output": zt}}), zs,
         rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("method", ["hinton", "dkd", "dist"])
def test_logit_standardisation_is_the_method_on_z_scores_at_the_base_temperature(logits, method):
    zs, zt, y = logits
    d = distiller(method, logit_standardize=True, ls_temperature=2.0, ls_weight=10.0, dkd_alpha=1.0, dkd_beta=8.0,
                  dist_beta=2.0, dist_gamma=2.0)
    ref = {"hinton": lambda s: 10.0 * 0.9 * R.ls_kd(s, zt, 2.0),
           "dkd": lambda s: 10.0 * R.dkd(R.standardize(s), R.standardize(zt), y, 1.0, 8.0, 2.0),
           "dist": lambda s: 10.0 * R.dist(R.standardize(s), R.standardize(zt), 2.0, 2.0, 2.0, cos_mode="add")}
    same(lambda s: kd_sum(d, s, zt, y), ref[method], zs)
    # the hard-label loss still reads the raw logits
    terms = d.terms(Outputs(zs), [Outputs(zt)], y, torch.arange(8))
    ce = torch.nn.functional.cross_entropy(zs, y)
    close(terms["ce"], (0.1 if method == "hinton" else 1.0) * ce)


def test_logit_standardisation_equals_torchdistill(logits):
    """torchdistill's LogitStdKDLoss: alpha on the cross-entropy, beta on T^2 KL (the authors' 0.1 and 9)."""
    from torchdistill.losses.mid_level import LogitStdKDLoss

    zs, zt, y = logits
    ours = distiller("hinton", logit_standardize=True, alpha=0.9, ls_temperature=2.0, ls_weight=10.0)
    theirs = LogitStdKDLoss(".", "output", ".", "output", temperature=2.0, alpha=0.1, beta=9.0)
    same(lambda s: sum(ours.terms(Outputs(s), [Outputs(zt)], y, torch.arange(8)).values()),
         lambda s: theirs({".": {"output": s}}, {".": {"output": zt}}, y), zs)


def test_tf_reg_with_a_logit_method_uses_the_virtual_teacher_at_its_temperature(logits):
    zs, _, y = logits
    d = distiller("dkd", strategy="tf-reg", teachers=(), tf_a=0.8, tf_temperature=3.0, dkd_alpha=1.0, dkd_beta=2.0)
    virtual = torch.log(torch.where(torch.nn.functional.one_hot(y, 7).bool(), 0.8, 0.2 / 6)).to(D64)
    terms = d.terms(Outputs(zs), [], y, torch.arange(8))
    close(terms["tckd"] + terms["nckd"], R.dkd(zs, virtual, y, 1.0, 2.0, 3.0), rtol=1e-6)


# -- feature methods ----------------------------------------------------------------------------------------------
def _maps(seed, shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, dtype=D64, generator=g) for s in shapes]


def test_fitnet_hint_equals_the_paper():
    fs, ft = _maps(1, [(4, 6, 5, 5), (4, 6, 5, 5)])
    same(lambda s: hint_loss(s, ft), lambda s: R.fitnet(s, ft), fs)


def test_fitnet_regresses_the_student_stage_onto_the_teachers_at_the_same_relative_depth():
    d = distiller("fitnet", fitnet_weight=100.0)
    m = d.method
    assert m.student_stages == [1] and m.teacher_stages(0) == [2]  # the middle of 3, and of 4 by relative depth
    conv = m.regressors[0][0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (24, 64, (1, 1))
    fs, ft = _maps(2, [(4, 24, 8, 8), (4, 64, 4, 4)])  # sizes differ: the regressed map is resized to the teacher's
    s = Outputs(torch.zeros(4, 7, dtype=D64), [fs.requires_grad_(True)])
    hint = m.distill(s, Outputs(torch.zeros(4, 7, dtype=D64), [ft]), None, None)["hint"]
    regressed = torch.nn.functional.interpolate(m.regressors[0](fs), size=(4, 4), mode="bilinear",
                                                align_corners=False)
    close(hint, 100.0 * R.fitnet(regressed, ft))
    hint.backward()
    assert conv.weight.grad.abs().sum() > 0  # the regressor trains with the student


@pytest.mark.parametrize("p", [2.0, 3.0])
def test_attention_transfer_equals_the_paper(p):
    fs = _maps(3, [(4, 6, 8, 8), (4, 5, 4, 4)])
    ft = _maps(4, [(4, 9, 8, 8), (4, 7, 4, 4)])
    same(lambda a, b: at_loss([a, b], ft, 1000.0, p), lambda a, b: R.at_loss([a, b], ft, 1000.0, p), *fs)


def test_attention_transfer_equals_torchdistill():
    """torchdistill's ATLoss in its 'code' mode sums the stages' mean squared differences: ours is beta/2 of it."""
    from torchdistill.losses.mid_level import ATLoss

    fs, ft = _maps(5, [(4, 6, 8, 8), (4, 5, 4, 4)]), _maps(6, [(4, 9, 8, 8), (4, 7, 4, 4)])
    pairs = {f"p{i}": {"student": {"io": "output", "path": f"s{i}"}, "teacher": {"io": "output", "path": f"t{i}"}}
             for i in range(2)}
    theirs = ATLoss(pairs, mode="code")
    same(lambda a, b: at_loss([a, b], ft, 1000.0),
         lambda a, b: 500.0 * theirs({"s0": {"output": a}, "s1": {"output": b}},
                                     {"t0": {"output": ft[0]}, "t1": {"output": ft[1]}}), *fs)


def test_attention_transfer_matches_stages_by_relative_depth_and_pools_the_larger_map():
    d = distiller("at")
    assert d.method.student_stages == [1, 2] and d.method.teacher_stages(0) == [2, 3]
    fs, ft = _maps(7, [(4, 6, 8, 8), (4, 9, 4, 4)])
    pooled = torch.nn.functional.adaptive_avg_pool2d(fs, (4, 4))
    close(at_loss([fs], [ft], 2.0), R.at_loss([pooled], [ft], 2.0))


def test_rkd_equals_the_paper():
    es, et = _maps(8, [(10, 12), (10, 20)])
    for part in (0, 1):
        same(lambda s: rkd_parts(s, et)[part], lambda s: R.rkd_parts(s, et)[part], es)
    d = distiller("rkd", rkd_distance=25.0, rkd_angle=50.0)
    out = d.method.distill(Outputs(None, embedding=es), Outputs(None, embedding=et), None, None)
    close(out["rkd_distance"] + out["rkd_angle"], R.rkd(es, et, 25.0, 50.0))


def test_rkd_equals_torchdistill():
    from torchdistill.losses.mid_level import RKDLoss

    es, et = _maps(9, [(10, 12), (10, 20)])
    theirs = RKDLoss("s", "t", dist_factor=1.0, angle_factor=1.0, reduction="mean")
    same(lambda s: rkd_parts(s, et)[0], lambda s: theirs.compute_rkd_distance_loss(et, s), es)
    same(lambda s: rkd_parts(s, et)[1], lambda s: theirs.compute_rkd_angle_loss(et, s), es)


def test_pkt_equals_the_paper_and_torchdistill():
    from torchdistill.losses.mid_level import PKTLoss

    es, et = _maps(10, [(10, 12), (10, 20)])
    same(lambda s: pkt_loss(s, et), lambda s: R.pkt(s, et), es)
    theirs = PKTLoss("s", "input", "t", "input")
    same(lambda s: pkt_loss(s, et), lambda s: theirs.cosine_similarity_loss(s, et), es)


# -- CRD ----------------------------------------------------------------------------------------------------------
def _crd(n=32, negatives=6):
    d = distiller("crd", crd_negatives=negatives, crd_dim=8, crd_temperature=0.07, crd_momentum=0.5, crd_weight=0.8)
    d.ctx.n_train = n  # a bank of n rows: built for 64, only the first n rows are drawn in this test
    return d


def test_crd_equals_the_paper_and_updates_its_banks():
    d = _crd(64)
    m = d.method
    es, et = _maps(11, [(4, 40), (4, 56)])
    index = torch.tensor([3, 17, 42, 60])
    contrast = torch.tensor([[3, 5, 9, 1, 0, 8, 2], [17, 4, 4, 63, 2, 9, 11], [42, 1, 2, 3, 4, 5, 6],
                             [60, 7, 7, 7, 30, 31, 32]])
    m.contrast = lambda idx: contrast
    bank_s, bank_t = m.bank_s0.clone(), m.bank_t0.clone()
    vs, vt = m.embed_s(es), m.embed_t[0](et)
    z_s = R.crd_z(R.crd_scores(vs, bank_t, contrast, 0.07), 64)
    z_t = R.crd_z(R.crd_scores(vt, bank_s, contrast, 0.07), 64)
    ref = 0.8 * R.crd_loss(vs, vt, bank_s, bank_t, index, contrast, 0.07, 64, z_s, z_t)
    got = m.distill(Outputs(None, embedding=es), Outputs(None, embedding=et), None, index)["crd"]
    close(got, ref, rtol=1e-7)  # Z is set from the first batch in float64 here, as a Python float there
    close(m.bank_s0, R.crd_update(bank_s, index, vs, 0.5))
    close(m.bank_t0, R.crd_update(bank_t, index, vt, 0.5))
    close(m.z, torch.tensor([z_s, z_t], dtype=D64), rtol=1e-12)  # set once, on the first batch


def test_crd_equals_torchdistill():
    """torchdistill's CRDLoss: memory_v1 is the student's bank, memory_v2 the teacher's, the same NCE."""
    from torchdistill.losses.mid_level import CRDLoss

    d = _crd(64)
    m = d.method
    es, et = _maps(12, [(4, 40), (4, 56)])
    index = torch.tensor([0, 5, 6, 63])
    contrast = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [5, 9, 10, 11, 12, 13, 14], [6, 0, 0, 1, 1, 2, 2],
                             [63, 62, 61, 60, 59, 58, 57]])
    m.contrast = lambda idx: contrast
    theirs = CRDLoss("s", "e", "t", input_size=8, output_size=64, num_negative_samples=6, num_samples=64,
                     temperature=0.07, momentum=0.5).double()
    theirs.memory_v1.copy_(m.bank_s0)
    theirs.memory_v2.copy_(m.bank_t0)
    vs, vt = m.embed_s(es), m.embed_t[0](et)
    out_s, out_t = theirs.contrast_memory(vs, vt, index, contrast)
    ref = 0.8 * (theirs.compute_contrast_loss(out_s) + theirs.compute_contrast_loss(out_t))
    got = m.distill(Outputs(None, embedding=es), Outputs(None, embedding=et), None, index)["crd"]
    close(got, ref.squeeze(), rtol=1e-7)
    close(m.bank_s0, theirs.memory_v1)
    close(m.bank_t0, theirs.memory_v2)


def test_crd_bank_update_is_a_renormalised_momentum_average():
    bank = torch.nn.functional.normalize(torch.randn(10, 4, dtype=D64), dim=1)
    v = torch.nn.functional.normalize(torch.randn(3, 4, dtype=D64), dim=1)
    idx = torch.tensor([1, 4, 9])
    expected = R.crd_update(bank, idx, v, 0.5)
    bank_update(bank, idx, v, 0.5)
    close(bank, expected)


def test_crd_negatives_are_drawn_from_the_epochs_generator_and_keep_the_positive():
    d = distiller("crd", crd_negatives=5)
    m = d.method
    index = torch.arange(8)
    m.on_epoch_start(3)
    first = m.contrast(index)
    m.on_epoch_start(3)
    assert torch.equal(first, m.contrast(index)) and torch.equal(first[:, 0], index)
    m.on_epoch_start(4)
    assert not torch.equal(first, m.contrast(index))
    assert first.shape == (8, 6) and int(first.max()) < 64


def test_the_memory_ledger_counts_what_each_method_adds():
    """Packing's estimate: feature maps for fitnet and at, the regressor for fitnet, CRD's gathered negatives; and
    a method is part of a run shape's memory key (Hinton's keys stay as they were)."""
    from kdengine.execution.packing import memory_key
    from kdengine.training.memory import estimate_peak

    data = DataConfig(source="synthetic", image_size=64)
    spec = {m: build_specs("normal", "resnet10t", ["resnet18"], data, TrainConfig(batch_size=16),
                           KDConfig(method=m, crd_negatives=1024), 0) for m in ("hinton", "fitnet", "at", "crd")}
    peak = {m: estimate_peak(s) for m, s in spec.items()}
    assert peak["fitnet"] > peak["hinton"] and peak["at"] > peak["hinton"]
    assert peak["crd"] - peak["hinton"] >= 2 * 2 * 16 * 1025 * 128 * 4  # two gathers of 1,025 rows, kept for backward
    hinton = memory_key(spec["hinton"])
    assert hinton.startswith("resnet10t|resnet18|b16|64px|") and not hinton.endswith("|hinton")
    assert memory_key(spec["crd"]).endswith("|crd")
