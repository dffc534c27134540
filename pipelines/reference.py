"""Slow, readable NumPy twins of every graph op — the tests' oracle and the reference loader's engine.

Each function takes and returns plain arrays in the layout its graph op uses
(``(F, H, W, C)`` frames, uint8 or float) and follows the same conventions, written out:
pixel-centre sampling for resize, DALI's YIQ colour matrix, rounding to uint8 where the
graph outputs uint8. No DALI import here.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from .rad import tile_size

# fn.color_twist's colour space (DALI color_twist.h): RGB → YIQ and its exact inverse.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.596, -0.274, -0.321],
                       [0.211, -0.523, 0.311]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round half away from zero and saturate, as DALI converts float to uint8."""
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), 0, 255).astype(np.uint8)


def cut(window: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """``window[indices]`` along the frame axis (``fn.sequence_rearrange``)."""
    return window[np.asarray(indices, dtype=np.int64)]


def _linear_taps(lo: float, hi: float, out: int, limit: int):
    # Output pixel o samples the input at lo + (o + ½)·(hi − lo)/out − ½ (pixel centres),
    # interpolating its two neighbours; taps outside the image are clamped to the border.
    src = lo + (np.arange(out) + 0.5) * (hi - lo) / out - 0.5
    i0 = np.floor(src).astype(np.int64)
    frac = src - i0
    return np.clip(i0, 0, limit - 1), np.clip(i0 + 1, 0, limit - 1), frac


def resize_roi(frames: np.ndarray, roi: Sequence[float], size: Sequence[int], out_uint8: bool = True) -> np.ndarray:
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


def color_twist(frames: np.ndarray, color: Sequence[float]) -> np.ndarray:
    """``fn.color_twist`` on uint8 input with float output: ``M·rgb + offset`` per pixel.

    ``M = b·c · YIQ→RGB · hue(h°) · diag(1, s, s) · RGB→YIQ`` and
    ``offset = (128 − 128·c)·b``, i.e. contrast pivots on mid-grey.
    """
    b, c, s, h = (float(v) for v in color)
    rad = np.deg2rad(h)
    hue = np.array([[1, 0, 0], [0, np.cos(rad), np.sin(rad)], [0, -np.sin(rad), np.cos(rad)]])
    matrix = b * c * YIQ_TO_RGB @ hue @ np.diag([1.0, s, s]) @ RGB_TO_YIQ
    return frames.astype(np.float64) @ matrix.T + (128.0 - 128.0 * c) * b


def residual(pairs: np.ndarray, num_frames: int) -> np.ndarray:
    """``|F_i − F_{i+t·s}|`` from ``2T`` float frames laid out clip-then-partners (MCPNet Eq. 2)."""
    return np.abs(pairs[:num_frames].astype(np.float64) - pairs[num_frames:2 * num_frames])


def rad_noise(frame: np.ndarray, k: int, size: Tuple[int, int]) -> np.ndarray:
    """``(1, h, w, C)`` uint8 frame → ``(1, H, W, C)`` uint8 mosaic of ``k × k`` shrunken copies."""
    th, tw = tile_size(size, k)
    tile = resize_roi(frame, [0.0, 0.0, frame.shape[1], frame.shape[2]], (th, tw))
    mosaic = np.tile(tile, (1, k, k, 1))
    return mosaic[:, :size[0], :size[1]]


def blend(clip: np.ndarray, noise: np.ndarray, lam: float) -> np.ndarray:
    """``(1 − λ)·clip + λ·noise`` (MoQuad §3.1), ``noise`` a single frame broadcast over time."""
    clip = clip.astype(np.float64)
    return clip + float(lam) * (noise.astype(np.float64) - clip)


def normalize(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x/255 − mean)/std`` per channel, ``(T, H, W, C)`` → ``(C, T, H, W)`` float32."""
    out = (frames.astype(np.float64) / 255.0 - np.asarray(mean)) / np.asarray(std)
    return out.transpose(3, 0, 1, 2).astype(np.float32)
