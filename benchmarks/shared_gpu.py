"""``train.py`` with every torchrun rank on the machine's first GPU, over gloo: DDP, SyncBatchNorm
and the gradient-carrying gather on a machine with one GPU (the ``ddp`` stage of
``benchmarks.gpu_check``).

    torchrun --standalone --nproc_per_node 2 -m benchmarks.shared_gpu --pipeline mcpnet ... device=gpu

``train.py`` binds rank ``r`` to GPU ``r`` and joins NCCL, which takes one rank per GPU. Here
each rank is told it is the machine's local rank 0, and the process group is gloo (it reduces
CUDA tensors and carries SyncBatchNorm), created before ``train.py`` looks for one, so
``train.py`` uses it. Rank 0 prints how many BatchNorm layers became SyncBatchNorm.
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a file: the repository root is the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SYNC_BN = "SyncBatchNorm layers:"  # the line rank 0 prints


def report_sync_batchnorm() -> None:
    """Make ``SyncBatchNorm.convert_sync_batchnorm`` print, on rank 0, how many layers it converted."""
    import torch

    convert = torch.nn.SyncBatchNorm.convert_sync_batchnorm
    depth = [0]  # the conversion calls itself for every child module: report the outermost call only

    def counted(module, process_group=None):
        depth[0] += 1
        try:
            converted = convert(module, process_group)
        finally:
            depth[0] -= 1
        if not depth[0] and os.environ.get("RANK", "0") == "0":
            print(SYNC_BN, sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()), flush=True)
        return converted

    torch.nn.SyncBatchNorm.convert_sync_batchnorm = counted


def main(argv=None):
    import torch.distributed as dist

    if "RANK" not in os.environ:
        raise SystemExit("benchmarks.shared_gpu: run it under torchrun (torchrun --nproc_per_node 2 -m "
                         "benchmarks.shared_gpu ...)")
    os.environ["LOCAL_RANK"], os.environ["LOCAL_WORLD_SIZE"] = "0", "1"  # every rank on the first GPU
    dist.init_process_group("gloo")
    report_sync_batchnorm()
    from motionssl import train

    return train.main(argv)


if __name__ == "__main__":
    main()
