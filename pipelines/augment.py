"""Clip-consistent spatial and colour augmentation, and normalisation to ``(C, T, H, W)``.

One draw per clip, applied to every frame of it, independent across clips:

* random resized crop + horizontal flip, done by one ``fn.resize`` whose region of
  interest is the crop (a flipped crop has ``x0 > x1``) — crop, flip and resize in one op;
* colour jitter (brightness, contrast, saturation, hue) with probability, and random
  grayscale, done by one ``fn.color_twist`` (grayscale = saturation 0 in its YIQ space);
* normalisation by ``fn.crop_mirror_normalize`` with ``output_layout="CFHW"``.

Every probability and strength lives in :class:`AugmentConfig`; set ``flip_prob=0`` where
the direction of motion is the signal (the demo data). Parameters are drawn in Python by
:func:`draw_crop` / :func:`draw_color` so that the DALI graph and the reference loader
apply identical augmentations; the ops here only consume them.

Differences from torchvision's ``ColorJitter`` worth knowing: DALI applies the four
adjustments as one colour matrix in a fixed order, contrast pivots on mid-grey (128)
rather than the image mean, and saturation/hue act in YIQ rather than HSV.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from nvidia.dali import fn, types

# Kinetics-400 channel statistics (as used by torchvision's video models).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass
class AugmentConfig:
    """Augmentation of one clip. Crop ``area`` is a fraction of the frame, ``ratio`` is w/h in pixels."""

    size: Tuple[int, int] = (112, 112)
    crop_area: Tuple[float, float] = (0.3, 1.0)
    crop_ratio: Tuple[float, float] = (0.5, 2.0)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # fraction of the hue circle, as torchvision: 0.1 → ±36°
    grayscale_prob: float = 0.2
    mean: Tuple[float, float, float] = KINETICS_MEAN
    std: Tuple[float, float, float] = KINETICS_STD
    residual_std: float = 0.225
    antialias: bool = False

    def __post_init__(self):
        for name in ("flip_prob", "jitter_prob", "grayscale_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {value}")
        lo, hi = self.crop_area
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"augment.crop_area must satisfy 0 < a <= b <= 1, got {list(self.crop_area)}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"augment.crop_ratio must satisfy 0 < a <= b, got {list(self.crop_ratio)}")
        if min(self.size) < 1:
            raise ValueError(f"augment.size must be positive, got {list(self.size)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue must lie in [0, 0.5], got {self.hue}")


def draw_crop(rng: np.random.Generator, frame_hw: Sequence[int], cfg: AugmentConfig) -> np.ndarray:
    """``(4,)`` float32 ``[y0, x0, y1, x1]``: a random resized crop in pixels, x swapped when flipped.

    Area and aspect ratio are drawn as torchvision's ``RandomResizedCrop`` does (log-uniform
    ratio, up to ten tries); when no try fits, the largest centred crop with the ratio
    clamped to the allowed range is used.
    """
    h, w = float(frame_hw[0]), float(frame_hw[1])
    area = h * w
    log_lo, log_hi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*cfg.crop_area)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        cw, ch = math.sqrt(target * ratio), math.sqrt(target / ratio)
        if 0 < cw <= w and 0 < ch <= h:
            y0, x0 = rng.uniform(0, h - ch), rng.uniform(0, w - cw)
            break
    else:
        ratio = min(max(w / h, cfg.crop_ratio[0]), cfg.crop_ratio[1])
        cw, ch = (w, w / ratio) if w / h < ratio else (h * ratio, h)
        y0, x0 = (h - ch) / 2, (w - cw) / 2
    x1, y1 = x0 + cw, y0 + ch
    if rng.uniform() < cfg.flip_prob:
        x0, x1 = x1, x0
    return np.array([y0, x0, y1, x1], dtype=np.float32)


def center_crop(frame_hw: Sequence[int], size: Sequence[int], scale: float = 1.0) -> np.ndarray:
    """``(4,)`` float32 ROI of the largest centred crop with the output's aspect ratio (evaluation)."""
    h, w = float(frame_hw[0]), float(frame_hw[1])
    ratio = size[1] / size[0]
    ch, cw = (h, h * ratio) if w / h >= ratio else (w / ratio, w)
    ch, cw = ch * scale, cw * scale
    y0, x0 = (h - ch) / 2, (w - cw) / 2
    return np.array([y0, x0, y0 + ch, x0 + cw], dtype=np.float32)


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


def crop_resize(frames, roi, size: Sequence[int], antialias: bool = False):
    """Graph op: crop ``roi`` ((4,) ``[y0, x0, y1, x1]`` per sample), flip if ``x0 > x1``, resize; uint8 out."""
    return fn.resize(frames, size=list(size), roi_start=roi[0:2], roi_end=roi[2:4], roi_relative=False,
                     interp_type=types.INTERP_LINEAR, antialias=antialias)


def color_jitter(frames, color):
    """Graph op: ``fn.color_twist`` with per-sample ``[b, c, s, hue°]``; float output.

    On uint8 input the contrast pivot is 128 (DALI picks it from the input type).
    """
    return fn.color_twist(frames, brightness=color[0], contrast=color[1], saturation=color[2],
                          hue=color[3], dtype=types.FLOAT)


def normalize(frames, mean: Sequence[float], std: Sequence[float], dtype):
    """Graph op: ``(x/255 − mean)/std`` per channel, ``FHWC`` → ``CFHW``, ``dtype`` out."""
    return fn.crop_mirror_normalize(frames, mean=[255.0 * m for m in mean], std=[255.0 * s for s in std],
                                    output_layout="CFHW", dtype=dtype)
