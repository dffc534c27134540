"""Normalise a clip to ``(C, T, H, W)``: DALI op and NumPy twin.

``(x/255 − mean)/std`` per channel by ``fn.crop_mirror_normalize`` with
``output_layout="CFHW"``, which also moves the channels first.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from nvidia.dali import fn

from .base import Op


def normalize(frames, mean: Sequence[float], std: Sequence[float], dtype):
    """Graph op: ``(x/255 − mean)/std`` per channel, ``FHWC`` → ``CFHW``, ``dtype`` out."""
    return fn.crop_mirror_normalize(frames, mean=[255.0 * m for m in mean], std=[255.0 * s for s in std],
                                    output_layout="CFHW", dtype=dtype)


# --- NumPy twin -------------------------------------------------------------------------------
def normalize_reference(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x/255 − mean)/std`` per channel, ``(T, H, W, C)`` → ``(C, T, H, W)`` float32."""
    out = (frames.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    return out.transpose(3, 0, 1, 2).astype(np.float32)


# --- the op ---------------------------------------------------------------------------------
class Normalise(Op):
    """The clip's mean and std (``residual``: no mean, ``residual_std``); the fused kernels' ``mean`` and ``std``."""

    name = "normalise"
    slots = ("mean", "std")

    def __init__(self, residual: bool = False):
        self.residual = residual

    def stats(self, clip):
        a = clip.cfg.augment
        return ((0.0, 0.0, 0.0), (a.residual_std,) * 3) if self.residual else (a.mean, a.std)

    def graph(self, x, p, clip):
        return normalize(x, *self.stats(clip), clip.dtype)

    def reference(self, x, p, clip):
        return normalize_reference(x, *self.stats(clip))

    def pack(self, p, clip):
        mean, std = self.stats(clip)
        return [255.0 * float(v) for v in mean], [255.0 * float(v) for v in std]
