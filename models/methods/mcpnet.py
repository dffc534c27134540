"""MCPNet (Huang et al.): motion (MIP) and instance (CIP) perception on RGB and long-range residual clips."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from motionssl.models.heads import MCPNetHeads
from motionssl.models.losses import MIP_SIMILARITIES, cip_loss, mip_loss, mip_similarity
from motionssl.models.methods.common import (
    RESIDUAL_BN,
    OwnNorms,
    as_backbone_input,
    backbone_of,
    check_head,
    encode_views,
    own_video_ranks,
    require,
    shown,
)
from motionssl.models.methods.registry import Method, register_method
from motionssl.models.optim import mcpnet_lr


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
        check_head("mcpnet", temperature, proj_hidden_dim, proj_dim, proj_layers)
        if residual_bn not in RESIDUAL_BN:
            raise ValueError(f"mcpnet: method.residual_bn={shown(residual_bn)}; choose one of {list(RESIDUAL_BN)}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"mcpnet: method.alpha must lie in [0, 1], got {alpha}")
        if not margin >= 0:
            raise ValueError(f"mcpnet: method.margin (gamma of Eq. 3) must be >= 0, got {margin}")
        if mip_sim not in MIP_SIMILARITIES:
            raise ValueError(f"unknown MIP similarity {shown(mip_sim)}; choose one of {sorted(MIP_SIMILARITIES)}")
        self.backbone = backbone_of(backbone)
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
        require(batch, ("rgb", "res_same", "res_diff", "cip_same"), "mcpnet")
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


METHOD = register_method(Method(
    "mcpnet", MCPNet, pipeline="mcpnet", doc="MCPNet RGB clip and long-range residual clips (MIP + CIP)",
    paper_lr=mcpnet_lr, demo_config="demo/mcpnet.yaml", paper_config="mcpnet_r3d18.yaml"))
