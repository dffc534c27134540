"""Projection heads: the MLP between backbone feature and contrastive loss.

The losses act on the head's output; downstream tasks use the backbone
feature before it (SimCLR, Chen et al. 2020, Sec. 2.1 and 4.2).
"""
from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """SimCLR-style MLP: (Linear-BN-ReLU) x (num_layers - 1), then Linear.

    Args:
        in_dim: backbone feature dimension.
        hidden_dim: width of the hidden layers.
        out_dim: projection dimension.
        num_layers: number of Linear layers (>= 1); 2 is SimCLR's head,
            CVRL uses 3, 1 is a plain linear projection.

    Shapes: (B, in_dim) -> (B, out_dim).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 2):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            # No bias before BN: BN's shift makes it redundant.
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class MCPNetHeads(nn.Module):
    """MCPNet's two projection heads on the shared encoder (Sec. 3.2, Fig. 2).

    `mip` is g_m(.; theta_m), used by the Motion Information Perception branch
    (Eq. 3); `cip` is g_c(.; theta_c), used by the Contrastive Instance
    Perception branch (Eq. 4). Same architecture, separate parameters: the
    speed-sensitive MIP task and the speed-invariant CIP task would pull a
    shared head in opposite directions.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 2):
        super().__init__()
        self.mip = ProjectionHead(in_dim, hidden_dim, out_dim, num_layers)
        self.cip = ProjectionHead(in_dim, hidden_dim, out_dim, num_layers)
