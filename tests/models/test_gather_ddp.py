"""Two gloo processes: gathered losses and gradients equal the single-process ones on the global batch."""
import functools

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from motionssl.models.distributed import all_gather_with_grad, get_rank, get_world_size, is_distributed
from motionssl.models.losses import appearance_loss, cip_loss, moquad_loss, nt_xent_loss

WORLD = 2
LOCAL_BATCH = 3
DIM = 6

# name -> (loss function, number of feature tensors it takes)
LOSSES = {
    "moquad_eq1": (functools.partial(moquad_loss, beta=0.0), 4),
    "moquad_eq4": (functools.partial(moquad_loss, beta=0.2, alpha=1.5), 4),
    "moquad_no_intra": (functools.partial(moquad_loss, beta=0.1, alpha=2.0), 2),
    "appearance": (appearance_loss, 2),
    "nt_xent": (nt_xent_loss, 2),
    "cip": (cip_loss, 2),
}


def _worker(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        assert is_distributed() and get_rank() == rank and get_world_size() == WORLD
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        for name, (loss_fn, n) in LOSSES.items():
            g = torch.Generator().manual_seed(0)  # same global batch on every rank
            global_feats = [torch.randn(WORLD * LOCAL_BATCH, DIM, generator=g, dtype=torch.float64)
                            for _ in range(n)]

            # Reference: one process sees the whole global batch.
            ref_leaves = [f.clone().requires_grad_() for f in global_feats]
            ref_loss = loss_fn(*ref_leaves, gather=False)
            ref_loss.backward()

            # Distributed: each rank holds its slice and gathers negatives.
            leaves = [f[local].clone().requires_grad_() for f in global_feats]
            loss = loss_fn(*leaves, gather=True)
            loss.backward()

            # The global loss is the mean of the rank losses (equal local
            # batches); DDP averages gradients over ranks, hence / WORLD.
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            torch.testing.assert_close(mean_loss / WORLD, ref_loss.detach(), msg=lambda m: f"{name}: {m}")
            for leaf, ref in zip(leaves, ref_leaves):
                torch.testing.assert_close(leaf.grad / WORLD, ref.grad[local], msg=lambda m: f"{name}: {m}")

        # The gathered tensor is rank-major and routes gradient home.
        x = torch.full((2, 1), float(rank + 1), dtype=torch.float64, requires_grad=True)
        gathered = all_gather_with_grad(x)
        torch.testing.assert_close(gathered.detach().flatten(), torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float64))
        weights = torch.arange(4, dtype=torch.float64)[:, None] * (rank + 1)  # rank-dependent use
        (gathered * weights).sum().backward()
        # d/dx_r of sum over ranks q of sum_k w_q[k] * gathered[k], w_q = (q + 1) * arange(4)
        expected = torch.arange(4, dtype=torch.float64)[local_rows(rank)] * sum(q + 1 for q in range(WORLD))
        torch.testing.assert_close(x.grad.flatten(), expected)
    finally:
        dist.destroy_process_group()


def local_rows(rank: int) -> slice:
    return slice(rank * 2, rank * 2 + 2)


@pytest.mark.slow
def test_gathered_losses_match_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "dist_init"),), nprocs=WORLD, join=True)


def test_gather_is_identity_without_process_group():
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1
    x = torch.randn(3, 4)
    assert all_gather_with_grad(x) is x
