"""SimCLR on clips (Chen et al. 2020; CVRL for video): the baseline, two views and NT-Xent."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from motionssl.models.heads import ProjectionHead
from motionssl.models.losses import nt_xent_loss
from motionssl.models.methods.common import backbone_of, check_head, encode_views, own_video_ranks, require
from motionssl.models.methods.registry import Method, register_method
from motionssl.models.optim import moquad_lr


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
        check_head("simclr", temperature, proj_hidden_dim, proj_dim, proj_layers)
        self.backbone = backbone_of(backbone)
        self.head = ProjectionHead(self.backbone.feature_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.temperature, self.gather = temperature, gather

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        require(batch, ("view1", "view2"), "simclr")
        features = encode_views(self.backbone, [batch["view1"], batch["view2"]])
        z1, z2 = self.head(torch.cat(features)).chunk(2)
        loss = nt_xent_loss(z1, z2, temperature=self.temperature, gather=self.gather)
        ranks = own_video_ranks(z1, torch.stack([z1, z2], dim=1), exclude=0)
        return {"loss": loss, "loss_nt_xent": loss.detach(), "acc": (ranks[:, 1] == 1).float().mean()}


METHOD = register_method(Method(
    "simclr", SimCLR, pipeline="simclr", doc="SimCLR/CVRL baseline: two augmented clips of a video",
    paper_lr=moquad_lr, demo_config="demo/simclr.yaml", paper_config="simclr_r3d18.yaml",  # CVRL: LARS, 3.2 @ 256
    baseline=True))
