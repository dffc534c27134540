"""MoQuad (Liu et al.): SimCLR with a motion-focused quadruple per video, hard-negative mining and an appearance warm-up."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from motionssl.models.heads import ProjectionHead
from motionssl.models.losses import appearance_loss, moquad_loss
from motionssl.models.methods.common import backbone_of, check_head, encode_views, own_video_ranks, require
from motionssl.models.methods.registry import Method, Phase, register_method
from motionssl.models.optim import moquad_lr


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
        check_head("moquad", temperature, proj_hidden_dim, proj_dim, proj_layers)
        if not 0 <= beta <= 1:
            raise ValueError(f"moquad: method.beta is the fraction of inter negatives kept as hard, in [0, 1], got {beta}")
        if not alpha > 0:
            raise ValueError(f"moquad: method.alpha weights the intra negatives and must be > 0, got {alpha}")
        self.backbone = backbone_of(backbone)
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
        require(batch, ("anchor", "positive"), "moquad")
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


def phases(appearance_warmup: float = 0.2) -> list:
    """Algorithm 1: the appearance task (Eq. 2) for the first ``appearance_warmup`` of the run (the paper: 20 % of
    the epochs), then quadruples."""
    if not 0.0 <= appearance_warmup < 1.0:
        raise ValueError(f"moquad: method.appearance_warmup is a fraction of the run in [0, 1), got "
                         f"{appearance_warmup}")
    if appearance_warmup == 0:
        return [Phase("quadruples", 1.0)]
    return [Phase("appearance warm-up", appearance_warmup, {"mode": "warmup"}),
            Phase("quadruples", 1.0 - appearance_warmup)]


METHOD = register_method(Method(
    "moquad", MoQuad, pipeline="moquad", doc="MoQuad quadruples (anchor, RAD positive, intra negatives)",
    paper_lr=moquad_lr, phases=phases, demo_config="demo/moquad.yaml", paper_config="moquad_r3d18.yaml"))
