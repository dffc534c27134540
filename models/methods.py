"""Self-supervised methods: backbone + projection head(s) + loss, one nn.Module each.

`forward(batch)` takes a batch dict of the pipelines' contract (clips
(B, C, T, H, W); `label` and `index` ride along unused) and returns a dict
with `loss` (differentiable), its parts and cheap diagnostics (detached).
The training loop is then method-agnostic:

    method = create_method("moquad", backbone="r3d_18")
    out = method(batch)
    out["loss"].backward()
"""
from __future__ import annotations

import copy
import inspect
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionssl.models.backbones import VideoBackbone, create_backbone
from motionssl.models.heads import MCPNetHeads, ProjectionHead
from motionssl.models.losses import (
    MIP_SIMILARITIES,
    appearance_loss,
    cip_loss,
    mip_loss,
    mip_similarity,
    moquad_loss,
    nt_xent_loss,
)


def encode_views(backbone: nn.Module, views: Sequence[Tensor]) -> list[Tensor]:
    """Backbone features of several views of a batch, one call per clip shape.

    Args:
        backbone: maps (N, C, T, H, W) clips to (N, F) features.
        views: clips (B, C, T, H, W), one tensor per view.

    Returns:
        One (B, F) tensor per view, in order.

    Views of equal shape go through the backbone as one concatenated batch:
    fewer, larger kernels, and BatchNorm then normalises with statistics over
    all views together, as SimCLR does with its two views.
    """
    groups: dict[torch.Size, list[int]] = {}
    for i, view in enumerate(views):
        groups.setdefault(view.shape, []).append(i)
    features: list[Tensor] = [None] * len(views)  # type: ignore[list-item]
    for members in groups.values():
        out = backbone(as_backbone_input(torch.cat([views[i] for i in members]), backbone))
        for i, f in zip(members, out.chunk(len(members))):
            features[i] = f
    return features


class OwnNorms(nn.Module):
    """A second set of BatchNorm parameters and statistics for a shared backbone.

    MCPNet feeds RGB clips and residual clips — near-zero frames with sparse bright
    edges — through one encoder. With one set of BatchNorm layers the running statistics
    become a mixture of both kinds, which is what the backbone then normalises *RGB*
    clips with at evaluation. ``encode`` runs the backbone with these norms swapped in
    (``torch.func.functional_call``), so the residual clips get their own scale, shift and
    running statistics and the backbone's own BatchNorm layers — the ones saved with it
    and evaluated — see RGB clips only. The convolutions stay shared.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        norms = {name: m for name, m in backbone.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)}
        if not norms:
            raise ValueError("method.residual_bn=own needs a backbone with BatchNorm layers")
        self.names = list(norms)
        self.norms = nn.ModuleDict({name.replace(".", "__"): copy.deepcopy(m) for name, m in norms.items()})

    def tensors(self) -> dict[str, Tensor]:
        out = {}
        for name in self.names:
            norm = self.norms[name.replace(".", "__")]
            for key, value in [*norm.named_parameters(recurse=False), *norm.named_buffers(recurse=False)]:
                out[f"{name}.{key}"] = value
        return out

    def encode(self, backbone: nn.Module, clips: Tensor) -> Tensor:
        """``backbone(clips)`` with these norms in place of its own (their statistics update in training)."""
        return torch.func.functional_call(backbone, self.tensors(), (as_backbone_input(clips, backbone),))


RESIDUAL_BN = ("joint", "split", "own")


def as_backbone_input(clips: Tensor, backbone: nn.Module) -> Tensor:
    """Clips in the dtype and memory layout the backbone computes in, in one copy at most.

    Pipelines hand over float16 clips on the GPU. Under autocast the convolutions run in
    the autocast dtype (bfloat16 in train.py), so the clips go straight to it rather than
    up to float32 and back down; outside autocast they take the weights' dtype. A backbone
    whose weights are channels-last (:func:`models.backbones.to_channels_last`) gets its
    input in that layout in the same copy.
    """
    device_type = clips.device.type
    autocast = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
    dtype = torch.get_autocast_dtype(device_type) if autocast else next(backbone.parameters()).dtype
    if getattr(backbone, "channels_last", False) and clips.ndim == 5:
        return clips.to(dtype=dtype, memory_format=torch.channels_last_3d)
    return clips.to(dtype)


@torch.no_grad()
def own_video_ranks(anchor: Tensor, members: Tensor, exclude: int | None = None) -> Tensor:
    """Rank of each clip of the anchor's own video among all its candidates.

    Candidates of anchor i are all clips (j, m) of the local batch, except
    member `exclude` of video i (the anchor itself, when it is one of the
    members). Rank 1 = most similar (cosine). MoQuad Fig. 4 plots the mean
    rank of the positive and of the intra negatives this way.

    Args:
        anchor: (B, D) anchor projections.
        members: (B, M, D) projections of the clips of each video.
        exclude: index of the anchor among the members, or None.

    Returns:
        (B, M) float ranks of the own-video members (column `exclude` is
        meaningless). Local batch only: a diagnostic, not gathered.
    """
    a = F.normalize(anchor.float(), dim=-1)
    m = F.normalize(members.float(), dim=-1)
    sim = torch.einsum("bd,nmd->bnm", a, m)  # (B, B, M)
    rows = torch.arange(sim.shape[0], device=sim.device)
    if exclude is not None:
        sim[rows, rows, exclude] = -torch.inf
    own = sim[rows, rows]  # (B, M)
    return 1 + (sim.flatten(1)[:, None, :] > own[:, :, None]).sum(-1).float()


def _require(batch: Mapping[str, Tensor], keys: Sequence[str], method: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{method} batch lacks {missing}; it needs {list(keys)}, got {sorted(batch)}")


def _backbone(backbone: str | nn.Module) -> nn.Module:
    return create_backbone(backbone) if isinstance(backbone, str) else backbone


def _check_head(method: str, temperature: float, proj_hidden_dim: int, proj_dim: int, proj_layers: int) -> None:
    """The settings every method shares; a ValueError naming the key and what is allowed."""
    if not temperature > 0:
        raise ValueError(f"{method}: method.temperature must be > 0 (the logits are divided by it), got {temperature}")
    for name, value in (("proj_hidden_dim", proj_hidden_dim), ("proj_dim", proj_dim), ("proj_layers", proj_layers)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{method}: method.{name} must be a whole number >= 1, got {value!r}")


class MoQuad(nn.Module):
    """MoQuad: SimCLR with a motion-focused quadruple per video (Liu et al.).

    Batch (quadruple stage, Sec. 3.1):
        anchor        (B, C, T, H, W) clip A_i
        positive      (B, C, T, H, W) same speed, appearance-disturbed (RAD)
        intra_neg     (B, C, T, H, W) other speed                   [optional]
        intra_neg_ad  (B, C, T, H, W) other speed + RAD             [optional]
    Leaving out intra_neg / intra_neg_ad gives the ablations of Table 4.
    Batch (appearance warm-up, Sec. 3.2 and Algorithm 1): `clip_n`, `clip_m`,
    two clips of each video at dilations n and m. A batch with these keys
    trains Eq. 2; the pipeline decides when the warm-up ends (paper: the
    first 20% of epochs).

    The paper gives no temperature; the default 0.1 is CVRL's, whose
    hyper-parameters MoQuad follows (Sec. 4.1). beta = 0.01, alpha = 1.5 are
    the paper's hard-negative settings; beta = 0 gives Eq. 1.

    Output: `loss`; `loss_quadruple` (Eq. 1/4) or `loss_appearance` (Eq. 2);
    `rank_pos` and, with intra negatives, `rank_intra`: mean rank of the
    positive / intra negatives among the anchor's candidates (Fig. 4).
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        proj_layers: int = 2,
        temperature: float = 0.1,
        beta: float = 0.01,
        alpha: float = 1.5,
        gather: bool = True,
    ):
        super().__init__()
        _check_head("moquad", temperature, proj_hidden_dim, proj_dim, proj_layers)
        if not 0 <= beta <= 1:
            raise ValueError(f"moquad: method.beta is the fraction of inter negatives kept as hard, in [0, 1], got {beta}")
        if not alpha > 0:
            raise ValueError(f"moquad: method.alpha weights the intra negatives and must be > 0, got {alpha}")
        self.backbone = _backbone(backbone)
        self.head = ProjectionHead(self.backbone.feature_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.temperature, self.beta, self.alpha, self.gather = temperature, beta, alpha, gather

    def project(self, views: Sequence[Tensor]) -> list[Tensor]:
        """Projections (B, proj_dim) of each view (B, C, T, H, W)."""
        features = encode_views(self.backbone, views)
        return list(self.head(torch.cat(features)).chunk(len(views)))

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if "clip_n" in batch and "clip_m" in batch:
            return self._appearance_step(batch)
        return self._quadruple_step(batch)

    def _appearance_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        z_n, z_m = self.project([batch["clip_n"], batch["clip_m"]])
        loss = appearance_loss(z_n, z_m, temperature=self.temperature, gather=self.gather)
        ranks = own_video_ranks(z_n, torch.stack([z_m, z_n], dim=1), exclude=1)
        return {"loss": loss, "loss_appearance": loss.detach(), "rank_pos": ranks[:, 0].mean()}

    def _quadruple_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        _require(batch, ("anchor", "positive"), "moquad")
        names = ["anchor", "positive"] + [k for k in ("intra_neg", "intra_neg_ad") if k in batch]
        z = dict(zip(names, self.project([batch[k] for k in names])))
        loss = moquad_loss(
            z["anchor"], z["positive"], z.get("intra_neg"), z.get("intra_neg_ad"),
            temperature=self.temperature, beta=self.beta, alpha=self.alpha, gather=self.gather,
        )
        ranks = own_video_ranks(z["anchor"], torch.stack(list(z.values()), dim=1), exclude=0)
        out = {"loss": loss, "loss_quadruple": loss.detach(), "rank_pos": ranks[:, 1].mean()}
        if len(names) > 2:
            out["rank_intra"] = ranks[:, 2:].mean()
        return out


class MCPNet(nn.Module):
    """MCPNet: motion (MIP) and instance (CIP) branches on one encoder (Sec. 3.2).

    Batch:
        rgb        (B, C, T, H, W) RGB clip r_i at speed s_r
        res_same   (B, C, T, H, W) long-range residual clip at s_r (l1)
        res_diff   (B, C, T, H, W) long-range residual clip at s_l2 != s_r (l2)
        cip_same   (B,) bool: CIP positive of r_i is res_same (True) or
                   res_diff (False); all False is the paper's "different
                   speed" setting, Table 2 ablates "same" and "random"
        speed_rgb, speed_diff  (B,) int64, carried for logging, unused here

    Each clip is encoded once. MIP (Eq. 3) compares g_m(r) with g_m(l1) and
    g_m(l2); CIP (Eq. 4) contrasts g_c(r_i) against g_c of the chosen
    residual clip of every video; loss = alpha * MIP + (1 - alpha) * CIP (Eq. 5).

    The paper gives no temperature; the default 0.07 is RSPNet's (MoCo's),
    whose code MCPNet builds on. `mip_sim` picks sim in Eq. 3 (see
    models.losses.mip_loss for why the default divides cosines by tau).

    `residual_bn` (the paper is silent): "joint" encodes the RGB and residual clips as
    one batch, so BatchNorm normalises them together and its running statistics — used
    when the backbone is evaluated on RGB clips — mix both kinds; "split" encodes them as
    separate batches through the same layers (batch statistics per kind, running
    statistics still mixed); "own" gives the residual clips their own BatchNorm
    parameters and statistics (`OwnNorms`), so the backbone's own layers see RGB only.

    Output: `loss`, `loss_mip`, `loss_cip`; `mip_acc`: fraction with
    sim(r, l1) > sim(r, l2); `cip_acc`: top-1 accuracy of the CIP positive
    among the local batch's residual clips.
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        proj_layers: int = 2,
        temperature: float = 0.07,
        margin: float = 2.0,
        alpha: float = 0.5,
        mip_sim: str = "cosine_over_tau",
        residual_bn: str = "joint",
        gather: bool = True,
    ):
        super().__init__()
        _check_head("mcpnet", temperature, proj_hidden_dim, proj_dim, proj_layers)
        if residual_bn not in RESIDUAL_BN:
            raise ValueError(f"mcpnet: method.residual_bn={residual_bn!r}; choose one of {list(RESIDUAL_BN)}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"mcpnet: method.alpha must lie in [0, 1], got {alpha}")
        if not margin >= 0:
            raise ValueError(f"mcpnet: method.margin (gamma of Eq. 3) must be >= 0, got {margin}")
        if mip_sim not in MIP_SIMILARITIES:
            raise ValueError(f"unknown MIP similarity {mip_sim!r}; choose one of {sorted(MIP_SIMILARITIES)}")
        self.backbone = _backbone(backbone)
        self.heads = MCPNetHeads(self.backbone.feature_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.temperature, self.margin, self.alpha = temperature, margin, alpha
        self.mip_sim, self.gather, self.residual_bn = mip_sim, gather, residual_bn
        self.residual_norms = OwnNorms(self.backbone) if residual_bn == "own" else None

    def encode(self, batch: Mapping[str, Tensor]) -> list[Tensor]:
        """Backbone features of ``rgb``, ``res_same``, ``res_diff`` under the ``residual_bn`` setting."""
        views = [batch["rgb"], batch["res_same"], batch["res_diff"]]
        if self.residual_bn == "joint":
            return encode_views(self.backbone, views)
        h_r = self.backbone(as_backbone_input(views[0], self.backbone))
        residuals = torch.cat(views[1:])
        if self.residual_norms is None:  # "split": own batch statistics, shared BatchNorm layers
            h_res = self.backbone(as_backbone_input(residuals, self.backbone))
        else:
            h_res = self.residual_norms.encode(self.backbone, residuals)
        return [h_r, *h_res.chunk(2)]

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        _require(batch, ("rgb", "res_same", "res_diff", "cip_same"), "mcpnet")
        h_r, h_l1, h_l2 = self.encode(batch)

        f_r, f_l1, f_l2 = self.heads.mip(torch.cat([h_r, h_l1, h_l2])).chunk(3)
        loss_mip = mip_loss(f_r, f_l1, f_l2, margin=self.margin, similarity=self.mip_sim,
                            temperature=self.temperature)

        h_l = torch.where(batch["cip_same"].to(torch.bool)[:, None], h_l1, h_l2)
        g_r, g_l = self.heads.cip(torch.cat([h_r, h_l])).chunk(2)
        loss_cip = cip_loss(g_r, g_l, temperature=self.temperature, gather=self.gather)

        loss = self.alpha * loss_mip + (1 - self.alpha) * loss_cip
        with torch.no_grad():
            s1 = mip_similarity(f_r, f_l1, self.mip_sim, self.temperature)
            s2 = mip_similarity(f_r, f_l2, self.mip_sim, self.temperature)
            cip_rank = own_video_ranks(g_r, g_l[:, None])[:, 0]
        return {
            "loss": loss,
            "loss_mip": loss_mip.detach(),
            "loss_cip": loss_cip.detach(),
            "mip_acc": (s1 > s2).float().mean(),
            "cip_acc": (cip_rank == 1).float().mean(),
        }


class SimCLR(nn.Module):
    """SimCLR on clips (Chen et al. 2020; CVRL for video): two views, NT-Xent.

    Batch: `view1`, `view2` (B, C, T, H, W).
    Output: `loss`, `loss_nt_xent`, `acc`: fraction of view-1 anchors whose
    most similar candidate in the local batch is their own view 2.
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        proj_hidden_dim: int = 2048,
        proj_dim: int = 128,
        proj_layers: int = 2,
        temperature: float = 0.1,
        gather: bool = True,
    ):
        super().__init__()
        _check_head("simclr", temperature, proj_hidden_dim, proj_dim, proj_layers)
        self.backbone = _backbone(backbone)
        self.head = ProjectionHead(self.backbone.feature_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.temperature, self.gather = temperature, gather

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        _require(batch, ("view1", "view2"), "simclr")
        features = encode_views(self.backbone, [batch["view1"], batch["view2"]])
        z1, z2 = self.head(torch.cat(features)).chunk(2)
        loss = nt_xent_loss(z1, z2, temperature=self.temperature, gather=self.gather)
        ranks = own_video_ranks(z1, torch.stack([z1, z2], dim=1), exclude=0)
        return {"loss": loss, "loss_nt_xent": loss.detach(), "acc": (ranks[:, 1] == 1).float().mean()}


METHODS: dict[str, type[nn.Module]] = {"moquad": MoQuad, "mcpnet": MCPNet, "simclr": SimCLR}


def create_method(name: str, backbone: str | VideoBackbone = "r3d_18", **cfg) -> nn.Module:
    """Build a registered method around a backbone (a name of BACKBONES or a module).

    Keyword arguments go to the method's constructor (head sizes, temperature,
    the method's loss hyper-parameters, `gather`).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    valid = set(inspect.signature(METHODS[name]).parameters) - {"backbone"}
    unknown = sorted(set(cfg) - valid)
    if unknown:
        raise ValueError(f"unknown {name} method option(s) {unknown}; valid: {sorted(valid)}")
    return METHODS[name](backbone, **cfg)
