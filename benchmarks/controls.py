"""The fidelity benchmark's controls: features that see only motion, and features that see only appearance.

Both are "backbones" without learnt weights, run through ``eval.py``'s own protocols
(the same views, the same linear probe, the same retrieval):

* ``motion_descriptor`` — the motion of the clip and nothing of its look: per pair of
  consecutive frames, the global affine flow of the pixels that change (least squares on
  the brightness-constancy equation, Lucas–Kanade with an affine model, about the centroid
  of the change), reduced to translation, rotation (curl) and scaling (divergence); the
  median over the pairs. Rotation and divergence are scaled to pixels at a quarter of the
  frame from the centre, so all four are displacements in pixels per frame. If it scores
  high, the benchmark can be solved from motion.
* ``still_appearance`` — the look of one frame and nothing of the motion: the colour
  distribution of the clip's first frame (per channel: mean, spread, quantiles). If it
  scores at chance, appearance does not decide the class.

    python -m benchmarks.controls linear --random-init --backbone motion_descriptor --config configs/small/simclr.yaml \\
        --data DATA --split train --test-split test

(``eval.py``'s arguments; this module only adds the two backbones before calling it.)
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import Tensor

from motionssl.models.backbones import BACKBONES, VideoBackbone


def _grey(x: Tensor) -> Tensor:
    """(B, C, T, H, W) → (B, T, H, W), blurred by a 3 × 3 box so that a pixel or two of motion stays linear."""
    g = x.float().mean(dim=1)
    b, t, h, w = g.shape
    g = F.avg_pool2d(g.reshape(b * t, 1, h, w), 3, stride=1, padding=1, count_include_pad=False)
    return g.reshape(b, t, h, w)


def _centred(first: Tensor, second: Tensor):
    """Both frames of each pair rolled so that the circular centroid of their change is at the centre.

    The videos are drawn on a torus (an object leaving one edge enters the opposite one);
    rolling keeps an object that straddles an edge in one piece for the flow's model.
    """
    change = (second - first).abs()
    shifts = []
    for axis in (1, 2):  # rows, then columns
        size = change.shape[axis]
        phase = 2 * torch.pi * torch.arange(size, dtype=first.dtype) / size
        profile = change.sum(dim=3 - axis)  # (N, size): the change summed along the other axis
        angle = torch.atan2((profile * phase.sin()).sum(1), (profile * phase.cos()).sum(1))
        shifts.append(((size // 2 - torch.round(angle / (2 * torch.pi) * size)).long() % size).tolist())
    out_a, out_b = torch.empty_like(first), torch.empty_like(second)
    for i, shift in enumerate(zip(*shifts)):
        out_a[i] = torch.roll(first[i], shift, dims=(0, 1))
        out_b[i] = torch.roll(second[i], shift, dims=(0, 1))
    return out_a, out_b


def affine_flow(first: Tensor, second: Tensor, keep: float = 0.25) -> Tensor:
    """(N, H, W) frame pairs → (N, 6) affine flow ``u = a0 + a1 x + a2 y``, ``v = a3 + a4 x + a5 y``.

    Least squares of ``Ix u + Iy v + It = 0`` over the ``keep`` fraction of pixels that
    change most, with coordinates about their centroid (x right, y down, in pixels), after
    rolling each pair so that its change is in one piece (:func:`_centred`).
    """
    n, h, w = first.shape
    first, second = _centred(first, second)
    mean = 0.5 * (first + second)
    iy, ix = torch.gradient(mean, dim=(1, 2))
    it = second - first
    change = it.abs().reshape(n, -1)
    threshold = torch.quantile(change, 1.0 - keep, dim=1, keepdim=True)
    weight = (change >= threshold).float() * (change > 1e-6).float()
    yy, xx = torch.meshgrid(torch.arange(h, dtype=first.dtype), torch.arange(w, dtype=first.dtype), indexing="ij")
    xx, yy = xx.reshape(1, -1).expand(n, -1), yy.reshape(1, -1).expand(n, -1)
    total = weight.sum(dim=1, keepdim=True).clamp_min(1.0)
    cx, cy = (weight * xx).sum(1, keepdim=True) / total, (weight * yy).sum(1, keepdim=True) / total
    x, y = xx - cx, yy - cy
    gx, gy, gt = ix.reshape(n, -1), iy.reshape(n, -1), it.reshape(n, -1)
    design = torch.stack([gx, gx * x, gx * y, gy, gy * x, gy * y], dim=2)  # (N, P, 6)
    weighted = design * weight.unsqueeze(2)
    normal = weighted.transpose(1, 2) @ design + 1e-3 * torch.eye(6, dtype=first.dtype)
    rhs = -(weighted.transpose(1, 2) @ gt.unsqueeze(2))
    return torch.linalg.solve(normal, rhs).squeeze(2)


class MotionDescriptor(VideoBackbone):
    """(B, C, T, H, W) → (B, 4): median translation x, y, rotation and divergence in pixels per frame."""

    feature_dim = 4

    def features(self, x: Tensor) -> Tensor:
        g = _grey(x).double()
        b, t, h, w = g.shape
        flow = affine_flow(g[:, :-1].reshape(-1, h, w), g[:, 1:].reshape(-1, h, w)).reshape(b, t - 1, 6)
        reach = 0.25 * min(h, w)  # rotation and divergence as displacements a quarter-frame from the centre
        curl = 0.5 * (flow[..., 4] - flow[..., 2]) * reach
        div = 0.5 * (flow[..., 1] + flow[..., 5]) * reach
        parts = torch.stack([flow[..., 0], flow[..., 3], curl, div], dim=2)
        return parts.median(dim=1).values.float()


class StillAppearance(VideoBackbone):
    """(B, C, T, H, W) → (B, 21): the first frame's colour distribution — per channel its mean, spread and quantiles.

    Blind to where things are, so that averaging the features of clips taken at several
    times (as retrieval and the probe's test do) cannot turn a moving object into a
    smeared one: the control sees what one frame looks like and nothing else.
    """

    feature_dim = 3 * 7
    QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

    def features(self, x: Tensor) -> Tensor:
        frame = x[:, :, 0].float().flatten(2)  # (B, C, H·W)
        q = torch.quantile(frame, torch.tensor(self.QUANTILES), dim=2)  # (Q, B, C)
        return torch.cat([frame.mean(2), frame.std(2), q.permute(1, 0, 2).flatten(1)], dim=1)


CONTROLS = {"motion_descriptor": MotionDescriptor, "still_appearance": StillAppearance}


def register() -> None:
    """Add the controls to the backbones ``eval.py --random-init --backbone`` can build."""
    for name, cls in CONTROLS.items():
        BACKBONES.setdefault(name, cls)


def main(argv=None):
    register()
    from motionssl import evaluate

    evaluate.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
