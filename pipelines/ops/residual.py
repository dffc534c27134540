"""Long-range residual clips (MCPNet §3.1, Eq. 1–2).

``|F_i − F_{i+t·s}|`` for the frames ``i`` of a clip at speed ``s``; ``t = 1`` is the plain
residual frame of Eq. 1. The planner gathers the ``2T`` frames (clip, then partners) with
one ``sequence_rearrange`` so that cropping and colour jitter are drawn once and applied
to both halves; this op subtracts the halves.

Output scaling: the difference of two float frames in pixel units, so values lie in
``[0, 255]`` (0 = no change). :func:`.normalise.normalize` then divides by
``255 · residual_std`` without subtracting a mean, so a static pixel stays exactly 0.
"""
from __future__ import annotations

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn

from .base import Op


def residual_clip(pairs, num_frames: int):
    """Graph op: ``(2T, H, W, C)`` float frames (clip, then partners) → ``(T, H, W, C)`` residual.

    Three operators (two rearranges share the input; subtract; abs). A fused kernel that
    reads both halves and writes ``|a − b|`` once would save two passes over the clip.
    """
    first = fn.sequence_rearrange(pairs, new_order=list(range(num_frames)))
    second = fn.sequence_rearrange(pairs, new_order=list(range(num_frames, 2 * num_frames)))
    return dmath.abs(first - second)


# --- NumPy twin -------------------------------------------------------------------------------
def residual_reference(pairs: np.ndarray, num_frames: int) -> np.ndarray:
    """``|F_i − F_{i+t·s}|`` from ``2T`` float frames laid out clip-then-partners (MCPNet Eq. 2)."""
    return np.abs(pairs[:num_frames].astype(np.float64) - pairs[num_frames:2 * num_frames])


# --- the op ---------------------------------------------------------------------------------
class Residual(Op):
    """``|clip − partners|`` of a residual clip's ``2T`` frames."""

    name = "residual"

    def graph(self, x, p, clip):
        return residual_clip(x, clip.cfg.frames)

    def reference(self, x, p, clip):
        return residual_reference(x, clip.cfg.frames)
