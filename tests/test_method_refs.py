"""Checks of the float64 references (tests/method_refs.py, written from the papers by someone who had not seen
kdstudy's implementation) against independent facts: the papers' stated properties, hand, numpy and scipy
computations, gradcheck; not against themselves, and not against kdstudy (tests/test_methods.py does that)."""
import math
import warnings

import numpy as np
import pytest
import scipy.special as sps
import scipy.spatial.distance as ssd
import torch
import torch.nn.functional as F


from tests import method_refs as R

DT = torch.float64


@pytest.fixture(autouse=True)
def _float64_default():
    """float64 by default within this module only (it would leak into every later test otherwise)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=gen(seed), dtype=DT) * scale


def np_softmax(z, axis=-1):
    return sps.softmax(np.asarray(z, dtype=np.float64), axis=axis)


def close(a, b, rtol=1e-10, atol=1e-12):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------
# 1. Hinton KD
# ---------------------------------------------------------------------------
def test_hinton_zero_when_equal():
    z = randn(5, 7, seed=1, scale=3)
    assert abs(R.hinton_kd(z, z.clone(), 4.0).item()) < 1e-14


def test_hinton_hand_2x3():
    zs = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    zt = [[2.0, 0.0, 1.0], [1.0, 1.0, -2.0]]
    T = 2.0
    # plain python, by hand
    tot = 0.0
    for a, b in zip(zs, zt):
        es = [math.exp(v / T) for v in a]
        et = [math.exp(v / T) for v in b]
        ps = [v / sum(es) for v in es]
        pt = [v / sum(et) for v in et]
        tot += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    expected = T * T * tot / 2
    got = R.hinton_kd(torch.tensor(zs), torch.tensor(zt), T)
    close(got, expected)
    # "mean" reduction divides the summed KL by B*K
    close(R.hinton_kd(torch.tensor(zs), torch.tensor(zt), T, reduction="mean"), T * T * tot / 6)
    # and nn.KLDivLoss semantics
    inp = F.log_softmax(torch.tensor(zs) / T, 1)
    tgt = F.softmax(torch.tensor(zt) / T, 1)
    close(got, T * T * torch.nn.KLDivLoss(reduction="batchmean")(inp, tgt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KLDivLoss 'mean' deprecation notice
        kl_mean = torch.nn.KLDivLoss()(inp, tgt)
    close(R.hinton_kd(torch.tensor(zs), torch.tensor(zt), T, reduction="mean"), T * T * kl_mean)


def test_hinton_matches_scipy_random():
    zs, zt = randn(6, 10, seed=2, scale=2), randn(6, 10, seed=3, scale=2)
    T = 3.0
    kl = sps.rel_entr(np_softmax(zt.numpy() / T, 1), np_softmax(zs.numpy() / T, 1)).sum(1)
    close(R.hinton_kd(zs, zt, T), T * T * kl.mean())


def test_hinton_gradient_eq2():
    # Hinton Eq. 2: dC/dz_i = (q_i - p_i)/T for the soft-target CE; with the
    # T^2 factor and the batch mean: T/B * (softmax(zs/T) - softmax(zt/T)).
    B, K, T = 4, 6, 2.5
    zs = randn(B, K, seed=4).requires_grad_()
    zt = randn(B, K, seed=5)
    R.hinton_kd(zs, zt, T).backward()
    expected = T / B * (F.softmax(zs.detach() / T, 1) - F.softmax(zt / T, 1))
    close(zs.grad, expected)


def test_hinton_high_temperature_limit():
    # Hinton Eq. 3-4: for T >> |z| and zero-mean logits, dC/dz_i ~ (z_i - v_i)/(K T^2)
    # => with T^2 factor and batch mean: grad ~ (zs - zt)/(B K)
    B, K, T = 3, 5, 1e4
    zs = randn(B, K, seed=6)
    zs = (zs - zs.mean(1, keepdim=True)).requires_grad_()
    zt = randn(B, K, seed=7)
    zt = zt - zt.mean(1, keepdim=True)
    loss = R.hinton_kd(zs, zt, T)
    loss.backward()
    close(zs.grad, (zs.detach() - zt) / (B * K), rtol=1e-3, atol=1e-5)
    # and the loss itself ~ sum (zs-zt)^2 / (2K) / B  (second-order expansion)
    close(loss, ((zs.detach() - zt) ** 2).sum() / (2 * K) / B, rtol=1e-2)


# ---------------------------------------------------------------------------
# 2. DKD
# ---------------------------------------------------------------------------
def _np_dkd_parts(zs, zt, y, T):
    zs, zt, y = zs.numpy(), zt.numpy(), y.numpy()
    tck, nck = [], []
    for i in range(zs.shape[0]):
        ps, pt = np_softmax(zs[i] / T), np_softmax(zt[i] / T)
        bs = np.array([ps[y[i]], 1 - ps[y[i]]])
        bt = np.array([pt[y[i]], 1 - pt[y[i]]])
        tck.append(sps.rel_entr(bt, bs).sum())
        hs = np_softmax(np.delete(zs[i], y[i]) / T)
        ht = np_softmax(np.delete(zt[i], y[i]) / T)
        nck.append(sps.rel_entr(ht, hs).sum())
    return np.array(tck), np.array(nck)


def test_dkd_parts_match_numpy():
    B, K, T = 5, 7, 4.0
    zs, zt = randn(B, K, seed=10, scale=3), randn(B, K, seed=11, scale=3)
    y = torch.tensor([0, 3, 6, 2, 3])
    tck, nck = _np_dkd_parts(zs, zt, y, T)
    t, n = R.dkd_parts(zs, zt, y, T)
    close(t, T * T * tck.mean())
    close(n, T * T * nck.mean())
    close(R.dkd(zs, zt, y, 1.0, 8.0, T), T * T * (tck + 8.0 * nck).mean())


def test_dkd_reformulation_of_kd():
    # DKD paper: KD = TCKD + (1 - p_t^T) NCKD, at the same temperature
    B, K, T = 6, 9, 3.0
    zs, zt = randn(B, K, seed=12, scale=2), randn(B, K, seed=13, scale=2)
    y = torch.tensor([1, 0, 8, 4, 4, 2])
    pt_target = F.softmax(zt / T, 1).gather(1, y[:, None]).squeeze(1)
    kd = R.hinton_kd(zs, zt, T)
    close(R.dkd(zs, zt, y, 1.0, 1.0 - pt_target, T), kd)
    # per sample (B = 1, scalar weights)
    per = [R.dkd(zs[i:i + 1], zt[i:i + 1], y[i:i + 1], 1.0, float(1 - pt_target[i]), T)
           for i in range(B)]
    close(torch.stack(per).mean(), kd)
    # gradients too
    zs1 = zs.clone().requires_grad_()
    zs2 = zs.clone().requires_grad_()
    R.dkd(zs1, zt, y, 1.0, 1.0 - pt_target, T).backward()
    R.hinton_kd(zs2, zt, T).backward()
    close(zs1.grad, zs2.grad)


def test_dkd_zero_and_invariances():
    B, K, T = 4, 6, 2.0
    z = randn(B, K, seed=14, scale=2)
    y = torch.tensor([0, 1, 2, 5])
    assert abs(R.dkd(z, z.clone(), y, 1.0, 8.0, T).item()) < 1e-14
    zs, zt = randn(B, K, seed=15), randn(B, K, seed=16)
    base = R.dkd(zs, zt, y, 1.0, 8.0, T)
    # softmax shift invariance per row
    close(R.dkd(zs + randn(B, 1, seed=17), zt, y, 1.0, 8.0, T), base)
    # NCKD does not depend on the student's target logit
    zs2 = zs.clone()
    zs2[torch.arange(B), y] += 5.0
    close(R.dkd_parts(zs2, zt, y, T)[1], R.dkd_parts(zs, zt, y, T)[1])
    zsg = zs.clone().requires_grad_()
    R.dkd(zsg, zt, y, 0.0, 1.0, T).backward()
    close(zsg.grad[torch.arange(B), y], torch.zeros(B))
    # TCKD's gradient sums to zero per row and only depends on (target, rest) split
    zsg.grad = None
    R.dkd(zsg, zt, y, 1.0, 0.0, T).backward()
    close(zsg.grad.sum(1), torch.zeros(B), atol=1e-14)


def test_dkd_exact_vs_mask_large_logits():
    # exact K-1 computation is well defined even for large logits
    zs = torch.tensor([[300.0, -200.0, 100.0, 0.0]])
    zt = torch.tensor([[250.0, 10.0, -300.0, 5.0]])
    y = torch.tensor([0])
    v = R.dkd(zs, zt, y, 1.0, 8.0, 1.0)
    assert torch.isfinite(v)
    tck, nck = _np_dkd_parts(zs, zt, y, 1.0)
    close(R.dkd_parts(zs, zt, y, 1.0)[1], nck.mean(), rtol=1e-9)


# ---------------------------------------------------------------------------
# 3. DIST
# ---------------------------------------------------------------------------
def test_dist_matches_numpy_corrcoef():
    B, K, T = 6, 8, 2.0
    zs, zt = randn(B, K, seed=20, scale=2), randn(B, K, seed=21, scale=2)
    ps, pt = np_softmax(zs.numpy() / T, 1), np_softmax(zt.numpy() / T, 1)
    inter = 1 - np.mean([np.corrcoef(ps[i], pt[i])[0, 1] for i in range(B)])
    intra = 1 - np.mean([np.corrcoef(ps[:, j], pt[:, j])[0, 1] for j in range(K)])
    close(R.dist(zs, zt, 1.0, 2.0, T, eps=0.0), T * T * (inter + 2.0 * intra))
    close(R.dist(zs, zt, 1.0, 2.0, T, eps=0.0, cos_mode="torch"), T * T * (inter + 2.0 * intra))
    # with eps the value moves only slightly
    close(R.dist(zs, zt, 1.0, 2.0, T), T * T * (inter + 2.0 * intra), rtol=1e-4)


def test_dist_eps_modes():
    B, K, T = 5, 6, 4.0
    zs, zt = randn(B, K, seed=22), randn(B, K, seed=23)
    ps, pt = F.softmax(zs / T, 1), F.softmax(zt / T, 1)
    eps = 1e-3  # large to make the modes distinguishable
    # "torch" mode == F.cosine_similarity of centred vectors
    c_inter = F.cosine_similarity(ps - ps.mean(1, keepdim=True), pt - pt.mean(1, keepdim=True),
                                  dim=1, eps=eps)
    c_intra = F.cosine_similarity(ps - ps.mean(0, keepdim=True), pt - pt.mean(0, keepdim=True),
                                  dim=0, eps=eps)
    close(R.dist(zs, zt, 1.0, 1.0, T, eps=eps, cos_mode="torch"),
          T * T * ((1 - c_inter.mean()) + (1 - c_intra.mean())))
    # "add" mode == product + eps, computed in numpy
    a, b = ps.numpy(), pt.numpy()

    def p_add(u, v):
        u, v = u - u.mean(), v - v.mean()
        return (u * v).sum() / (np.linalg.norm(u) * np.linalg.norm(v) + eps)
    inter = 1 - np.mean([p_add(a[i], b[i]) for i in range(B)])
    intra = 1 - np.mean([p_add(a[:, j], b[:, j]) for j in range(K)])
    close(R.dist(zs, zt, 1.0, 1.0, T, eps=eps), T * T * (inter + intra))


def test_dist_zero_identical():
    z = randn(5, 7, seed=24, scale=2)
    assert abs(R.dist(z, z.clone(), 1.0, 1.0, 4.0, eps=0.0).item()) < 1e-12
    assert abs(R.dist(z, z.clone(), 1.0, 1.0, 4.0).item()) < 1e-3


def test_dist_affine_invariance():
    # DIST: Pearson distance is invariant to positive linear transforms
    # (u -> a u + b, a > 0) applied separately to each compared vector.
    B, K = 5, 6
    ps = F.softmax(randn(B, K, seed=25), 1)
    pt = F.softmax(randn(B, K, seed=26), 1)
    base = R.dist_from_probs(ps, pt, 1.0, 1.0, 1.0, eps=0.0)
    # global affine on both
    close(R.dist_from_probs(3.0 * ps + 0.2, 0.5 * pt - 1.0, 1.0, 1.0, 1.0, eps=0.0), base)
    # per-row affine: inter term invariant
    a = torch.rand(B, 1, generator=gen(1)) + 0.1
    b = torch.randn(B, 1, generator=gen(2))
    close(R.dist_from_probs(a * ps + b, pt, 1.0, 0.0, 1.0, eps=0.0),
          R.dist_from_probs(ps, pt, 1.0, 0.0, 1.0, eps=0.0))
    # per-column affine: intra term invariant
    a = torch.rand(1, K, generator=gen(3)) + 0.1
    b = torch.randn(1, K, generator=gen(4))
    close(R.dist_from_probs(ps, a * pt + b, 0.0, 1.0, 1.0, eps=0.0),
          R.dist_from_probs(ps, pt, 0.0, 1.0, 1.0, eps=0.0))
    # negation gives the maximum distance 2 per term
    close(R.dist_from_probs(ps, -ps, 1.0, 0.0, 1.0, eps=0.0), 2.0)


def test_dist_range_and_temperature_factor():
    B, K = 4, 5
    zs, zt = randn(B, K, seed=27, scale=3), randn(B, K, seed=28, scale=3)
    for T in (1.0, 2.0, 4.0):
        v = R.dist(zs, zt, 1.0, 1.0, T, eps=0.0).item()
        assert 0.0 <= v <= 4.0 * T * T + 1e-12
    ps, pt = F.softmax(zs / 4, 1), F.softmax(zt / 4, 1)
    close(R.dist(zs, zt, 2.0, 3.0, 4.0), 16 * R.dist_from_probs(ps, pt, 2.0, 3.0, 1.0))


# ---------------------------------------------------------------------------
# 4. Logit standardisation
# ---------------------------------------------------------------------------
def test_standardize_moments():
    z = randn(4, 9, seed=30, scale=5) + 3
    for ddof in (0, 1):
        s = R.standardize(z, ddof=ddof, eps=0.0).numpy()
        np.testing.assert_allclose(s.mean(1), 0, atol=1e-12)
        np.testing.assert_allclose(s.std(1, ddof=ddof), 1, rtol=1e-12)
        zn = z.numpy()
        ref = (zn - zn.mean(1, keepdims=True)) / (1e-7 + zn.std(1, ddof=ddof, keepdims=True))
        close(R.standardize(z, ddof=ddof), ref)


def test_ls_kd_affine_invariance_and_zero():
    B, K, T = 4, 7, 2.0
    zs, zt = randn(B, K, seed=31, scale=2), randn(B, K, seed=32, scale=2)
    base = R.ls_kd(zs, zt, T, eps=0.0)
    a = torch.rand(B, 1, generator=gen(5)) * 5 + 0.1
    b = torch.randn(B, 1, generator=gen(6)) * 10
    close(R.ls_kd(a * zs + b, zt, T, eps=0.0), base)
    close(R.ls_kd(zs, a * zt + b, T, eps=0.0), base)
    # student matching the teacher up to a positive affine map has zero loss
    assert abs(R.ls_kd(a * zt + b, zt, T, eps=0.0).item()) < 1e-12
    assert abs(R.ls_kd(a * zt + b, zt, T).item()) < 1e-10
    # equals plain KD on z-scores (numpy)
    zsn, ztn = zs.numpy(), zt.numpy()
    sn = (zsn - zsn.mean(1, keepdims=True)) / (1e-7 + zsn.std(1, ddof=1, keepdims=True))
    tn = (ztn - ztn.mean(1, keepdims=True)) / (1e-7 + ztn.std(1, ddof=1, keepdims=True))
    kl = sps.rel_entr(np_softmax(tn / T, 1), np_softmax(sn / T, 1)).sum(1).mean()
    close(R.ls_kd(zs, zt, T), T * T * kl)
    # ddof=1 vs ddof=0 is a rescaled temperature: std1 = std0*sqrt(K/(K-1))
    close(R.ls_kd(zs, zt, T, ddof=1, eps=0.0),
          R.ls_kd(zs, zt, T * math.sqrt(K / (K - 1)), ddof=0, eps=0.0) / (K / (K - 1)))


# ---------------------------------------------------------------------------
# 5. FitNets
# ---------------------------------------------------------------------------
def test_fitnet():
    a, b = randn(2, 3, 4, 5, seed=40), randn(2, 3, 4, 5, seed=41)
    assert R.fitnet(a, a.clone()).item() == 0.0
    close(R.fitnet(a, b), np.mean((a.numpy() - b.numpy()) ** 2))
    close(R.fitnet(a, b), F.mse_loss(a, b))
    # paper Eq. 3: 1/2 ||u - r||^2 per example  = N/2 * mse, N = C*H*W
    per = 0.5 * ((a.numpy() - b.numpy()) ** 2).reshape(2, -1).sum(1)
    close(R.fitnet_paper(a, b), per.mean())
    close(R.fitnet_paper(a, b), R.fitnet(a, b) * 3 * 4 * 5 / 2)


# ---------------------------------------------------------------------------
# 6. Attention transfer
# ---------------------------------------------------------------------------
def test_at_map_paper_sum_and_norm():
    f = randn(3, 5, 4, 6, seed=50)
    for p in (1, 2, 3):
        A = (np.abs(f.numpy()) ** p).sum(1).reshape(3, -1)  # paper's F^p_sum
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        close(R.at_map(f, p), A)
        close(torch.linalg.vector_norm(R.at_map(f, p), dim=1), torch.ones(3))


def test_at_zero_for_positive_scale():
    ft = [randn(2, 4, 8, 8, seed=51), randn(2, 6, 4, 4, seed=52)]
    fs = [3.7 * ft[0], -0.2 * ft[1]]  # positive scale / sign flip of |.|^p
    for p in (1, 2, 4):
        assert R.at_loss(fs, ft, 1e3, p).item() < 1e-20
        assert R.at_loss_paper(fs, ft, 1e3, p).item() < 1e-10
    # differing channel counts, maps with equal channel-mean are equal
    g = randn(2, 1, 5, 5, seed=53)
    assert R.at_loss([g.expand(2, 3, 5, 5)], [2 * g.expand(2, 7, 5, 5)], 1.0).item() < 1e-20


def test_at_loss_values():
    fs = [randn(3, 4, 6, 6, seed=54), randn(3, 5, 3, 3, seed=55)]
    ft = [randn(3, 2, 6, 6, seed=56), randn(3, 8, 3, 3, seed=57)]
    beta = 1e3
    exp_rel, exp_pap = 0.0, 0.0
    for s, t in zip(fs, ft):
        qs = (s.numpy() ** 2).mean(1).reshape(3, -1)
        qt = (t.numpy() ** 2).mean(1).reshape(3, -1)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        qt /= np.linalg.norm(qt, axis=1, keepdims=True)
        exp_rel += ((qs - qt) ** 2).mean()
        exp_pap += np.linalg.norm(qs - qt, axis=1).mean()
    close(R.at_loss(fs, ft, beta), beta / 2 * exp_rel)
    close(R.at_loss_paper(fs, ft, beta), beta / 2 * exp_pap)
    # each squared difference of two unit nonnegative vectors is <= 2
    assert R.at_loss(fs, ft, 2.0).item() <= 2 * 2 / 9 + 1e-12


# ---------------------------------------------------------------------------
# 7. RKD
# ---------------------------------------------------------------------------
def _np_rkd(es, et):
    def normd(e):
        B = e.shape[0]
        d = ssd.squareform(ssd.pdist(e))
        return d / (d.sum() / (B * (B - 1)))

    def angles(e):
        B = e.shape[0]
        A = np.zeros((B, B, B))
        D = ssd.squareform(ssd.pdist(e))
        for j in range(B):
            for i in range(B):
                for k in range(B):
                    if i == j or k == j:
                        continue
                    # law of cosines at vertex j
                    A[j, i, k] = (D[i, j] ** 2 + D[k, j] ** 2 - D[i, k] ** 2) / (2 * D[i, j] * D[k, j])
        return A
    es, et = es.numpy(), et.numpy()
    ld = sps.huber(1.0, normd(es) - normd(et)).mean()
    la = sps.huber(1.0, angles(es) - angles(et)).mean()
    return ld, la


def test_rkd_matches_numpy():
    es, et = randn(6, 5, seed=60), randn(6, 8, seed=61, scale=3)
    ld, la = _np_rkd(es, et)
    d, a = R.rkd_parts(es, et)
    close(d, ld, rtol=1e-9)
    close(a, la, rtol=1e-9, atol=1e-12)
    close(R.rkd(es, et), 25 * ld + 50 * la, rtol=1e-9)
    close(R.rkd(es, et, 1.0, 2.0), ld + 2 * la, rtol=1e-9)


def test_rkd_large_differences_use_linear_branch():
    # make normalised distances differ by more than 1 somewhere
    es = torch.tensor([[0.0], [1.0], [2.0], [100.0]])
    et = torch.tensor([[0.0], [50.0], [51.0], [52.0]])
    ld, la = _np_rkd(es, et)
    close(R.rkd_parts(es, et)[0], ld)
    close(R.rkd_parts(es, et)[1], la, atol=1e-12)


def test_rkd_similarity_invariance():
    # RKD: losses on relations are invariant to scaling, translation, rotation
    B, D = 7, 4
    et = randn(B, D, seed=62)
    es = randn(B, D, seed=63)
    Q, _ = torch.linalg.qr(randn(D, D, seed=64))
    sim = 3.3 * et @ Q + randn(1, D, seed=65)
    assert R.rkd(et.clone(), et).item() < 1e-20
    assert R.rkd(sim, et).item() < 1e-20
    base = R.rkd(es, et)
    close(R.rkd(0.01 * es, et), base)
    close(R.rkd(es, 50 * et), base)
    close(R.rkd(es @ Q - 2.0, et), base)


def test_rkd_degenerate_entries_are_zero():
    # mean over B^2 / B^3 entries = paper's sum over distinct pairs/triplets / B^2, B^3
    es, et = randn(5, 3, seed=66), randn(5, 3, seed=67)
    d_s, d_t = R.rkd_pdist(es), R.rkd_pdist(et)
    close(torch.diagonal(d_s), torch.zeros(5))
    A = R.rkd_angles(es)
    for j in range(5):
        close(A[j, j, :], torch.zeros(5))
        close(A[j, :, j], torch.zeros(5))
        for i in range(5):
            if i != j:
                close(A[j, i, i], 1.0)


# ---------------------------------------------------------------------------
# 8. PKT
# ---------------------------------------------------------------------------
def _np_pkt(es, et, eps):
    def P(e):
        u = e / (np.linalg.norm(e, axis=1, keepdims=True) + eps)
        k = (u @ u.T + 1) / 2
        return k / k.sum(1, keepdims=True)
    ps, pt = P(es.numpy()), P(et.numpy())
    return (pt * np.log((pt + eps) / (ps + eps))).mean(), ps, pt


def test_pkt():
    es, et = randn(6, 5, seed=70), randn(6, 9, seed=71)
    v, ps, pt = _np_pkt(es, et, 1e-7)
    close(R.pkt(es, et), v)
    assert abs(R.pkt(et, et.clone()).item()) < 1e-16
    # eps = 0 : mean of row-wise KL(P_t(.|i) || P_s(.|i)) / B  (a sum of KLs / B^2)
    _, ps0, pt0 = _np_pkt(es, et, 0.0)
    close(R.pkt(es, et, eps=0.0), sps.rel_entr(pt0, ps0).sum() / 36)
    assert R.pkt(es, et, eps=0.0).item() >= 0
    # only directions matter: per-sample positive rescaling (approx. with eps)
    s = torch.rand(6, 1, generator=gen(7)) * 10 + 0.1
    close(R.pkt(s * es, et, eps=0.0), R.pkt(es, et, eps=0.0))
    close(R.pkt(s * es, et), R.pkt(es, et), rtol=1e-5)


# ---------------------------------------------------------------------------
# 9. CRD
# ---------------------------------------------------------------------------
def _crd_setup(seed=80, B=4, d=6, n_data=20, K=5):
    g = gen(seed)
    l2 = lambda x: x / x.norm(dim=1, keepdim=True)  # noqa: E731
    vs = l2(torch.randn(B, d, generator=g))
    vt = l2(torch.randn(B, d, generator=g))
    ms = l2(torch.randn(n_data, d, generator=g))
    mt = l2(torch.randn(n_data, d, generator=g))
    idx = torch.randperm(n_data, generator=g)[:B]
    neg = torch.randint(0, n_data, (B, K), generator=g)
    cidx = torch.cat([idx[:, None], neg], 1)
    return vs, vt, ms, mt, idx, cidx, n_data, K


def test_crd_loss_numpy_loops():
    vs, vt, ms, mt, idx, cidx, n_data, K = _crd_setup()
    T, zs, zt, eps = 0.07, 3.0, 5.0, 1e-7
    vsn, vtn, msn, mtn, c = vs.numpy(), vt.numpy(), ms.numpy(), mt.numpy(), cidx.numpy()
    B = vsn.shape[0]
    Pn = 1.0 / n_data

    def nce(anchor, bank, Z):
        tot = 0.0
        for i in range(B):
            for k in range(K + 1):
                x = math.exp(float(bank[c[i, k]] @ anchor[i]) / T) / Z
                if k == 0:
                    tot += math.log(x / (x + K * Pn + eps))
                else:
                    tot += math.log(K * Pn / (x + K * Pn + eps))
        return -tot / B
    expected = nce(vsn, mtn, zs) + nce(vtn, msn, zt)
    close(R.crd_loss(vs, vt, ms, mt, idx, cidx, T, n_data, zs, zt), expected)


def test_crd_paper_critic_with_unit_Z():
    # with Z = 1 and eps = 0, D = x/(x + N/M) is the paper's h(T,S)
    vs, vt, ms, mt, idx, cidx, n_data, K = _crd_setup(seed=81)
    T = 0.5
    s = (mt[cidx] * vs[:, None, :]).sum(-1) / T
    h = torch.exp(s) / (torch.exp(s) + K / n_data)
    paper = -(torch.log(h[:, 0]).sum() + torch.log(1 - h[:, 1:]).sum()) / vs.shape[0]
    close(R.crd_nce(torch.exp(s), n_data, eps=0.0), paper)


def test_crd_gradients_and_constants():
    vs, vt, ms, mt, idx, cidx, n_data, K = _crd_setup(seed=82)
    vs, vt = vs.clone().requires_grad_(), vt.clone().requires_grad_()
    ms, mt = ms.clone().requires_grad_(), mt.clone().requires_grad_()
    loss = R.crd_loss(vs, vt, ms, mt, idx, cidx, 0.1, n_data, 2.0, 2.0)
    loss.backward()
    assert vs.grad is not None and vt.grad is not None
    assert ms.grad is None and mt.grad is None
    # student loss only depends on vs via the teacher bank
    vs2 = vs.detach().clone().requires_grad_()
    l2 = R.crd_nce(R.crd_scores(vs2, mt, cidx, 0.1) / 2.0, n_data)
    l2.backward()
    close(vs.grad, vs2.grad)
    # NCE: raising the positive score lowers the loss, raising a negative raises it
    x = torch.rand(3, K + 1, generator=gen(8)).requires_grad_()
    R.crd_nce(x, n_data).backward()
    assert (x.grad[:, 0] < 0).all() and (x.grad[:, 1:] > 0).all()


def test_crd_z_and_update():
    vs, vt, ms, mt, idx, cidx, n_data, K = _crd_setup(seed=83)
    sc = R.crd_scores(vs, mt, cidx, 0.1)
    z = R.crd_z(sc, n_data)
    assert isinstance(z, float)
    close(z, sc.mean() * n_data)
    close(R.crd_z(torch.log(sc), n_data, already_exp=False), z)
    close((sc / z).mean(), 1.0 / n_data)  # Z makes the scores average Pn
    new = R.crd_update(mt, idx, vt, 0.5)
    rows = 0.5 * mt[idx] + 0.5 * vt
    close(new[idx], rows.numpy() / np.linalg.norm(rows.numpy(), axis=1, keepdims=True))
    mask = torch.ones(n_data, dtype=torch.bool)
    mask[idx] = False
    close(new[mask], mt[mask])
    close(torch.linalg.vector_norm(new[idx], dim=1), torch.ones(len(idx)))
    close(R.crd_update(mt, idx, vt, 0.0)[idx], vt)  # vt is unit norm
    assert not torch.equal(new, mt)  # input untouched and output differs


# ---------------------------------------------------------------------------
# 10. multi-label KD
# ---------------------------------------------------------------------------
def test_multilabel_numpy_and_binary_kd():
    B, L, T = 5, 6, 2.0
    zs, zt = randn(B, L, seed=90, scale=3), randn(B, L, seed=91, scale=3)
    p = 1 / (1 + np.exp(-zs.numpy() / T))
    q = 1 / (1 + np.exp(-zt.numpy() / T))
    ref = T * T * (q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))).sum(1).mean()
    close(R.multilabel_kd(zs, zt, T), ref)
    # each label = 2-class softmax KD on logits [z, 0]
    tot = sum(R.hinton_kd(torch.stack([zs[:, k], torch.zeros(B)], 1),
                          torch.stack([zt[:, k], torch.zeros(B)], 1), T) for k in range(L))
    close(R.multilabel_kd(zs, zt, T), tot)
    assert abs(R.multilabel_kd(zs, zs.clone(), T).item()) < 1e-14


def test_multilabel_stable_extreme():
    zs = torch.tensor([[800.0, -900.0, 40.0]], requires_grad=True)
    zt = torch.tensor([[-700.0, 1000.0, 40.0]])
    v = R.multilabel_kd(zs, zt, 1.0)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(zs.grad).all()
    # label 1: q~0, p~1 -> -log(1-p) ~ 800; label 2: q~1, p~0 -> -log p ~ 900
    close(v, 800.0 + 900.0, rtol=1e-6)
    # gradient of the binary KL wrt zs/T is p - q
    close(zs.grad, torch.sigmoid(zs.detach()) - torch.sigmoid(zt), atol=1e-12)


# ---------------------------------------------------------------------------
# autograd: analytic vs numerical gradients wrt the student inputs
# ---------------------------------------------------------------------------
def _gc(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_all():
    B, K = 4, 5
    zs = randn(B, K, seed=100).requires_grad_()
    zt = randn(B, K, seed=101)
    y = torch.tensor([0, 4, 2, 2])
    _gc(lambda a: R.hinton_kd(a, zt, 3.0), zs)
    _gc(lambda a: R.hinton_kd(a, zt, 3.0, reduction="mean"), zs)
    _gc(lambda a: R.dkd(a, zt, y, 1.0, 8.0, 4.0), zs)
    _gc(lambda a: R.dist(a, zt, 1.0, 2.0, 4.0), zs)
    _gc(lambda a: R.dist(a, zt, 1.0, 2.0, 4.0, cos_mode="torch"), zs)
    _gc(lambda a: R.ls_kd(a, zt, 2.0), zs)
    _gc(lambda a: R.ls_kd(a, zt, 2.0, ddof=0), zs)
    _gc(lambda a: R.multilabel_kd(a, zt, 2.0), zs)
    fs = randn(2, 3, 4, 4, seed=102).requires_grad_()
    ft = randn(2, 2, 4, 4, seed=103)
    _gc(lambda a: R.fitnet(a, randn(2, 3, 4, 4, seed=104)), fs)
    _gc(lambda a: R.at_loss([a], [ft], 1e3), fs)
    _gc(lambda a: R.at_loss([a], [ft], 1e3, p=3), fs)
    _gc(lambda a: R.at_loss_paper([a], [ft], 1e3), fs)
    es = randn(5, 4, seed=105).requires_grad_()
    et = randn(5, 6, seed=106)
    _gc(lambda a: R.rkd(a, et), es)
    _gc(lambda a: R.pkt(a, et), es)
    vs, vt, ms, mt, idx, cidx, n_data, K = _crd_setup(seed=107)
    vs.requires_grad_()
    vt.requires_grad_()
    _gc(lambda a, b: R.crd_loss(a, b, ms, mt, idx, cidx, 0.5, n_data, 2.0, 3.0), vs, vt)


def test_rkd_gradient_finite_with_duplicates():
    es = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]], requires_grad=True)
    et = randn(4, 3, seed=108)
    R.rkd(es, et).backward()
    assert torch.isfinite(es.grad).all()


def test_identical_inputs_zero_grad():
    z = randn(3, 4, seed=109)
    zs = z.clone().requires_grad_()
    y = torch.tensor([1, 2, 3])
    for fn in (lambda a: R.hinton_kd(a, z, 2.0), lambda a: R.dkd(a, z, y, 1.0, 8.0, 2.0),
               lambda a: R.multilabel_kd(a, z, 2.0), lambda a: R.ls_kd(a, z, 2.0)):
        zs.grad = None
        fn(zs).backward()
        close(zs.grad, torch.zeros_like(z), atol=1e-13)
