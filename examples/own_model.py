"""Your own model and loss on a folder of unlabelled videos, with make_iterator in a plain loop.

    python examples/own_model.py                    # the demo videos, unlabelled
    python examples/own_model.py "my_clips/**/*.mp4" --steps 100
"""
import argparse
import os

import torch
import torch.nn.functional as F

from motionssl.pipelines import demo, make_iterator

parser = argparse.ArgumentParser()
parser.add_argument("data", nargs="?", help="folder of videos, glob or list (default: the demo videos)")
parser.add_argument("--steps", type=int, default=3)
args = parser.parse_args()
data = args.data or os.path.join(demo.generate(), "videos", "**", "*.webm")  # a glob: every video, no labels

# Two augmented views of every video (SimCLR's pipeline), 8 frames of 56x56: (B, 3, 8, 56, 56) float32 on the CPU.
loader = make_iterator("simclr", data, batch_size=8, num_workers=0,
                       config={"clip": {"frames": 8, "augment": {"size": [56, 56]}}})
model = torch.nn.Sequential(torch.nn.Conv3d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1),
                            torch.nn.Flatten(), torch.nn.Linear(16, 32))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for step, batch in enumerate(loader):
    z1, z2 = (F.normalize(model(batch[view]), dim=1) for view in ("view1", "view2"))
    loss = F.cross_entropy(z1 @ z2.T / 0.1, torch.arange(len(z1)))  # each view finds its twin among the batch
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f} on videos {batch['index'].tolist()} (labels {batch['label'].tolist()})")
    if step + 1 == args.steps:
        break
loader.close()
print(f"trained {args.steps} steps of my own model on {len(loader.index)} unlabelled videos of {data}")
