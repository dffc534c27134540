"""Colour jitter and grayscale of a clip (one draw per clip): draw, DALI op, NumPy twin.

The jitter is four adjustments in a fixed order — brightness, contrast, saturation, hue —
each clamped to ``[0, 255]`` before the next, as torchvision's ``ColorJitter`` clamps after
every adjustment (so a jittered clip keeps the value range, and the statistics, of a
clean one). Grayscale is saturation 0. The draw happens in Python (:func:`draw_color`).

Each adjustment is an affine map of the RGB pixel (:func:`colour_steps`). Brightness
(``b·x``) and saturation (a blend with the grey ``Y = 0.299 R + 0.587 G + 0.114 B``) are
torchvision's up to the grey weights (0.2989 there); differences worth knowing: the order
is fixed where torchvision draws one per clip, contrast pivots on mid-grey (128) rather
than the frame's mean grey, and hue rotates the chroma in YIQ rather than shifting it in
HSV.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali import math as dmath

from .config import AugmentConfig
from .base import Op, Param

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


def colour_steps(color: Sequence[float]):
    """The four adjustments of ``[b, c, s, hue°]`` as ``(matrix (3, 3), offset (3,))`` affine maps of RGB, in order."""
    b, c, s, h = (float(v) for v in color)
    rad = np.deg2rad(h)
    hue = np.array([[1, 0, 0], [0, np.cos(rad), np.sin(rad)], [0, -np.sin(rad), np.cos(rad)]])
    return [(b * np.eye(3), np.zeros(3)),
            (c * np.eye(3), np.full(3, 128.0 * (1.0 - c))),
            (YIQ_TO_RGB @ np.diag([1.0, s, s]) @ RGB_TO_YIQ, np.zeros(3)),
            (YIQ_TO_RGB @ hue @ RGB_TO_YIQ, np.zeros(3))]


def _clamp(x):
    return dmath.clamp(x, 0.0, 255.0)


def color_jitter(frames, color):
    """Graph op: the four adjustments of per-sample ``[b, c, s, hue°]``, each clamped to [0, 255]; float output.

    Brightness and contrast are arithmetic (``fn.color_twist`` would pivot contrast on half
    the input type's range: 0.5 for float), saturation and hue are ``fn.color_twist`` on
    float input (CPU and GPU backends accept it).
    """
    b, c, s, h = color[0], color[1], color[2], color[3]
    if frames.device == "gpu":  # per-sample scalars as inputs of a GPU arithmetic operator (s, h stay arguments)
        b, c = b.gpu(), c.gpu()
    x = _clamp(frames * b)
    x = _clamp(x * c + (1.0 - c) * 128.0)
    x = _clamp(fn.color_twist(x, saturation=s, dtype=types.FLOAT))
    return _clamp(fn.color_twist(x, hue=h, dtype=types.FLOAT))


# --- NumPy twin -------------------------------------------------------------------------------
def color_jitter_reference(frames: np.ndarray, color: Sequence[float]) -> np.ndarray:
    """The four adjustments of :func:`colour_steps` applied in order, each clamped to [0, 255]; float64."""
    x = frames.astype(np.float64)
    for matrix, offset in colour_steps(color):
        x = np.clip(x @ matrix.T + offset, 0.0, 255.0)
    return x


# --- the op ---------------------------------------------------------------------------------
class Colour(Op):
    """Colour jitter and grayscale: ``color`` ``[b, c, s, hue°]``; the fused kernels' ``colour`` slot."""

    name = "colour"
    params = (Param("color", "float32"),)
    slots = ("colour",)

    def draw(self, rng, clip):
        return {"color": draw_color(rng, clip.cfg.augment)}

    def graph(self, x, p, clip):
        return color_jitter(x, p["color"])

    def reference(self, x, p, clip):
        return color_jitter_reference(x, p["color"])

    def pack(self, p, clip):
        return (p["color"],)
