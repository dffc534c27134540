"""Normalise a clip to ``(C, T, H, W)``: DALI op and NumPy twin.

``(x/255 − mean)/std`` per channel by ``fn.crop_mirror_normalize`` with
``output_layout="CFHW"``, which also moves the channels first.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from nvidia.dali import fn


def normalize(frames, mean: Sequence[float], std: Sequence[float], dtype):
    """Graph op: ``(x/255 − mean)/std`` per channel, ``FHWC`` → ``CFHW``, ``dtype`` out."""
    return fn.crop_mirror_normalize(frames, mean=[255.0 * m for m in mean], std=[255.0 * s for s in std],
                                    output_layout="CFHW", dtype=dtype)


# --- NumPy twin -------------------------------------------------------------------------------
def normalize_reference(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x/255 − mean)/std`` per channel, ``(T, H, W, C)`` → ``(C, T, H, W)`` float32."""
    out = (frames.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    return out.transpose(3, 0, 1, 2).astype(np.float32)
