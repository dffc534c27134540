"""Memory layout of the tiny backbone on CPU: channels-last against PyTorch's default NCDHW.

    python -m benchmarks.backbone_layout          # forward + backward of 16 clips of 3×8×64×64

The tiny 3D CNN of the CPU demo keeps its weights and activations channels-last
(``models.backbones.TinyVideoNet``) because PyTorch's CPU Conv3d backward is much faster in
that layout. This prints the seconds of each layout, measured in the same run, and their
ratio (median of ``--repeats`` runs after one warm-up).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from motionssl.models.backbones import TinyVideoNet  # noqa: E402


def seconds(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    model(x).sum().backward()  # warm-up: the first call allocates
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class NCDHW(TinyVideoNet):
    """The same network in PyTorch's default layout."""

    def __init__(self):
        super().__init__()
        self.trunk = self.trunk.to(memory_format=torch.contiguous_format)
        self.channels_last = False

    def features(self, x):
        return self.trunk(x.contiguous()).mean(dim=(2, 3, 4))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 8, 64, 64)
    result = {"channels_last_s": seconds(TinyVideoNet(), x, args.repeats),
              "ncdhw_s": seconds(NCDHW(), x, args.repeats), "threads": torch.get_num_threads()}
    result["ratio"] = result["ncdhw_s"] / result["channels_last_s"]
    print(f"tiny backbone, {args.batch} clips 3x8x64x64, forward+backward, {result['threads']} threads: "
          f"channels-last {result['channels_last_s']:.3f} s, NCDHW {result['ncdhw_s']:.3f} s "
          f"-> channels-last is {result['ratio']:.1f}x faster")
    return result


if __name__ == "__main__":
    main()
