"""Colour jitter and grayscale of a clip (one draw per clip): draw, DALI op, NumPy twin.

Brightness, contrast, saturation and hue are one colour matrix, applied by one
``fn.color_twist`` (grayscale is saturation 0 in its YIQ space); the draw happens in
Python (:func:`draw_color`). Differences from torchvision's ``ColorJitter`` worth knowing:
the four adjustments are one matrix in a fixed order, contrast pivots on mid-grey (128)
rather than the image mean, and saturation and hue act in YIQ rather than HSV.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from nvidia.dali import fn, types

from .config import AugmentConfig

# fn.color_twist's colour space (DALI color_twist.h): RGB → YIQ and its exact inverse.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.596, -0.274, -0.321],
                       [0.211, -0.523, 0.311]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def draw_color(rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """``(4,)`` float32 ``[brightness, contrast, saturation, hue_degrees]`` for ``fn.color_twist``."""
    b, c, s, h = 1.0, 1.0, 1.0, 0.0
    if rng.uniform() < cfg.jitter_prob:
        b = rng.uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness)
        c = rng.uniform(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast)
        s = rng.uniform(max(0.0, 1 - cfg.saturation), 1 + cfg.saturation)
        h = rng.uniform(-cfg.hue, cfg.hue) * 360.0
    if rng.uniform() < cfg.grayscale_prob:
        s = 0.0
    return np.array([b, c, s, h], dtype=np.float32)


IDENTITY_COLOR = np.array([1.0, 1.0, 1.0, 0.0], dtype=np.float32)


def color_jitter(frames, color):
    """Graph op: ``fn.color_twist`` with per-sample ``[b, c, s, hue°]``; float output.

    On uint8 input the contrast pivot is 128 (DALI picks it from the input type).
    """
    return fn.color_twist(frames, brightness=color[0], contrast=color[1], saturation=color[2],
                          hue=color[3], dtype=types.FLOAT)



# --- NumPy twin -------------------------------------------------------------------------------
def color_jitter_reference(frames: np.ndarray, color: Sequence[float]) -> np.ndarray:
    """``fn.color_twist`` on uint8 input with float output: ``M·rgb + offset`` per pixel.

    ``M = b·c · YIQ→RGB · hue(h°) · diag(1, s, s) · RGB→YIQ`` and
    ``offset = (128 − 128·c)·b``, i.e. contrast pivots on mid-grey.
    """
    b, c, s, h = (float(v) for v in color)
    rad = np.deg2rad(h)
    hue = np.array([[1, 0, 0], [0, np.cos(rad), np.sin(rad)], [0, -np.sin(rad), np.cos(rad)]])
    matrix = b * c * YIQ_TO_RGB @ hue @ np.diag([1.0, s, s]) @ RGB_TO_YIQ
    return frames.astype(np.float64) @ matrix.T + (128.0 - 128.0 * c) * b
