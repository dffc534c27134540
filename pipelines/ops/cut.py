"""Window sampling and speed-dilated clip indices (docs/design.md, "Window sampling").

Each sample decodes one window of ``W`` consecutive frames; every clip of the sample is a
list of frame indices into that window, applied in the graph with
``fn.sequence_rearrange`` (strided subscripts on the frame axis are wrong on CPU in DALI
2.4, docs/design.md, "DALI facts"). Index arrays are drawn in Python by the sample planner, so the DALI
graph and the reference loader build identical clips from identical draws.

Speed ``s`` means every ``s``-th frame: a clip of ``T`` frames at speed ``s`` spans
``(T-1)·s + 1`` frames of the window.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from nvidia.dali import fn

from .base import Clip, Op, Param

MOTION_OPS = ("speed", "reverse", "shuffle")


def clip_span(num_frames: int, speed: int) -> int:
    """Window frames covered by a ``num_frames`` clip at ``speed``."""
    return (num_frames - 1) * speed + 1


def residual_span(num_frames: int, speed: int, gap: int) -> int:
    """Window frames covered by a long-range residual clip (frames ``i`` and ``i + gap·speed``)."""
    return (num_frames - 1) * speed + gap * speed + 1


def draw_start(rng: np.random.Generator, span: int, valid: int) -> int:
    """Uniform start so that ``span`` frames fit in the ``valid`` real frames (0 if they cannot)."""
    return int(rng.integers(0, max(valid - span, 0) + 1))


def draw_speed(rng: np.random.Generator, speeds: Sequence[int], exclude: Optional[int] = None) -> int:
    """One speed from ``speeds``, different from ``exclude`` when given."""
    choices = [s for s in speeds if s != exclude]
    if not choices:
        raise ValueError(f"no speed in {list(speeds)} differs from {exclude}; give at least two speeds")
    return int(choices[rng.integers(len(choices))])


def draw_clip_indices(rng: np.random.Generator, num_frames: int, speed: int, valid: int,
                      motion: str = "speed") -> np.ndarray:
    """Window indices of one clip: ``num_frames`` frames at ``speed`` from a random start.

    ``valid`` is the number of real frames in the window; indices past it are clamped to
    the last real frame (the window repeats it, so a short video is padded, never wrapped).
    ``motion`` is the motion-disturbing operation of MoQuad Tab. 5 (right): ``"speed"``
    keeps the order, ``"reverse"`` plays the clip backwards, ``"shuffle"`` permutes it.
    """
    if motion not in MOTION_OPS:
        raise ValueError(f"motion={motion!r}; choose one of {MOTION_OPS}")
    start = draw_start(rng, clip_span(num_frames, speed), valid)
    idx = np.minimum(start + speed * np.arange(num_frames), valid - 1)
    if motion == "reverse":
        idx = idx[::-1]
    elif motion == "shuffle":
        idx = rng.permutation(idx)
    return idx.astype(np.int32)


def draw_residual_indices(rng: np.random.Generator, num_frames: int, speed: int, gap: int,
                          valid: int, reverse: bool = False) -> np.ndarray:
    """``2·num_frames`` window indices: the clip ``i_k`` then its partners ``i_k + gap·speed``.

    MCPNet Eq. 2 applied to the accelerated clip (§3.2): the residual of a clip at speed
    ``s`` with gap ``t`` subtracts frames ``t·s`` apart. Partners past the last real frame
    are clamped to it (no wrap-around). ``reverse`` plays the residual clip backwards (both
    halves reversed, so each residual frame keeps its pair): the residual clip of the
    video played backwards.
    """
    if gap < 1:
        raise ValueError(f"residual gap must be >= 1, got {gap}")
    start = draw_start(rng, residual_span(num_frames, speed, gap), valid)
    first = start + speed * np.arange(num_frames)
    second = first + gap * speed
    if reverse:
        first, second = first[::-1], second[::-1]
    return np.minimum(np.concatenate([first, second]), valid - 1).astype(np.int32)


def cut(window, indices):
    """Graph op: the frames ``indices`` (per-sample int32 array) of each window, ``FHWC``."""
    return fn.sequence_rearrange(window, new_order=indices)


# --- NumPy twin -------------------------------------------------------------------------------
def cut_reference(window: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """``window[indices]`` along the frame axis (``fn.sequence_rearrange``)."""
    return window[np.asarray(indices, dtype=np.int64)]


# --- the op ---------------------------------------------------------------------------------
class Cut(Op):
    """The clip's frames: ``T`` indices at the clip's speed (``residual``: ``2T``, the clip then its partners)."""

    name = "cut"
    params = (Param("idx", "int32"),)

    def __init__(self, residual: bool = False):
        self.residual = residual

    def fused_name(self, clip: Clip) -> str:
        return "cut/residual" if self.residual else "cut"

    def draw(self, rng, clip):
        c = clip.cfg
        if self.residual:
            return {"idx": draw_residual_indices(rng, c.frames, clip.speed, clip.gap, clip.valid, clip.reverse)}
        return {"idx": draw_clip_indices(rng, c.frames, clip.speed, clip.valid, clip.motion)}

    def graph(self, x, p, clip):
        return cut(x, p["idx"])

    def reference(self, x, p, clip):
        return cut_reference(x, p["idx"])

    def window_params(self, clip):
        return ("idx",)

    def kernel_input(self, p, clip):
        return p["idx"]
