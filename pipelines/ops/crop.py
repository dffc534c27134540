"""Crop, flip and resize a clip (one draw per clip, every frame alike): draw, DALI op, NumPy twin.

A random resized crop and a horizontal flip are one ``fn.resize`` whose region of interest is
the crop (a flipped crop has ``x0 > x1``): crop, flip and resize in one operator. The crop is
drawn in Python (:func:`draw_crop`, torchvision's ``RandomResizedCrop`` rule) so that the
DALI graph and the reference build identical clips; evaluation takes the centred crop
(:func:`center_crop`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from nvidia.dali import fn, types

from .config import AugmentConfig
from .base import Op, Param


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


def crop_resize(frames, roi, size: Sequence[int], antialias: bool = False):
    """Graph op: crop ``roi`` ((4,) ``[y0, x0, y1, x1]`` per sample), flip if ``x0 > x1``, resize; uint8 out."""
    return fn.resize(frames, size=list(size), roi_start=roi[0:2], roi_end=roi[2:4], roi_relative=False,
                     interp_type=types.INTERP_LINEAR, antialias=antialias)



# --- NumPy twin -------------------------------------------------------------------------------
def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round half away from zero and saturate, as DALI converts float to uint8."""
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), 0, 255).astype(np.uint8)


def _linear_taps(lo: float, hi: float, out: int, limit: int):
    # Output pixel o samples the input at lo + (o + ½)·(hi − lo)/out − ½ (pixel centres),
    # interpolating its two neighbours; taps outside the image are clamped to the border.
    src = lo + (np.arange(out) + 0.5) * (hi - lo) / out - 0.5
    i0 = np.floor(src).astype(np.int64)
    frac = src - i0
    return np.clip(i0, 0, limit - 1), np.clip(i0 + 1, 0, limit - 1), frac


def crop_resize_reference(frames: np.ndarray, roi: Sequence[float], size: Sequence[int], out_uint8: bool = True) -> np.ndarray:
    """Bilinear resize of the region ``roi = [y0, x0, y1, x1]`` of every frame (``fn.resize``, no antialias).

    ``x0 > x1`` mirrors the crop horizontally.
    """
    f = frames.astype(np.float64)
    y0, y1, fy = _linear_taps(roi[0], roi[2], size[0], f.shape[1])
    x0, x1, fx = _linear_taps(roi[1], roi[3], size[1], f.shape[2])
    fx = fx[None, None, :, None]
    top = f[:, y0][:, :, x0] * (1 - fx) + f[:, y0][:, :, x1] * fx
    bottom = f[:, y1][:, :, x0] * (1 - fx) + f[:, y1][:, :, x1] * fx
    fy = fy[None, :, None, None]
    out = top * (1 - fy) + bottom * fy
    return to_uint8(out) if out_uint8 else out


# --- the op ---------------------------------------------------------------------------------
class Crop(Op):
    """Random resized crop and flip, resized to the clip's size."""

    name = "crop"
    params = (Param("roi", "float32"),)

    def draw(self, rng, clip):
        return {"roi": draw_crop(rng, clip.frame_hw, clip.cfg.augment)}

    def graph(self, x, p, clip):
        a = clip.cfg.augment
        return crop_resize(x, p["roi"], a.size, a.antialias)

    def reference(self, x, p, clip):
        return crop_resize_reference(x, p["roi"], clip.cfg.augment.size)

    def kernel_input(self, p, clip):
        return p["roi"]
