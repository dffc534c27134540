"""Appearance disturbance: RAD noise mosaics and the BE mix (MoQuad §3.1, Fig. 3, Tab. 5 left).

RAD builds a noise image ``D`` from one frame: the frame is shrunk to one tile, the tile is
repeated ``k × k`` times and the mosaic is cut to the clip's frame size; ``D`` is then
blended into every frame of the clip as ``(1 − λ)·V + λ·D`` with ``λ ~ U[a, b]`` drawn per
clip (defaults ``k = 5``, ``[0.1, 0.5]``). The frame comes from another video of the batch
(``"inter"``, the paper's choice) or from the clip's own window (``"intra"``). BE (Wang et
al. 2021, the ablation baseline) blends one frame of the clip itself with ``λ ~ U[0, 0.3]``.

The frame for "inter" is taken from the *other* video's window before augmentation, so the
noise carries that video's appearance, not a crop of it; each sample picks the frame that
it lends, and ``fn.permute_batch`` with a derangement hands it to another sample
(docs/design.md, "DALI facts"). Blending happens after colour jitter, on float pixels, so the noise keeps
its own colours.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
from nvidia.dali import fn, types

from .base import Clip, Op, Param
from .config import APPEARANCE_OPS  # noqa: F401  (the names, re-exported)
from .crop import crop_resize_reference
from .cut import cut_reference


def draw_derangement(rng: np.random.Generator, batch_size: int) -> np.ndarray:
    """A permutation with no fixed point: sample ``i`` borrows from ``perm[i] != i``.

    Uniform over derangements by rejection (expected e ≈ 2.7 draws). A batch of one has
    no other video; it borrows from itself.
    """
    if batch_size < 2:
        return np.zeros(batch_size, dtype=np.int32)
    while True:
        perm = rng.permutation(batch_size)
        if not np.any(perm == np.arange(batch_size)):
            return perm.astype(np.int32)


def draw_lambda(rng: np.random.Generator, bounds: Sequence[float]) -> np.ndarray:
    lo, hi = bounds
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"blend weight range must satisfy 0 <= a <= b <= 1, got {list(bounds)}")
    return np.array(rng.uniform(lo, hi), dtype=np.float32)


def tile_size(size: Tuple[int, int], k: int) -> Tuple[int, int]:
    """Tile height and width: ``ceil(size / k)`` so that ``k`` tiles cover the frame."""
    if k < 1:
        raise ValueError(f"RAD grid k must be >= 1, got {k}")
    return math.ceil(size[0] / k), math.ceil(size[1] / k)


def pick_frame(window, frame_index):
    """Graph op: the single frame ``frame_index`` ((1,) int32 per sample) as a 1-frame sequence."""
    return fn.sequence_rearrange(window, new_order=frame_index)


def rad_noise(frame, k: int, size: Tuple[int, int], antialias: bool = False):
    """Graph op: ``(1, h, w, C)`` uint8 frame → ``(1, H, W, C)`` uint8 ``k × k`` mosaic.

    One resize and ``2k`` concatenations (the DALI graph's way; the fused CPU kernel
    resizes the frame to one tile and reads output pixel ``(y, x)`` from the tile's
    ``(y mod th, x mod tw)`` as it blends).
    """
    th, tw = tile_size(size, k)
    tile = fn.resize(frame, size=[th, tw], interp_type=types.INTERP_LINEAR, antialias=antialias)
    row = fn.cat(*([tile] * k), axis=2)
    grid = fn.cat(*([row] * k), axis=1)
    if (th * k, tw * k) != tuple(size):
        grid = fn.crop(grid, crop=list(size), crop_pos_x=0.0, crop_pos_y=0.0)
    return grid


def borrow(noise, partner):
    """Graph op: sample ``i`` receives the noise built by sample ``partner[i]`` (RAD inter)."""
    return fn.permute_batch(noise, indices=partner)


def blend(clip, noise, lam):
    """Graph op: ``(1 − λ)·clip + λ·noise`` on float ``(T, H, W, C)``; ``noise`` is one frame.

    Written as ``clip + λ·(noise − clip)``: three element-wise operators, each its own
    kernel and buffer in DALI 2.4 (docs/design.md, "DALI facts") — the first place a fused kernel pays.
    """
    if clip.device == "gpu":
        noise = noise.gpu() if noise.device == "cpu" else noise
        lam = lam.gpu()
    return clip + lam * (noise - clip)


# --- NumPy twins ------------------------------------------------------------------------------
def rad_noise_reference(frame: np.ndarray, k: int, size: Tuple[int, int]) -> np.ndarray:
    """``(1, h, w, C)`` uint8 frame → ``(1, H, W, C)`` uint8 mosaic of ``k × k`` shrunken copies."""
    th, tw = tile_size(size, k)
    tile = crop_resize_reference(frame, [0.0, 0.0, frame.shape[1], frame.shape[2]], (th, tw))
    mosaic = np.tile(tile, (1, k, k, 1))
    return mosaic[:, :size[0], :size[1]]


def blend_reference(clip: np.ndarray, noise: np.ndarray, lam: float) -> np.ndarray:
    """``(1 − λ)·clip + λ·noise`` (MoQuad §3.1), ``noise`` a single frame broadcast over time."""
    clip = clip.astype(np.float64)
    return clip + float(lam) * (noise.astype(np.float64) - clip)


# --- the op ---------------------------------------------------------------------------------
class Blend(Op):
    """The clip's appearance disturbance (``clip.appearance``): RAD inter / intra or BE; off without one.

    Draws ``frame`` (RAD: the window frame the noise is made of — inter: the one this sample
    lends; BE: a frame of the clip) and ``lam``; RAD inter also ``partner`` (the sample whose
    frame it receives, this sample's entry of the batch's derangement, drawn from the
    batch-wide stream). The fused kernels' ``lam``, ``frame`` and ``grid`` slots; RAD hands
    them the lender's frame, from which the kernel builds the mosaic as it blends.
    """

    name = "blend"
    params = (Param("frame", "int32"), Param("lam", "float32"), Param("partner", "int32"))
    slots = ("lam", "frame", "grid")

    def active(self, clip: Clip) -> bool:
        return clip.appearance is not None and clip.appearance.op != "none"

    def drawn(self, clip: Clip):
        return self.params if clip.appearance.op == "rad_inter" else self.params[:2]

    def fused_name(self, clip: Clip) -> str:
        return "blend/be" if clip.appearance.op == "be" else "blend/rad"

    def draw(self, rng, clip):
        a = clip.appearance
        if a.op == "be":  # one frame of the clip itself
            return {"frame": np.array([rng.integers(clip.cfg.frames)], np.int32), "lam": draw_lambda(rng, a.be_lambda)}
        out = {"frame": np.array([rng.integers(clip.valid)], np.int32), "lam": draw_lambda(rng, a.rad_lambda)}
        if a.op == "rad_inter":  # every sample draws the batch's derangement from the shared stream, keeps its entry
            out["partner"] = np.array(draw_derangement(clip.batch_rng, clip.batch_size)[clip.slot], np.int32)
        return out

    def _lent(self, p, clip):
        """Graph op: the frame the noise is made of, after the batch's exchange (RAD inter)."""
        frame = pick_frame(clip.window, p["frame"])
        return borrow(frame, p["partner"]) if clip.appearance.op == "rad_inter" else frame

    def graph(self, x, p, clip):
        a = clip.appearance
        if a.op == "be":
            noise = pick_frame(x, p["frame"])
        else:
            noise = rad_noise(self._lent(p, clip), a.grid, clip.cfg.augment.size, clip.cfg.augment.antialias)
        return blend(x, noise, p["lam"])

    def reference(self, x, p, clip):
        a = clip.appearance
        if a.op == "be":
            noise = cut_reference(x, p["frame"])
        else:
            lender = int(p["partner"]) if a.op == "rad_inter" else clip.slot
            frame = cut_reference(clip.windows[lender], clip.params[lender][clip.key("frame")])
            noise = rad_noise_reference(frame, a.grid, clip.cfg.augment.size)
        return blend_reference(x, noise, p["lam"])

    def window_params(self, clip):
        return () if clip.appearance.op == "be" else ("frame",)  # BE's frame is a position in the clip

    def kernel_input(self, p, clip):
        return None if clip.appearance.op == "be" else self._lent(p, clip)

    def pack(self, p, clip):
        be = clip.appearance.op == "be"
        return p["lam"], (p["frame"] if be else [0.0]), ([0.0] if be else [float(clip.appearance.grid)])
