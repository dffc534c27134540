"""The model of own_model.py under torchrun: one process per rank, each reading its own shard of the videos.

    torchrun --nproc_per_node 2 examples/torchrun_sharded.py                      # the demo videos, gloo on the CPU
    torchrun --nproc_per_node 2 examples/torchrun_sharded.py "my_clips/**/*.mp4" --steps 100

On GPUs: device=f"cuda:{local_rank}", the "nccl" backend and DistributedDataParallel(model, device_ids=[local_rank]).
"""
import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from motionssl.pipelines import demo, make_iterator

parser = argparse.ArgumentParser()
parser.add_argument("data", nargs="?", help="folder of videos, glob or list (default: the demo videos)")
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=4, help="videos per batch on each rank")
args = parser.parse_args()

dist.init_process_group("gloo")  # torchrun sets RANK, WORLD_SIZE and the rendezvous in the environment
rank, world = dist.get_rank(), dist.get_world_size()
if args.data is None and rank == 0:
    demo.generate()  # written once, by rank 0; the others wait at the barrier
dist.barrier()
data = args.data or os.path.join(demo.generate(), "videos", "**", "*.webm")

# Every rank gets len(loader) batches of its own videos: no video on two ranks within an epoch.
loader = make_iterator("simclr", data, batch_size=args.batch_size, num_workers=0, shard_id=rank, num_shards=world,
                       config={"clip": {"frames": 8, "augment": {"size": [56, 56]}}})
model = DistributedDataParallel(torch.nn.Sequential(
    torch.nn.Conv3d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1),
    torch.nn.Flatten(), torch.nn.Linear(16, 32)))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
seen = []
for step, batch in enumerate(loader):
    z1, z2 = (F.normalize(model(batch[view]), dim=1) for view in ("view1", "view2"))
    loss = F.cross_entropy(z1 @ z2.T / 0.1, torch.arange(len(z1)))
    optimizer.zero_grad()
    loss.backward()  # DDP averages the gradients of the ranks here
    optimizer.step()
    seen += batch["index"].tolist()
    if step + 1 == args.steps:
        break
loader.close()
print(f"rank {rank} of {world}: {step + 1} steps of {len(loader)} in its shard, loss {loss.item():.3f}, videos {seen}",
      flush=True)
dist.destroy_process_group()
