"""Losses against straightforward loop implementations (float64, math.exp), plus invariants."""
import itertools
import math

import pytest
import torch

from motionssl.models.losses import (
    appearance_loss,
    cip_loss,
    mip_loss,
    mip_similarity,
    moquad_loss,
    nt_xent_loss,
    num_hard_negatives,
)

DIM = 8
TOL = dict(rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- references
def _unit(rows):
    out = []
    for row in rows.tolist():
        norm = math.sqrt(sum(v * v for v in row))
        out.append([v / norm for v in row])
    return out


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def ref_k(beta, n):
    """K of Eq. 3 as documented: round half up, at least one when beta > 0."""
    if beta == 0 or n == 0:
        return 0
    return min(n, max(1, int(beta * n + 0.5)))


def ref_moquad(anchor, positive, intra, tau, beta, alpha):
    """Per-anchor Eq. 1 (beta == 0) and Eq. 4."""
    a, p = _unit(anchor), _unit(positive)
    intra = [_unit(m) for m in intra]
    members = [a, p] + intra
    b = len(a)
    losses = []
    for i in range(b):
        def e(u):
            return math.exp(_dot(a[i], u) / tau)

        pos = e(p[i])
        s_intra = [e(m[i]) for m in intra]
        s_inter = [e(m[j]) for j in range(b) if j != i for m in members]
        if beta > 0:
            k = ref_k(beta, len(s_inter))
            ranked = sorted(s_inter, reverse=True)
            denom = pos + alpha * sum(s_intra) + alpha * sum(ranked[:k]) + sum(ranked[k:])
        else:
            denom = pos + sum(s_intra) + sum(s_inter)
        losses.append(-math.log(pos / denom))
    return losses


def ref_appearance(z_n, z_m, tau):
    n, m = _unit(z_n), _unit(z_m)
    b = len(n)
    losses = []
    for i in range(b):
        pos = math.exp(_dot(n[i], m[i]) / tau)
        neg = sum(math.exp(_dot(n[i], s[j]) / tau) for j in range(b) if j != i for s in (n, m))
        losses.append(-math.log(pos / (pos + neg)))
    return losses


def ref_nt_xent(z1, z2, tau):
    """Per anchor, ordered (video 0 view 1, video 0 view 2, video 1 view 1, ...)."""
    one, two = _unit(z1), _unit(z2)
    views = [v for pair in zip(one, two) for v in pair]
    losses = []
    for k in range(len(views)):
        partner = k + 1 if k % 2 == 0 else k - 1
        pos = math.exp(_dot(views[k], views[partner]) / tau)
        denom = sum(math.exp(_dot(views[k], views[j]) / tau) for j in range(len(views)) if j != k)
        losses.append(-math.log(pos / denom))
    return losses


def ref_mip(r, l1, l2, margin, kind, tau):
    if kind == "dot":
        rr, a, c = r.tolist(), l1.tolist(), l2.tolist()
        scale = 1.0
    else:
        rr, a, c = _unit(r), _unit(l1), _unit(l2)
        scale = 1 / tau if kind == "cosine_over_tau" else 1.0
    return [max(margin - scale * (_dot(rr[i], a[i]) - _dot(rr[i], c[i])), 0.0) for i in range(len(rr))]


def ref_cip(r, l, tau):
    rr, ll = _unit(r), _unit(l)
    b = len(rr)
    losses = []
    for i in range(b):
        pos = math.exp(_dot(rr[i], ll[i]) / tau)
        denom = sum(math.exp(_dot(rr[i], ll[j]) / tau) for j in range(b))
        losses.append(-math.log(pos / denom))
    return losses


def check(loss_fn, reference, *args, **kwargs):
    """Both reductions of `loss_fn` against the per-anchor loop reference."""
    per_anchor = loss_fn(*args, reduction="none", **kwargs)
    assert per_anchor.dtype == torch.float64
    torch.testing.assert_close(per_anchor, torch.tensor(reference, dtype=torch.float64), **TOL)
    torch.testing.assert_close(loss_fn(*args, **kwargs).item(), sum(reference) / len(reference), **TOL)


def feats(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, DIM, generator=g, dtype=torch.float64) for _ in range(n)]


# ---------------------------------------------------------------- equalities
BATCHES = [1, 2, 3, 6]
TAUS = [0.07, 0.5]
MINING = [(0.0, 1.5), (0.0, 0.0), (0.01, 1.5), (0.1, 2.0), (0.3, 1.0), (0.5, 1.5), (1.0, 3.0)]
MEMBERS = ["full", "no_ad", "no_intra"]


@pytest.mark.parametrize("b,tau,mining,members", list(itertools.product(BATCHES, TAUS, MINING, MEMBERS)))
def test_moquad_matches_loop(b, tau, mining, members):
    beta, alpha = mining
    a, p, n, nbar = feats(b, 4, seed=b * 100 + int(tau * 100))
    intra = {"full": [n, nbar], "no_ad": [n], "no_intra": []}[members]
    check(moquad_loss, ref_moquad(a, p, intra, tau, beta, alpha), a, p, *intra,
          temperature=tau, beta=beta, alpha=alpha)


def test_moquad_only_ad_intra_negative():
    a, p, nbar = feats(4, 3, seed=7)
    check(moquad_loss, ref_moquad(a, p, [nbar], 0.2, 0.1, 2.0), a, p, None, nbar,
          temperature=0.2, beta=0.1, alpha=2.0)


@pytest.mark.parametrize("b,tau", list(itertools.product(BATCHES, TAUS)))
def test_appearance_matches_loop(b, tau):
    z_n, z_m = feats(b, 2, seed=b)
    check(appearance_loss, ref_appearance(z_n, z_m, tau), z_n, z_m, temperature=tau)


@pytest.mark.parametrize("b,tau", list(itertools.product(BATCHES, TAUS)))
def test_nt_xent_matches_loop(b, tau):
    z1, z2 = feats(b, 2, seed=b + 1)
    check(nt_xent_loss, ref_nt_xent(z1, z2, tau), z1, z2, temperature=tau)


@pytest.mark.parametrize(
    "b,tau,kind,margin",
    list(itertools.product(BATCHES, TAUS, ["cosine_over_tau", "cosine", "dot"], [2.0, 0.5])),
)
def test_mip_matches_loop(b, tau, kind, margin):
    r, l1, l2 = feats(b, 3, seed=b + 2)
    check(mip_loss, ref_mip(r, l1, l2, margin, kind, tau), r, l1, l2,
          margin=margin, similarity=kind, temperature=tau)


@pytest.mark.parametrize("b,tau", list(itertools.product(BATCHES, TAUS)))
def test_cip_matches_loop(b, tau):
    r, l = feats(b, 2, seed=b + 3)
    check(cip_loss, ref_cip(r, l, tau), r, l, temperature=tau)


# ---------------------------------------------------------------- invariants
def test_num_hard_negatives_rounding():
    assert num_hard_negatives(0.01, 4 * 255) == 10  # the paper's B = 256
    assert num_hard_negatives(0.01, 28) == 1  # small batch: at least one
    assert num_hard_negatives(0.5, 3) == 2  # 1.5 rounds up, not to even
    assert num_hard_negatives(0.25, 10) == 3  # 2.5 rounds up
    assert num_hard_negatives(0.0, 1000) == 0
    assert num_hard_negatives(1.0, 12) == 12
    assert num_hard_negatives(0.3, 0) == 0


@pytest.mark.parametrize("beta", [0.0, 0.01, 0.2, 0.5, 1.0])
def test_alpha_one_is_eq1_for_any_beta(beta):
    a, p, n, nbar = feats(5, 4, seed=11)
    eq1 = moquad_loss(a, p, n, nbar, beta=0.0, reduction="none")
    torch.testing.assert_close(moquad_loss(a, p, n, nbar, beta=beta, alpha=1.0, reduction="none"), eq1, **TOL)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, 3.0])
def test_beta_zero_is_eq1_for_any_alpha(alpha):
    a, p, n, nbar = feats(5, 4, seed=12)
    eq1 = torch.tensor(ref_moquad(a, p, [n, nbar], 0.1, 0.0, 1.0), dtype=torch.float64)
    torch.testing.assert_close(moquad_loss(a, p, n, nbar, beta=0.0, alpha=alpha, reduction="none"), eq1, **TOL)


def test_mining_with_alpha_above_one_raises_every_anchor_loss():
    a, p, n, nbar = feats(6, 4, seed=13)
    mined = moquad_loss(a, p, n, nbar, beta=0.1, alpha=1.5, reduction="none")
    assert (mined > moquad_loss(a, p, n, nbar, beta=0.0, reduction="none")).all()


LOSSES = {
    "moquad_eq4": (lambda *t, **kw: moquad_loss(*t, beta=0.2, alpha=1.5, **kw), 4),
    "moquad_no_ad": (lambda *t, **kw: moquad_loss(*t, beta=0.0, **kw), 3),
    "appearance": (appearance_loss, 2),
    "cip": (cip_loss, 2),
    "mip": (mip_loss, 3),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_reordering_other_videos_leaves_anchor_loss_unchanged(name):
    loss_fn, n = LOSSES[name]
    tensors = feats(6, n, seed=14)
    perm = torch.tensor([0, 4, 2, 5, 1, 3])  # anchor 0 stays, the others move
    before = loss_fn(*tensors, reduction="none")
    after = loss_fn(*(t[perm] for t in tensors), reduction="none")
    torch.testing.assert_close(after, before[perm], **TOL)


def test_nt_xent_reordering_videos():
    z1, z2 = feats(6, 2, seed=15)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    before = nt_xent_loss(z1, z2, reduction="none").view(6, 2)
    after = nt_xent_loss(z1[perm], z2[perm], reduction="none").view(6, 2)
    torch.testing.assert_close(after, before[perm], **TOL)


def test_all_members_of_other_videos_are_equal_negatives():
    """Eq. 1: z_j covers A, P, N and Nbar of video j alike, so swapping roles
    inside another video leaves the anchor's loss unchanged."""
    a, p, n, nbar = feats(5, 4, seed=16)
    swapped = [t.clone() for t in (a, p, n, nbar)]
    swapped[0][3], swapped[1][3], swapped[2][3], swapped[3][3] = nbar[3], a[3], p[3], n[3]
    for kwargs in (dict(beta=0.0), dict(beta=0.2, alpha=2.0)):
        before = moquad_loss(a, p, n, nbar, reduction="none", **kwargs)
        after = moquad_loss(*swapped, reduction="none", **kwargs)
        torch.testing.assert_close(after[[0, 1, 2, 4]], before[[0, 1, 2, 4]], **TOL)


def test_margin_of_two_is_reachable_only_over_tau():
    r = torch.tensor([[1.0, 0.0, 0.0]])
    l1, l2 = r.clone(), torch.tensor([[0.0, 1.0, 0.0]])
    assert mip_loss(r, l1, l2, similarity="cosine_over_tau", temperature=0.07) == 0
    torch.testing.assert_close(mip_loss(r, l1, l2, similarity="cosine"), torch.tensor(1.0))


def test_loss_options_are_validated():
    a, p = feats(3, 2, seed=17)
    with pytest.raises(ValueError, match="beta"):
        moquad_loss(a, p, beta=1.5)
    with pytest.raises(ValueError, match="alpha"):
        moquad_loss(a, p, beta=0.1, alpha=0.0)
    with pytest.raises(ValueError, match="cosine_over_tau"):
        mip_similarity(a, p, "euclid")
    with pytest.raises(ValueError, match="mean"):
        cip_loss(a, p, reduction="sum")


def test_half_precision_features_are_computed_in_float32():
    a, p, n, nbar = (t.to(torch.bfloat16) for t in feats(4, 4, seed=18))
    got = moquad_loss(a, p, n, nbar)
    assert got.dtype == torch.float32
    want = moquad_loss(*(t.double() for t in (a, p, n, nbar)))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ training
@pytest.mark.parametrize(
    "name,n,loss_fn",
    [
        ("moquad_eq1", 4, lambda a, p, n, nb: moquad_loss(a, p, n, nb, beta=0.0)),
        ("moquad_eq4", 4, lambda a, p, n, nb: moquad_loss(a, p, n, nb)),
        ("moquad_no_intra", 2, lambda a, p: moquad_loss(a, p)),
        ("appearance", 2, appearance_loss),
        ("nt_xent", 2, nt_xent_loss),
        ("mip", 3, mip_loss),
        ("cip", 2, cip_loss),
    ],
)
def test_loss_falls_on_learnable_features(name, n, loss_fn):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(16, 32)) for _ in range(n)]
    optimizer = torch.optim.SGD(params, lr=0.5)
    losses = []
    for _ in range(20):
        loss = loss_fn(*params)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], (name, losses[0], losses[-1])
