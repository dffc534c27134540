"""Contrastive losses of MoQuad, MCPNet and SimCLR as pure functions.

Every loss takes projection-head outputs (unnormalised; the losses normalise
where the paper does) and returns a scalar averaged over the local anchors
(per-anchor losses with reduction="none"). With `gather=True` the negatives
come from the clips of every rank (models/distributed.py; a no-op in a
single process).

The papers write their objectives as sums over the batch; we average, which
only rescales the learning rate and keeps the loss independent of the batch
size.

Papers: MoQuad = Liu et al., "Motion-focused Quadruple Construction for Video
Contrastive Learning"; MCPNet = "Motion-Contrastive Perception Network"
(arXiv 2204.04607). Equation numbers refer to those papers.
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from motionssl.models.distributed import maybe_gather

REDUCTIONS = ("mean", "none")


def _float32_loss(loss_fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run `loss_fn` in at least float32, also inside an autocast region.

    A logsumexp over thousands of candidates at 1/tau ~ 10 loses too much in
    float16/bfloat16; float64 inputs stay float64 (the tests use that).
    """

    def upcast(x):
        if isinstance(x, Tensor) and x.is_floating_point():
            return x.to(torch.promote_types(x.dtype, torch.float32))
        return x

    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        device = next(a.device.type for a in (*args, *kwargs.values()) if isinstance(a, Tensor))
        # Devices without autocast (e.g. "meta", the tests' stand-in for CUDA) need no guard.
        guard = torch.autocast(device_type=device, enabled=False) if torch.amp.is_autocast_available(device) \
            else contextlib.nullcontext()
        with guard:
            return loss_fn(*map(upcast, args), **{k: upcast(v) for k, v in kwargs.items()})

    return wrapper


def _reduce(per_anchor: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_anchor.mean()
    if reduction == "none":
        return per_anchor
    raise ValueError(f"unknown reduction {reduction!r}; choose one of {list(REDUCTIONS)}")


def _info_nce(logits: Tensor, positive: Tensor, log_weights: Tensor | None = None) -> Tensor:
    """Per row, -log(exp(l_ip) / sum_j w_ij exp(l_ij)).

    Args:
        logits: (N, K) similarities divided by the temperature.
        positive: (N,) int64, the column p of each row's positive.
        log_weights: (N, K) log w_ij, or None for all weights 1. A weight of
            0 (log = -inf) drops a candidate, e.g. the anchor itself. The
            positive's weight must be 1 so that it appears in the denominator
            exactly as in the numerator.

    Returns:
        (N,) losses.
    """
    pos = logits.gather(1, positive[:, None]).squeeze(1)
    denominator = logits if log_weights is None else logits + log_weights
    return torch.logsumexp(denominator, dim=1) - pos


def num_hard_negatives(beta: float, num_inter: int) -> int:
    """K of MoQuad Eq. 3: how many inter-video negatives count as hard.

    The paper sets K = beta * (number of inter negatives of an anchor) without
    saying how to round. We round half up and keep at least one when
    beta > 0: K = min(n, max(1, floor(beta * n + 0.5))).
    - At the paper's setting (B = 256, full quadruples, n = 4 * 255 = 1020,
      beta = 0.01) this gives K = 10, the same as truncation would.
    - Round-half-up rather than Python's round(), whose banker's rounding makes
      K jump unevenly (round(0.5) = 0, round(1.5) = 2).
    - The floor of one keeps "beta > 0" meaning "mining on" in the small
      batches of demos and tests (B = 8: n = 28, beta * n = 0.28 -> K = 1),
      instead of silently mining nothing while still up-weighting the intra
      negatives; beta = 0 is the only way to switch mining off.
    """
    if beta == 0 or num_inter == 0:
        return 0
    return min(num_inter, max(1, math.floor(beta * num_inter + 0.5)))


@_float32_loss
def moquad_loss(
    anchor: Tensor,
    positive: Tensor,
    intra_neg: Tensor | None = None,
    intra_neg_ad: Tensor | None = None,
    *,
    temperature: float = 0.1,
    beta: float = 0.01,
    alpha: float = 1.5,
    gather: bool = True,
    reduction: str = "mean",
) -> Tensor:
    """MoQuad instance discrimination with the quadruple, Eq. 1 and Eq. 3-4.

    For anchor i the positive is exp(z_iA . zbar_iP / tau); the denominator
    adds the positive, the intra-video negatives S_Intra = {z_iN, zbar_iN}
    and the inter-video negatives S_Inter = every member (A, P, N, Nbar) of
    every other video j != i of the (global) batch.

    Hard-negative mining (Eq. 3-4, the weights of `_mining_log_weights`), on
    when beta > 0: the K hardest inter negatives and the intra negatives get
    weight alpha in the denominator; beta = 0 or alpha = 1 gives Eq. 1.

    The intra negatives may be left out (None) for the ablation of Table 4;
    without both, this is plain instance discrimination with an
    appearance-disturbed positive (Table 4, second row). The inter negatives
    are then the members that are present.

    Args:
        anchor: (B, D) projections z_A of the anchor clips.
        positive: (B, D) projections of the appearance-disturbed positives.
        intra_neg: (B, D) projections of the other-speed clips, or None.
        intra_neg_ad: (B, D) projections of the other-speed clips with
            appearance disturbance, or None.
        temperature: tau.
        beta: fraction of inter negatives treated as hard (paper: 0.01).
        alpha: weight of hard and intra negatives when beta > 0 (paper: 1.5).
        gather: take inter negatives from every rank.
        reduction: "mean" or "none".

    Returns:
        Scalar, -log of the ratio averaged over the B local anchors (the paper
        sums; averaging only rescales the learning rate); (B,) per anchor
        with reduction="none".
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    if beta > 0 and alpha <= 0:
        raise ValueError(f"alpha must be > 0 when mining hard negatives (beta > 0), got {alpha}")

    members = [anchor, positive] + [m for m in (intra_neg, intra_neg_ad) if m is not None]
    z = F.normalize(torch.stack(members, dim=1), dim=-1)  # (B, M, D), member 0 = anchor
    z_all, offset = maybe_gather(z, gather)  # (Bg, M, D)
    batch, num_members = z.shape[:2]

    logits = torch.einsum("bd,nmd->bnm", z[:, 0], z_all) / temperature  # (B, Bg, M)
    own = offset + torch.arange(batch, device=z.device)  # global index of each anchor's own video
    log_weights = _mining_log_weights(logits, own, beta, alpha)
    positive_col = own * num_members + 1  # member 1 = positive
    return _reduce(_info_nce(logits.flatten(1), positive_col, log_weights.flatten(1)), reduction)


def _mining_log_weights(logits: Tensor, own: Tensor, beta: float, alpha: float) -> Tensor:
    """log w of every candidate of MoQuad's denominator (Eq. 3-4), shaped like `logits`.

    `logits` is (B, Bg, M): each local anchor against every member of every
    video of the global batch; `own` (B,) is each anchor's own video. Every
    weight is 1 but the anchor's own (0: not its own candidate). With
    hard-negative mining on (beta > 0) the intra negatives and the K most
    similar inter negatives of each anchor (K from `num_hard_negatives`) get
    weight alpha. beta = 0 switches mining off and gives Eq. 1 whatever alpha
    is: the paper's Table 6 (left) lists that baseline as "beta = 0, alpha =
    0", which names the Eq. 1 entry of Table 4, not a zero weight on the
    intra negatives. alpha = 1 also gives Eq. 1, for any beta.
    """
    batch, num_videos, num_members = logits.shape
    rows = torch.arange(batch, device=logits.device)
    log_weights = torch.zeros_like(logits)
    log_weights[rows, own, 0] = -math.inf  # the anchor is not its own candidate
    if beta > 0:
        log_alpha = math.log(alpha)
        log_weights[rows, own, 2:] = log_alpha  # S_Intra
        num_inter = num_members * (num_videos - 1)
        k = num_hard_negatives(beta, num_inter)
        if k > 0:
            # TopK of exp(s / tau) is TopK of s; the selection carries no gradient.
            inter = logits.detach().clone()
            inter[rows, own] = -math.inf
            hard = inter.flatten(1).topk(k, dim=1).indices  # (B, K)
            log_weights.view(batch, -1).scatter_(1, hard, log_alpha)
    return log_weights


@_float32_loss
def appearance_loss(
    z_n: Tensor, z_m: Tensor, *, temperature: float = 0.1, gather: bool = True, reduction: str = "mean"
) -> Tensor:
    """MoQuad appearance task for the warm-up (Eq. 2, Algorithm 1).

    Two clips of each video i at dilations n and m; z_i^n is the anchor,
    z_i^m its positive, and both clips z_j^n, z_j^m of every other video j
    are the negatives (z_i^n itself is not a candidate).

    Args:
        z_n: (B, D) projections of the clips at dilation n (anchors).
        z_m: (B, D) projections of the clips at dilation m (positives).
        temperature: tau.
        gather: take negatives from every rank.
        reduction: "mean" or "none".

    Returns:
        Scalar, averaged over the B local anchors; (B,) with reduction="none".
    """
    z = F.normalize(torch.stack([z_m, z_n], dim=1), dim=-1)  # (B, 2, D): column 0 = m, 1 = n
    z_all, offset = maybe_gather(z, gather)
    batch = z.shape[0]

    logits = torch.einsum("bd,nsd->bns", z[:, 1], z_all) / temperature  # (B, Bg, 2)
    rows = torch.arange(batch, device=z.device)
    own = offset + rows
    log_weights = torch.zeros_like(logits)
    log_weights[rows, own, 1] = -math.inf  # z_i^n itself
    return _reduce(_info_nce(logits.flatten(1), own * 2, log_weights.flatten(1)), reduction)


@_float32_loss
def nt_xent_loss(
    z1: Tensor, z2: Tensor, *, temperature: float = 0.1, gather: bool = True, reduction: str = "mean"
) -> Tensor:
    """SimCLR NT-Xent over 2B views (Chen et al. 2020, Eq. 1).

    Each of the 2B views is an anchor; its positive is the other view of the
    same video and its negatives are the 2(B - 1) views of the other videos.

    Args:
        z1, z2: (B, D) projections of the two views.
        temperature: tau.
        gather: take negatives from every rank.
        reduction: "mean" or "none".

    Returns:
        Scalar, averaged over the 2B local anchors; (2B,) with
        reduction="none", ordered (video 0 view 1, video 0 view 2, video 1 ...).
    """
    z = F.normalize(torch.stack([z1, z2], dim=1), dim=-1)  # (B, 2, D)
    z_all, offset = maybe_gather(z, gather)
    batch = z.shape[0]

    logits = z.flatten(0, 1) @ z_all.flatten(0, 1).T / temperature  # (2B, 2Bg), rows (i, view)
    rows = torch.arange(2 * batch, device=z.device)
    own_video, view = offset + rows // 2, rows % 2
    log_weights = torch.zeros_like(logits)
    log_weights[rows, own_video * 2 + view] = -math.inf  # the view itself
    return _reduce(_info_nce(logits, own_video * 2 + (1 - view), log_weights), reduction)


def _cosine(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    return F.cosine_similarity(a, b, dim=-1)


def _cosine_over_tau(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    return F.cosine_similarity(a, b, dim=-1) / temperature


def _dot(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    return (a * b).sum(dim=-1)


MIP_SIMILARITIES = {"cosine_over_tau": _cosine_over_tau, "cosine": _cosine, "dot": _dot}


def mip_similarity(a: Tensor, b: Tensor, kind: str = "cosine_over_tau", temperature: float = 0.07) -> Tensor:
    """Row-wise sim(a_i, b_i) (B,) for MCPNet's MIP branch; see `mip_loss`."""
    if kind not in MIP_SIMILARITIES:
        raise ValueError(f"unknown MIP similarity {kind!r}; choose one of {sorted(MIP_SIMILARITIES)}")
    return MIP_SIMILARITIES[kind](a, b, temperature)


@_float32_loss
def mip_loss(
    r: Tensor,
    l1: Tensor,
    l2: Tensor,
    *,
    margin: float = 2.0,
    similarity: str = "cosine_over_tau",
    temperature: float = 0.07,
    reduction: str = "mean",
) -> Tensor:
    """MCPNet Motion Information Perception, triplet loss Eq. 3.

    max(gamma - (sim(f_r, f_l1) - sim(f_r, f_l2)), 0) per video, averaged:
    the RGB clip r must be closer to the residual clip at its own speed (l1)
    than to the residual clip at another speed (l2) by the margin gamma.

    Choice of sim (`similarity`):
    - "cosine_over_tau" (default): cosine similarity divided by the
      temperature. The paper calls sim a dot product; on L2-normalised
      features a difference of cosines reaches 2 only at l1 = r, l2 = -r
      exactly, so gamma = 2 is never met and the hinge never switches off
      (and with unnormalised features the margin is scale-dependent). RSPNet's
      public code,
      on which MCPNet builds, feeds normalised q.k / T to its margin ranking
      loss (moco/builder_diffspeed_diffloss.py); we follow it.
    - "cosine": plain cosine similarity (the paper read literally with
      normalised features).
    - "dot": raw dot product of the unnormalised head outputs.

    Args:
        r: (B, D) g_m projections of the RGB clips at speed s_r.
        l1: (B, D) g_m projections of the residual clips at speed s_r.
        l2: (B, D) g_m projections of the residual clips at another speed.
        margin: gamma (paper: 2.0).
        similarity: one of MIP_SIMILARITIES.
        temperature: tau, used by "cosine_over_tau" only.
        reduction: "mean" or "none".

    Returns:
        Scalar, averaged over the B videos; (B,) with reduction="none". No
        negatives from other videos, so nothing to gather.
    """
    s1 = mip_similarity(r, l1, similarity, temperature)
    s2 = mip_similarity(r, l2, similarity, temperature)
    return _reduce(F.relu(margin - (s1 - s2)), reduction)


@_float32_loss
def cip_loss(
    r: Tensor, l: Tensor, *, temperature: float = 0.07, gather: bool = True, reduction: str = "mean"
) -> Tensor:
    """MCPNet Contrastive Instance Perception, InfoNCE Eq. 4.

    -log(exp(sim(f_r_i, f_l_i) / tau) / sum_j exp(sim(f_r_i, f_l_j) / tau)),
    with sim the cosine similarity; j runs over the residual clips of the
    whole (global) batch, the positive included.

    Args:
        r: (B, D) g_c projections of the RGB clips (anchors).
        l: (B, D) g_c projections of the residual clips (l_i is r_i's positive).
        temperature: tau.
        gather: take negatives from every rank.
        reduction: "mean" or "none".

    Returns:
        Scalar, averaged over the B local anchors; (B,) with reduction="none".
    """
    r, l = F.normalize(r, dim=-1), F.normalize(l, dim=-1)
    l_all, offset = maybe_gather(l, gather)
    logits = r @ l_all.T / temperature  # (B, Bg)
    return _reduce(_info_nce(logits, offset + torch.arange(r.shape[0], device=r.device)), reduction)
