"""Float64 reference implementations of knowledge-distillation losses.

Written from the papers' equations (and, where stated, the conventions of the
authors' released code as described in the task brief) to serve as ground
truth for tests of another implementation.  Nothing here was copied from
torchdistill, mdistiller or any implementation under test.

General conventions (apply to every function unless its docstring says
otherwise)
--------------------------------------------------------------------------
* Inputs are torch tensors; the functions are meant for float64 and do not
  cast.  Every function is a pure function of its arguments (no module state,
  no in-place modification of inputs).
* Shapes: logits ``zs``, ``zt`` (B, K); labels ``y`` int64 (B,); feature maps
  (B, C, H, W); embeddings (B, D).
* Everything is differentiable with autograd with respect to the student's
  inputs.  Teacher inputs are NOT detached inside the references (except the
  CRD memory banks, which are constants by definition); pass detached teacher
  tensors if the teacher must be frozen.  Gradients with respect to the
  teacher are therefore those of the plain mathematical formula.
* Reduction: mean over the batch unless stated.
* Equation numbers are given as I recall them from the arXiv / proceedings
  versions; the formula written next to each number is the authoritative
  statement of what is implemented.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Scalar = Union[float, int, Tensor]

__all__ = [
    "hinton_kd",
    "dkd",
    "dkd_parts",
    "dist",
    "dist_from_probs",
    "pearson_rows",
    "standardize",
    "ls_kd",
    "fitnet",
    "fitnet_paper",
    "at_map",
    "at_loss",
    "at_loss_paper",
    "rkd",
    "rkd_parts",
    "rkd_pdist",
    "rkd_angles",
    "huber",
    "pkt",
    "crd_scores",
    "crd_nce",
    "crd_loss",
    "crd_z",
    "crd_update",
    "multilabel_kd",
]


# ---------------------------------------------------------------------------
# 1. Hinton et al. 2015
# ---------------------------------------------------------------------------
def hinton_kd(zs: Tensor, zt: Tensor, T: float, reduction: str = "batchmean") -> Tensor:
    """Distillation term of Hinton, Vinyals & Dean, "Distilling the Knowledge
    in a Neural Network", NIPS DL workshop 2015 (arXiv:1503.02531).

    Eq. 1: q_i = exp(z_i/T) / sum_j exp(z_j/T) (softened softmax).  Section 2
    ("Distillation") says the soft-target term should be multiplied by T^2 so
    that its gradient magnitude (Eq. 2: dC/dz_i = (q_i - p_i)/T) does not
    change with T.  The paper writes the soft-target objective as a cross
    entropy; cross entropy and KL differ by the teacher's entropy, which does
    not depend on the student, so values differ but student gradients agree.
    This reference returns the KL form:

        loss = T^2 * KL(softmax(zt/T) || softmax(zs/T))
             = T^2 * sum_k p_t,k (log p_t,k - log p_s,k)

    Reduction conventions:
      * "batchmean" (default): KL summed over the K classes, averaged over the
        B samples (nn.KLDivLoss(reduction="batchmean")).
      * "mean": the total summed KL divided by B*K (nn.KLDivLoss() default
        "mean" reduction, elementwise mean).
      * "sum": summed over batch and classes; "none": per-sample (B,) vector
        (KL summed over classes), both still multiplied by T^2.
    Log-probabilities come from log_softmax (stable); KL terms with p_t = 0
    contribute 0.
    """
    if zs.shape != zt.shape or zs.dim() != 2:
        raise ValueError("zs and zt must both be (B, K)")
    B, K = zs.shape
    log_ps = F.log_softmax(zs / T, dim=1)
    log_pt = F.log_softmax(zt / T, dim=1)
    pt = log_pt.exp()
    per_sample = (pt * (log_pt - log_ps)).sum(dim=1)  # (B,)
    scale = float(T) ** 2
    if reduction == "batchmean":
        return scale * per_sample.sum() / B
    if reduction == "mean":
        return scale * per_sample.sum() / (B * K)
    if reduction == "sum":
        return scale * per_sample.sum()
    if reduction == "none":
        return scale * per_sample
    raise ValueError(f"unknown reduction {reduction!r}")


# ---------------------------------------------------------------------------
# 2. Decoupled KD (Zhao et al., CVPR 2022)
# ---------------------------------------------------------------------------
def _nontarget_index(y: Tensor, K: int) -> Tensor:
    """(B, K-1) int64 indices of the non-target classes of each row, in
    increasing class order."""
    B = y.shape[0]
    ar = torch.arange(K, device=y.device).unsqueeze(0).expand(B, K)
    mask = ar != y.unsqueeze(1)
    if not bool((mask.sum(1) == K - 1).all()):
        raise ValueError("labels must lie in [0, K)")
    return ar[mask].view(B, K - 1)


def _dkd_terms(zs: Tensor, zt: Tensor, y: Tensor, T: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-sample (TCKD_i, NCKD_i, p_t^T_i), without the T^2 factor."""
    if zs.shape != zt.shape or zs.dim() != 2:
        raise ValueError("zs and zt must both be (B, K)")
    B, K = zs.shape
    if K < 2:
        raise ValueError("DKD needs K >= 2")
    y = y.long()
    nt = _nontarget_index(y, K)

    def logs(z: Tensor):
        zT = z / T
        lse_all = torch.logsumexp(zT, dim=1)  # (B,)
        z_tgt = zT.gather(1, y.unsqueeze(1)).squeeze(1)  # (B,)
        z_nt = zT.gather(1, nt)  # (B, K-1)
        lse_nt = torch.logsumexp(z_nt, dim=1)
        # binary distribution b = [p_t, p_\t] in log space
        log_b = torch.stack([z_tgt - lse_all, lse_nt - lse_all], dim=1)  # (B, 2)
        # distribution among the K-1 non-target classes, p-hat
        log_phat = z_nt - lse_nt.unsqueeze(1)  # (B, K-1)
        return log_b, log_phat

    log_b_s, log_phat_s = logs(zs)
    log_b_t, log_phat_t = logs(zt)
    b_t = log_b_t.exp()
    phat_t = log_phat_t.exp()
    tckd = (b_t * (log_b_t - log_b_s)).sum(1)
    nckd = (phat_t * (log_phat_t - log_phat_s)).sum(1)
    return tckd, nckd, b_t[:, 0]


def dkd_parts(zs: Tensor, zt: Tensor, y: Tensor, T: float) -> Tuple[Tensor, Tensor]:
    """(TCKD, NCKD) of Decoupled KD, each multiplied by T^2 and averaged over
    the batch.  See :func:`dkd` for every convention."""
    tckd, nckd, _ = _dkd_terms(zs, zt, y, T)
    s = float(T) ** 2
    return s * tckd.mean(), s * nckd.mean()


def dkd(zs: Tensor, zt: Tensor, y: Tensor, alpha: Scalar, beta: Scalar, T: float) -> Tensor:
    """Decoupled Knowledge Distillation, Zhao, Cui, Song, Qiu & Liang, CVPR
    2022 (arXiv:2203.08679), Sec. 3.

    Definitions (Sec. 3.1; the reformulation KD = KL(b^T||b^S) +
    (1 - p_t^T) KL(p^T-hat||p^S-hat) and DKD = alpha*TCKD + beta*NCKD are the
    equations numbered around (5)-(8) in the arXiv version, the brief calls
    them Eq. 5-7 / Eq. 1):
      * p = softmax(z / T) over all K classes, t = y the target class.
      * binary probabilities b = [p_t, p_\\t] with p_\\t = sum_{k != t} p_k.
      * p-hat = softmax over the K-1 non-target logits only:
        p-hat_i = exp(z_i/T) / sum_{j != t} exp(z_j/T), i != t.
      * TCKD = KL(b^T || b^S);  NCKD = KL(p-hat^T || p-hat^S).
      * DKD = alpha * TCKD + beta * NCKD.

    Conventions implemented (released-code convention per the brief):
      * both TCKD and NCKD are multiplied by T^2 and averaged over the batch
        (the paper's equations are per sample and do not write the T^2
        factor; the authors' released code multiplies by T^2 and divides the
        summed KL by B).
      * NCKD is computed EXACTLY over the K-1 non-target classes (gathering the
        non-target logits).  The released code instead subtracts 1000 from
        the target logit (divided by T) and uses a K-way softmax; the two
        agree to machine precision unless |z/T| is of order hundreds.
      * log b is computed in log space (logsumexp of the target and of the
        non-target logits), not as log of summed probabilities as in the
        released code; values agree up to rounding except in the saturated
        regime where the released code's p_\\t underflows.
      * no warm-up factor (min(epoch/warmup, 1)); the caller applies it.
      * alpha and beta may be python floats or tensors of shape (B,): then
        loss = T^2 * mean_i(alpha_i * TCKD_i + beta_i * NCKD_i).  With
        alpha = 1 and beta_i = 1 - p_t^T(teacher)_i this equals hinton_kd
        (paper's KD = TCKD + (1 - p_t^T) NCKD).
    """
    tckd, nckd, _ = _dkd_terms(zs, zt, y, T)
    a = alpha if not isinstance(alpha, Tensor) else alpha.to(tckd)
    b = beta if not isinstance(beta, Tensor) else beta.to(nckd)
    return float(T) ** 2 * (a * tckd + b * nckd).mean()


# ---------------------------------------------------------------------------
# 3. DIST (Huang et al., NeurIPS 2022)
# ---------------------------------------------------------------------------
def pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8, cos_mode: str = "add") -> Tensor:
    """Pearson correlation of each row of a with the same row of b, computed
    as the cosine similarity of the row-mean-centred vectors:

        cos_mode="add"   (default; DIST released code, eps on the product of
                          the norms):   <a_c, b_c> / (||a_c|| * ||b_c|| + eps)
        cos_mode="torch" (what torch.nn.functional.cosine_similarity computes
                          in torch >= 1.12, incl. 2.x: eps clamps EACH norm):
                          <a_c, b_c> / (max(||a_c||, eps) * max(||b_c||, eps))

    With eps = 0 both are the exact Pearson correlation.  The two modes differ
    by a relative ~eps/(||a_c|| ||b_c||), which is NOT negligible at float64
    test tolerances when the centred vectors are small (e.g. near-uniform
    probabilities): a test must pick the mode the implementation uses.
    Norms use torch.linalg.vector_norm (zero subgradient at 0).
    """
    ac = a - a.mean(dim=1, keepdim=True)
    bc = b - b.mean(dim=1, keepdim=True)
    num = (ac * bc).sum(dim=1)
    na = torch.linalg.vector_norm(ac, dim=1)
    nb = torch.linalg.vector_norm(bc, dim=1)
    if cos_mode == "add":
        return num / (na * nb + eps)
    if cos_mode == "torch":
        return num / (na.clamp_min(eps) * nb.clamp_min(eps))
    raise ValueError(f"unknown cos_mode {cos_mode!r}")


def dist_from_probs(ps: Tensor, pt: Tensor, beta: float, gamma: float, T: float,
                    eps: float = 1e-8, cos_mode: str = "add") -> Tensor:
    """DIST loss on given (B, K) "probability" matrices (see :func:`dist`).
    Exposed separately so that the paper's invariance to positive affine
    transforms of the predictions can be tested."""
    inter = 1.0 - pearson_rows(ps, pt, eps, cos_mode).mean()
    intra = 1.0 - pearson_rows(ps.t(), pt.t(), eps, cos_mode).mean()
    return float(T) ** 2 * (beta * inter + gamma * intra)


def dist(zs: Tensor, zt: Tensor, beta: float, gamma: float, T: float,
         eps: float = 1e-8, cos_mode: str = "add") -> Tensor:
    """DIST: "Knowledge Distillation from A Stronger Teacher", Huang, You,
    Wang, Qian & Xu, NeurIPS 2022 (arXiv:2205.10536), Sec. 3-4.

        Y = softmax(Z / T) row-wise, Y^s, Y^t of shape (B, K)
        d_p(u, v) = 1 - rho_p(u, v)                        (Pearson distance)
        L_inter = 1/B sum_i d_p(Y^s_{i,:}, Y^t_{i,:})      (inter-class)
        L_intra = 1/K sum_j d_p(Y^s_{:,j}, Y^t_{:,j})      (intra-class)
        loss    = T^2 * (beta * L_inter + gamma * L_intra)

    (the paper's total objective adds alpha * L_cls, not included here).
    Pearson is computed as the cosine similarity of mean-centred vectors
    (rows centred over classes for L_inter; columns centred over the batch
    for L_intra) with eps in the denominator:
      * cos_mode="add" (default): ||u_c||*||v_c|| + eps, eps added to the
        product of the norms, as in the authors' released code.
      * cos_mode="torch": max(||u_c||, eps) * max(||v_c||, eps), which is what
        torch.nn.functional.cosine_similarity actually computes in torch 2.x
        (its docstring formula; older torch versions used
        max(||u|| ||v||, eps)).  NOTE: the brief describes "eps on the norms'
        product as F.cosine_similarity does"; in torch 2.14 F.cosine_similarity
        clamps each norm separately, so the two descriptions disagree; both
        are provided.
    The paper states d_p with the exact Pearson correlation (no eps); the
    eps only matters for (near) constant vectors.  Needs B >= 2 for L_intra.
    """
    ps = F.softmax(zs / T, dim=1)
    pt = F.softmax(zt / T, dim=1)
    return dist_from_probs(ps, pt, beta, gamma, T, eps, cos_mode)


# ---------------------------------------------------------------------------
# 4. Logit standardisation (Sun et al., CVPR 2024)
# ---------------------------------------------------------------------------
def standardize(z: Tensor, ddof: int = 1, eps: float = 1e-7) -> Tensor:
    """Logit standardisation (Z-score), Sun, Ren, Li, Wang & Cao, "Logit
    Standardization in Knowledge Distillation", CVPR 2024 (arXiv:2403.01427),
    Sec. 3 / Algorithm 1:

        Z(z) = (z - mean_k z) / (eps + std_k z)     per row (last dim)

    * std uses the given ddof: ddof=1 (default) is the released code's
      torch.std (unbiased, divides by K-1); the paper writes the population
      standard deviation sigma = sqrt(1/K sum_k (z_k - mean)^2), i.e. ddof=0.
      The two differ by the constant factor sqrt(K/(K-1)) (apart from eps),
      which acts like a rescaled temperature.
    * eps=1e-7 is added to the std (released code); the paper has no eps.
    * The paper's Z(z; tau) also divides by the base temperature tau; here the
      temperature is applied in :func:`ls_kd` / :func:`hinton_kd`.
    Note: the gradient is NaN for an exactly constant row (std = 0), as for
    torch.std.
    """
    mean = z.mean(dim=-1, keepdim=True)
    std = torch.std(z, dim=-1, keepdim=True, correction=ddof)
    return (z - mean) / (eps + std)


def ls_kd(zs: Tensor, zt: Tensor, T: float, ddof: int = 1, eps: float = 1e-7,
          reduction: str = "batchmean") -> Tensor:
    """KD with logit standardisation (Sun et al., CVPR 2024):
    hinton_kd(standardize(zs), standardize(zt), T), i.e.
    T^2 * KL(softmax(Z(zt)/T) || softmax(Z(zs)/T)) summed over classes and
    averaged over the batch (released code: KL summed over classes, batch
    mean, times T^2).  See :func:`standardize` for ddof/eps conventions.
    With eps=0 the loss is invariant to z -> a*z + b (a > 0) per row for
    either model, the property the paper is built on."""
    return hinton_kd(standardize(zs, ddof, eps), standardize(zt, ddof, eps), T, reduction)


# ---------------------------------------------------------------------------
# 5. FitNets (Romero et al., ICLR 2015)
# ---------------------------------------------------------------------------
def fitnet(fs_regressed: Tensor, ft: Tensor) -> Tensor:
    """FitNets hint loss, Romero, Ballas, Kahou, Chassang, Gatta & Bengio,
    "FitNets: Hints for Thin Deep Nets", ICLR 2015, Eq. 3.

    Implemented (common released convention, F.mse_loss default):
        loss = mean over ALL elements (B*C*H*W) of (r(v) - u)^2
    where fs_regressed = r(v) is the student's guided-layer output after the
    regressor and ft = u the teacher's hint layer output.

    Paper, Eq. 3: L_HT = 1/2 ||u_h(x) - r(v_g(x))||^2 per example.  Averaged
    over the batch that is (C*H*W / 2) * fitnet(...), i.e. the paper's loss
    is the released loss times N/2 with N = number of elements per example
    (see :func:`fitnet_paper`); the factor only rescales the hint weight.
    """
    if fs_regressed.shape != ft.shape:
        raise ValueError("shapes must match")
    return ((fs_regressed - ft) ** 2).mean()


def fitnet_paper(fs_regressed: Tensor, ft: Tensor) -> Tensor:
    """FitNets Eq. 3 literally: 1/2 ||u - r(v)||_2^2 per example (squared
    norm over all non-batch elements), averaged over the batch."""
    d = (fs_regressed - ft).flatten(1)
    return 0.5 * (d ** 2).sum(dim=1).mean()


# ---------------------------------------------------------------------------
# 6. Attention transfer (Zagoruyko & Komodakis, ICLR 2017)
# ---------------------------------------------------------------------------
def at_map(f: Tensor, p: float = 2, eps: float = 1e-12) -> Tensor:
    """Activation-based spatial attention map, Zagoruyko & Komodakis, "Paying
    More Attention to Attention", ICLR 2017, Sec. 3.1 / Eq. 2.

        A = mean over channels of |f|^p    -> (B, H*W)   (flattened spatially)
        Q = A / max(||A||_2, eps)          (l2 normalisation per sample)

    * channel MEAN (released code) instead of the paper's F^p_sum = channel
      SUM: they differ by the constant factor C, which the l2 normalisation
      removes exactly.
    * normalisation as F.normalize (divide by the norm clamped below at
      eps=1e-12); only matters for an all-zero map.
    * p=2 uses f*f (released code's x.pow(2)); other p use |f|^p.
    Returns (B, H*W).
    """
    if f.dim() != 4:
        raise ValueError("feature map must be (B, C, H, W)")
    a = f.pow(2) if p == 2 else f.abs().pow(p)
    a = a.mean(dim=1).flatten(1)
    n = torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(eps)
    return a / n


def at_loss(fs_list: Sequence[Tensor], ft_list: Sequence[Tensor], beta: float,
            p: float = 2) -> Tensor:
    """Attention-transfer loss in the authors' released-code convention:

        loss = beta/2 * sum_j mean_{b, positions} (Q_S^j - Q_T^j)^2

    with Q = at_map(., p) for every (student, teacher) stage pair j; the mean
    is over B*H_j*W_j entries of each pair separately, then summed over pairs.
    Pairs must have equal spatial size (the caller interpolates); channel
    counts may differ.

    Paper, Eq. 2: beta/2 * sum_j || Q_S^j/||Q_S^j|| - Q_T^j/||Q_T^j|| ||_p
    (the p-norm itself, not squared, per example); see :func:`at_loss_paper`.
    For p=2 the released loss per pair equals beta/2 * mean_b ||dQ_b||^2 /
    (H*W), i.e. the squared norm divided by the number of positions, whereas
    the paper uses the (unsquared) norm.  beta is typically 1e3 in the
    released code.
    """
    if len(fs_list) != len(ft_list):
        raise ValueError("need the same number of student and teacher maps")
    total = None
    for fs, ft in zip(fs_list, ft_list):
        if fs.shape[0] != ft.shape[0] or fs.shape[2:] != ft.shape[2:]:
            raise ValueError("stage pairs must share batch and spatial size")
        term = ((at_map(fs, p) - at_map(ft, p)) ** 2).mean()
        total = term if total is None else total + term
    return beta / 2.0 * total


def at_loss_paper(fs_list: Sequence[Tensor], ft_list: Sequence[Tensor], beta: float,
                  p: float = 2) -> Tensor:
    """Attention-transfer loss as written in Eq. 2 of the paper:

        beta/2 * sum_j mean_b || Q_S^j(b) - Q_T^j(b) ||_p

    where Q = at_map(., p) are the l2-normalised vectorised attention maps and
    ||.||_p is the p-norm (not raised to the p-th power) of the difference,
    with the same p as the attention power (the paper uses p = 2 for both).
    The per-example value is averaged over the batch (the paper writes the
    per-example objective).  The norm uses torch.linalg.vector_norm, whose
    subgradient at a zero difference is 0.
    """
    if len(fs_list) != len(ft_list):
        raise ValueError("need the same number of student and teacher maps")
    total = None
    for fs, ft in zip(fs_list, ft_list):
        if fs.shape[0] != ft.shape[0] or fs.shape[2:] != ft.shape[2:]:
            raise ValueError("stage pairs must share batch and spatial size")
        d = at_map(fs, p) - at_map(ft, p)
        term = torch.linalg.vector_norm(d, ord=p, dim=1).mean()
        total = term if total is None else total + term
    return beta / 2.0 * total


# ---------------------------------------------------------------------------
# 7. Relational KD (Park et al., CVPR 2019)
# ---------------------------------------------------------------------------
def huber(x: Tensor, y: Tensor, delta: float = 1.0) -> Tensor:
    """Elementwise Huber loss l_delta(x, y) (RKD Eq. 5), no reduction:
    0.5*(x-y)^2 if |x-y| < delta else delta*(|x-y| - 0.5*delta).
    With delta = 1 this equals F.smooth_l1_loss(beta=1) elementwise."""
    ad = (x - y).abs()
    return torch.where(ad < delta, 0.5 * ad ** 2, delta * (ad - 0.5 * delta))


def rkd_pdist(e: Tensor, eps: float = 1e-12) -> Tensor:
    """(B, B) Euclidean distance matrix with an exact zero diagonal.
    Squared distances are clamped below at eps=1e-12 before the sqrt (as the
    released pdist does) so that coincident distinct points give 1e-6 and a
    finite gradient; the diagonal is set to 0 (no gradient through it)."""
    B = e.shape[0]
    diff = e.unsqueeze(1) - e.unsqueeze(0)  # (B, B, D)
    sq = (diff ** 2).sum(dim=2)
    d = sq.clamp_min(eps).sqrt()
    eye = torch.eye(B, dtype=torch.bool, device=e.device)
    return torch.where(eye, torch.zeros_like(d), d)


def rkd_angles(e: Tensor, eps: float = 1e-12) -> Tensor:
    """(B, B, B) tensor A[j, i, k] = <e_ij, e_kj> = cos of the angle at the
    middle point x_j of the triplet (x_i, x_j, x_k), with unit difference
    vectors e_ij = (x_i - x_j) / ||x_i - x_j|| (RKD Eq. 6).  e_jj = 0, so
    entries with i = j or k = j are 0.  Normalisation divides by the norm
    clamped at eps=1e-12 (F.normalize convention)."""
    diff = e.unsqueeze(0) - e.unsqueeze(1)  # diff[j, i] = x_i - x_j
    n = torch.linalg.vector_norm(diff, dim=2, keepdim=True).clamp_min(eps)
    u = diff / n
    return torch.bmm(u, u.transpose(1, 2))


def rkd_parts(es: Tensor, et: Tensor) -> Tuple[Tensor, Tensor]:
    """(L_dist, L_angle) of Relational KD.  See :func:`rkd`."""
    if es.dim() != 2 or et.dim() != 2 or es.shape[0] != et.shape[0]:
        raise ValueError("embeddings must be (B, D) with the same B")
    B = es.shape[0]
    if B < 2:
        raise ValueError("RKD needs B >= 2")
    n_pairs = B * (B - 1)

    def norm_dist(e):
        d = rkd_pdist(e)
        return d / (d.sum() / n_pairs)  # mean over distinct pairs i != j

    l_dist = huber(norm_dist(es), norm_dist(et)).mean()  # over B*B entries
    l_angle = huber(rkd_angles(es), rkd_angles(et)).mean()  # over B^3 entries
    return l_dist, l_angle


def rkd(es: Tensor, et: Tensor, w_dist: float = 25.0, w_angle: float = 50.0) -> Tensor:
    """Relational Knowledge Distillation, Park, Kim, Lu & Cho, CVPR 2019
    (arXiv:1904.05068), Sec. 3.2, Eq. 4-7, released-code convention:

    Distance (Eq. 4-5):
        psi_D(x_i, x_j) = ||x_i - x_j||_2 / mu,
        mu = mean of ||x_i - x_j|| over the B(B-1) ordered pairs i != j
             (computed separately for student and teacher),
        L_dist = mean over ALL B*B entries (diagonal zeros included) of
                 Huber_1(psi_D^S, psi_D^T).
    Angle (Eq. 6-7):
        psi_A(x_i, x_j, x_k) = <e_ij, e_kj>, e_ij = (x_i-x_j)/||x_i-x_j||,
        e_jj = 0,
        L_angle = mean over ALL B^3 entries of Huber_1(psi_A^S, psi_A^T).
    loss = w_dist * L_dist + w_angle * L_angle.  The defaults 25 / 50 are
    those of the widely used re-implementation in the CRD authors'
    RepDistiller code; the RKD paper/repo (as I recall) use lambda_D = 1,
    lambda_A = 2 for metric learning.  The weights are plain multipliers.

    Paper vs released code: Eq. 5 and Eq. 7 SUM l_delta over the distinct
    pairs X^2 / triplets X^3; the code averages over all B^2 / B^3 index
    tuples.  Degenerate tuples (i = j for the distance; i = j, k = j, or
    i = k for the angle) give identical student/teacher values (0, 0 or 1)
    and contribute 0, so the code = paper sum / B^2 (resp. / B^3).  Huber
    delta = 1 in both.  The released code computes distances from the Gram
    matrix (||a||^2 + ||b||^2 - 2ab, clamped at 1e-12) while this reference
    uses explicit differences (also clamped at 1e-12); they agree to rounding.
    The released code detaches the teacher; here the teacher is not detached
    (pass a detached et).
    """
    l_dist, l_angle = rkd_parts(es, et)
    return w_dist * l_dist + w_angle * l_angle


# ---------------------------------------------------------------------------
# 8. PKT (Passalis & Tefas, ECCV 2018)
# ---------------------------------------------------------------------------
def pkt(es: Tensor, et: Tensor, eps: float = 1e-7) -> Tensor:
    """Probabilistic Knowledge Transfer, Passalis & Tefas, "Learning Deep
    Representations with Probabilistic Knowledge Transfer", ECCV 2018,
    Sec. 3 (cosine-similarity kernel variant), released-code convention:

        x_hat_i = x_i / (||x_i||_2 + eps)
        K_ij    = (x_hat_i . x_hat_j + 1) / 2          all i, j (diag included)
        P_ij    = K_ij / sum_l K_il                    (row i: p_{j|i})
        loss    = mean over all B*B entries of
                  P^t_ij * log((P^t_ij + eps) / (P^s_ij + eps))

    Relation to the paper: the paper minimises
        KL(P^t || P^s) = sum_i sum_{j != i} p^t_{j|i} log(p^t_{j|i}/p^s_{j|i})
    with conditional probabilities normalised over j != i (self-similarity
    excluded) and no eps.  The released convention (a) includes the diagonal
    K_ii = 1 (approx.) both in the row normalisation and in the sum,
    (b) adds eps inside the log, and (c) divides the double sum by B^2 (mean)
    instead of summing.  With eps = 0 the loss equals
    (1/B^2) * sum_i KL(P^t_{i,:} || P^s_{i,:}) over rows that include the
    diagonal.  Norms via torch.linalg.vector_norm.
    """
    def cond_probs(e):
        n = torch.linalg.vector_norm(e, dim=1, keepdim=True)
        u = e / (n + eps)
        k = (u @ u.t() + 1.0) / 2.0
        return k / k.sum(dim=1, keepdim=True)

    ps = cond_probs(es)
    pt = cond_probs(et)
    return (pt * torch.log((pt + eps) / (ps + eps))).mean()


# ---------------------------------------------------------------------------
# 9. CRD (Tian, Krishnan & Isola, ICLR 2020)
# ---------------------------------------------------------------------------
def crd_scores(v: Tensor, memory_other: Tensor, contrast_idx: Tensor, T: float) -> Tensor:
    """Unnormalised CRD scores exp(memory_other[contrast_idx[i,k]] . v[i] / T),
    shape (B, K+1).  memory_other is treated as a constant (detached)."""
    w = memory_other.detach()[contrast_idx.long()]  # (B, K+1, d)
    return torch.exp(torch.einsum("bkd,bd->bk", w, v) / T)


def crd_nce(x: Tensor, n_data: int, eps: float = 1e-7) -> Tensor:
    """NCE loss of CRD on a (B, K+1) score matrix x (positive in column 0),
    m = K negatives, noise Pn = 1/n_data:

        -( sum_i log(x_i0 / (x_i0 + m Pn + eps))
         + sum_{i, k>=1} log(m Pn / (x_ik + m Pn + eps)) ) / B
    """
    B, K1 = x.shape
    m = K1 - 1
    mPn = m / float(n_data)
    pos = x[:, 0]
    neg = x[:, 1:]
    log_d1 = torch.log(pos / (pos + mPn + eps))
    log_d0 = torch.log(mPn / (neg + mPn + eps))
    return -(log_d1.sum() + log_d0.sum()) / B


def crd_loss(vs: Tensor, vt: Tensor, memory_s: Tensor, memory_t: Tensor, idx: Tensor,
             contrast_idx: Tensor, T: float, n_data: int, z_s: float, z_t: float,
             eps: float = 1e-7) -> Tensor:
    """Contrastive Representation Distillation, Tian, Krishnan & Isola, ICLR
    2020 (arXiv:1910.10699), Sec. 3 (critic h and NCE bound, Eq. ~10-19),
    released-code convention (memory banks, both directions, constant Z).

    Inputs: vs, vt (B, d) projected and l2-normalised student/teacher
    embeddings; memory_s, memory_t (n_data, d) banks BEFORE this batch's
    update (constants, no gradient); idx (B,) dataset indices; contrast_idx
    (B, K+1) with column 0 the positive (= idx) and K negatives; T the
    temperature; z_s, z_t the normalisation constants (floats).

        out_t[i,k] = exp(memory_s[contrast_idx[i,k]] . vt[i] / T) / z_t
        out_s[i,k] = exp(memory_t[contrast_idx[i,k]] . vs[i] / T) / z_s
        loss = crd_nce(out_s) + crd_nce(out_t)     (m = K, Pn = 1/n_data)

    Column 0 of contrast_idx is overwritten by idx (as the released memory
    module does); with a consistent contrast_idx this changes nothing.

    Paper vs code: the paper's critic is
        h(T, S) = exp(g_T(t).g_S(s)/tau) / (exp(g_T(t).g_S(s)/tau) + N/M)
    (N negatives, M dataset size) with
        L = -E_pos[log h] - N E_neg[log(1 - h)].
    Writing x = exp(.)/Z, the code's D = x/(x + m Pn) equals h with the
    exponential divided by the constant Z (Z = 1 recovers the paper's h
    exactly; the eps=1e-7 is a code addition).  The code pairs each embedding
    with the OTHER model's momentum memory bank rather than with current
    embeddings, uses both directions (student anchor / teacher bank and
    teacher anchor / student bank) and sums them, and averages over the
    batch (sum over the K negatives = N * E_neg).
    Gradients flow to vs and vt only.
    """
    ci = contrast_idx.long().clone()
    ci[:, 0] = idx.long()
    out_s = crd_scores(vs, memory_t, ci, T) / z_s
    out_t = crd_scores(vt, memory_s, ci, T) / z_t
    return crd_nce(out_s, n_data, eps) + crd_nce(out_t, n_data, eps)


def crd_z(scores_exp: Tensor, n_data: int, already_exp: bool = True) -> float:
    """Normalisation constant of CRD, set once on the first batch:
    Z = mean(exp(scores)) * n_data (mean over all B*(K+1) entries).
    scores_exp is the matrix of exponentiated scores exp(w.v/T) (e.g. the
    output of :func:`crd_scores`); pass already_exp=False to give raw
    dot-products/T instead.  Returned as a python float (a constant, as in
    the released code)."""
    s = scores_exp.detach()
    if not already_exp:
        s = torch.exp(s)
    return float(s.mean().item() * n_data)


def crd_update(memory: Tensor, idx: Tensor, v: Tensor, momentum: float = 0.5) -> Tensor:
    """Momentum update of a CRD memory bank, returning a NEW tensor:
    rows idx become l2-normalise(momentum * memory[idx] + (1 - momentum) * v),
    other rows unchanged.  v is detached.  idx is assumed to have no
    duplicates (the released index_copy_ is ill-defined with duplicates)."""
    idx = idx.long()
    new = memory.detach().clone()
    rows = momentum * memory.detach()[idx] + (1.0 - momentum) * v.detach()
    rows = rows / rows.pow(2).sum(dim=1, keepdim=True).pow(0.5)
    new[idx] = rows
    return new


# ---------------------------------------------------------------------------
# 10. Multi-label KD
# ---------------------------------------------------------------------------
def multilabel_kd(zs: Tensor, zt: Tensor, T: float) -> Tensor:
    """Multi-label distillation: per-label binary KL between the teacher's and
    the student's softened sigmoids (the per-label two-class analogue of
    Hinton et al.'s KD; equivalently hinton_kd applied to each label's
    two-class logits [z/T, 0]):

        q = sigmoid(zt/T), p = sigmoid(zs/T)
        loss = T^2 * mean_b sum_k [ q log(q/p) + (1-q) log((1-q)/(1-p)) ]

    Computed stably with log q = logsigmoid(zt/T), log(1-q) =
    logsigmoid(-zt/T) (same for p), so it is finite for any finite logits.
    Summed over all label dimensions after the batch dimension, averaged over
    the batch.  Not from a single paper's equation; convention as given.
    """
    if zs.shape != zt.shape:
        raise ValueError("shapes must match")
    s = zs / T
    t = zt / T
    log_p, log_1mp = F.logsigmoid(s), F.logsigmoid(-s)
    log_q, log_1mq = F.logsigmoid(t), F.logsigmoid(-t)
    q, one_m_q = log_q.exp(), log_1mq.exp()
    kl = q * (log_q - log_p) + one_m_q * (log_1mq - log_1mp)
    return float(T) ** 2 * kl.flatten(1).sum(dim=1).mean()
