"""Cross-rank gathering for contrastive losses.

Contrastive losses get better with more negatives, so under DDP every rank
contrasts its anchors against the clips of the *whole* global batch. The plain
`torch.distributed.all_gather` cuts the graph; `all_gather_with_grad` keeps it,
so the clips a rank receives from its peers still send gradient home.

Every function here is a no-op in a single process (torch.distributed not
initialised, or a world of one), so the losses run unchanged on a laptop.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate `x` (B, ...) from every rank along dim 0 -> (world * B, ...).

    Backward: rank r's loss depends on every rank's slice of the gathered
    tensor, so the gradient of slice r is the *sum* over ranks of the
    gradients each rank computed for it: all-reduce (sum), keep our slice.
    With DDP's gradient averaging on top, the parameter gradient equals that
    of the mean loss over the global batch (tests/models/test_gather_ddp.py).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.batch_size = x.shape[0]
        x = x.contiguous()
        gathered = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, x)
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Clone: all_reduce works in place and autograd may still hold `grad`.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch_size
        return grad[start:start + ctx.batch_size]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Gather `x` (B, ...) from all ranks into (world * B, ...), rank-major.

    Rank r's rows sit at [r * B, (r + 1) * B), so a local row i is global row
    `get_rank() * B + i`. Every rank must pass the same B (pipelines pad the
    last batch). Returns `x` itself when not distributed.
    """
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x)


def maybe_gather(x: Tensor, gather: bool) -> tuple[Tensor, int]:
    """Candidates for the local anchors and the global row of local row 0.

    Returns (all_gather_with_grad(x), rank * B) when `gather` is set, else
    (x, 0). Losses use the offset to find each anchor's own video among the
    gathered rows.
    """
    if not gather:
        return x, 0
    return all_gather_with_grad(x), get_rank() * x.shape[0]
