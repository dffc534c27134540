"""The two kinds of clip the methods cut from a window, each a fixed list of ops.

A method (``planners/moquad.py``, ``mcpnet.py``, ``simclr.py``) is a list of named clips cut
from the same window. A clip is built by a recipe — the ops of this folder in order:

* an RGB clip: ``cut → crop → colour → [blend] → normalise`` (``blend``: RAD inter / intra
  or BE, for an appearance-disturbed clip);
* a long-range residual clip: ``cut → crop → colour → residual → normalise`` (MCPNet Eq. 2;
  the cut takes ``2T`` frames, the clip and its partners).

Each recipe has three faces that must agree, and all three are driven by the same op list
(:func:`rgb_ops`, :func:`residual_ops`):

* ``draw_*`` — the per-sample parameters, drawn in Python (:class:`~..planners.Planner`);
* ``*_graph`` — the DALI nodes. On the GPU (and on the CPU without Numba) each op is its
  DALI operator, applied in list order; on the CPU one fused operator per clip
  (:mod:`.fused`) runs the whole list, and refuses a list its kernels do not implement —
  an op added to a recipe without its kernel fails at graph definition, it is never
  silently skipped on one device;
* ``*_reference`` — the same clip from NumPy arrays (the oracle and the reference loader).

The parameters of the clip ``name`` are named by :class:`~..planners.ParamKeys` ``(name)``.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ..planners.base import ParamKeys
from . import blend, colour, crop, cut, fused, normalise, residual
from .config import AppearanceConfig, AugmentConfig, ClipConfig

__all__ = ["AppearanceConfig", "ClipConfig", "draw_appearance", "draw_residual", "draw_rgb", "keys_of",
           "residual_graph", "residual_ops", "residual_reference", "rgb_graph", "rgb_ops", "rgb_reference", "scalar"]


def disturbed(appearance: Optional[AppearanceConfig]) -> bool:
    return appearance is not None and appearance.op != "none"


def rgb_ops(appearance: Optional[AppearanceConfig] = None) -> Tuple[str, ...]:
    """The ops of an RGB clip, in order."""
    return ("cut", "crop", "colour") + (("blend",) if disturbed(appearance) else ()) + ("normalise",)


def residual_ops() -> Tuple[str, ...]:
    """The ops of a long-range residual clip, in order."""
    return ("cut", "crop", "colour", "residual", "normalise")


# --- draws ---------------------------------------------------------------------------------
def draw_rgb(rng, name: str, cfg: ClipConfig, speed: int, valid: int, frame_hw, motion: str = "speed",
             appearance: Optional[AppearanceConfig] = None, batch_rng=None, slot: int = 0,
             batch_size: int = 1) -> Dict[str, np.ndarray]:
    """Parameters of an RGB clip at ``speed``, optionally appearance-disturbed."""
    k = ParamKeys(name)
    params = {k.idx: cut.draw_clip_indices(rng, cfg.frames, speed, valid, motion),
              k.roi: crop.draw_crop(rng, frame_hw, cfg.augment),
              k.color: colour.draw_color(rng, cfg.augment)}
    if disturbed(appearance):
        params.update(draw_appearance(rng, name, appearance, valid, cfg.frames, batch_rng, slot, batch_size))
    return params


def draw_appearance(rng, name: str, cfg: AppearanceConfig, valid: int, frames: int, batch_rng, slot: int,
                    batch_size: int) -> Dict[str, np.ndarray]:
    k = ParamKeys(name)
    if cfg.op == "be":  # one frame of the clip itself
        return {k.frame: np.array([rng.integers(frames)], np.int32), k.lam: blend.draw_lambda(rng, cfg.be_lambda)}
    params = {k.frame: np.array([rng.integers(valid)], np.int32), k.lam: blend.draw_lambda(rng, cfg.rad_lambda)}
    if cfg.op == "rad_inter":
        # Every sample draws the batch's derangement from the shared stream and keeps its entry.
        params[k.partner] = np.array(blend.draw_derangement(batch_rng, batch_size)[slot], np.int32)
    return params


def draw_residual(rng, name: str, cfg: ClipConfig, speed: int, gap: int, valid: int, frame_hw,
                  reverse: bool = False) -> Dict[str, np.ndarray]:
    """Parameters of a residual clip: ``2T`` indices (clip, then partners ``gap·speed`` later; ``reverse``: backwards)."""
    k = ParamKeys(name)
    return {k.idx: cut.draw_residual_indices(rng, cfg.frames, speed, gap, valid, reverse),
            k.roi: crop.draw_crop(rng, frame_hw, cfg.augment),
            k.color: colour.draw_color(rng, cfg.augment)}


def keys_of(name: str, appearance: Optional[AppearanceConfig] = None) -> Tuple[str, ...]:
    """The parameter names :func:`draw_rgb` / :func:`draw_residual` return for the clip ``name``."""
    k = ParamKeys(name)
    keys = [k.idx, k.roi, k.color]
    if disturbed(appearance):
        keys += [k.frame, k.lam] + ([k.partner] if appearance.op == "rad_inter" else [])
    return tuple(keys)


# --- graphs --------------------------------------------------------------------------------
def _apply(ops: Sequence[str], x, steps: Dict[str, Callable]):
    """``x`` through the steps named by ``ops``, in order (each step is one op's DALI operator or NumPy twin)."""
    for op in ops:
        x = steps[op](x)
    return x


def rgb_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype, appearance: Optional[AppearanceConfig] = None):
    """DALI nodes of an RGB clip (:func:`rgb_ops`); ``(C, T, H, W)`` in ``dtype``.

    On the CPU one fused operator runs the whole list (:mod:`.fused`) when Numba is usable;
    the RAD mosaic is still built by DALI's operators, at the output size, and handed to it.
    """
    a, k, ops = cfg.augment, ParamKeys(name), rgb_ops(appearance)
    mosaic = None
    if disturbed(appearance) and appearance.op != "be":
        mosaic = _rad_mosaic(window, p, k, appearance, a)
    if fused.usable(window, a.antialias):
        extra = {}
        if disturbed(appearance):
            extra = {"lam": p[k.lam], **({"be_frame": p[k.frame]} if appearance.op == "be" else {"noise": mosaic})}
        return fused.as_clip(fused.rgb_clip(ops, window, p[k.idx], p[k.roi], p[k.color], a.size, a.mean, a.std,
                                            **extra), dtype)

    def noise_of(x):
        return blend.pick_frame(x, p[k.frame]) if appearance.op == "be" else mosaic

    return _apply(ops, window, {
        "cut": lambda x: cut.cut(x, p[k.idx]),
        "crop": lambda x: crop.crop_resize(x, p[k.roi], a.size, a.antialias),
        "colour": lambda x: colour.color_jitter(x, p[k.color]),
        "blend": lambda x: blend.blend(x, noise_of(x), p[k.lam]),
        "normalise": lambda x: normalise.normalize(x, a.mean, a.std, dtype),
    })


def _rad_mosaic(window, p: Dict, k: ParamKeys, appearance: AppearanceConfig, a: AugmentConfig):
    """DALI nodes: the RAD noise frame at the output size (inter: the one the partner lends)."""
    noise = blend.rad_noise(blend.pick_frame(window, p[k.frame]), appearance.grid, a.size, a.antialias)
    return blend.borrow(noise, p[k.partner]) if appearance.op == "rad_inter" else noise


def residual_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype):
    """DALI nodes of a residual clip (:func:`residual_ops`); ``(C, T, H, W)`` in ``dtype``.

    On the CPU one fused operator (:mod:`.fused`) when Numba is usable.
    """
    a, k, ops = cfg.augment, ParamKeys(name), residual_ops()
    if fused.usable(window, a.antialias):
        return fused.as_clip(fused.residual_clip(ops, window, p[k.idx], p[k.roi], p[k.color], a.size,
                                                 a.residual_std), dtype)
    return _apply(ops, window, {
        "cut": lambda x: cut.cut(x, p[k.idx]),
        "crop": lambda x: crop.crop_resize(x, p[k.roi], a.size, a.antialias),
        "colour": lambda x: colour.color_jitter(x, p[k.color]),
        "residual": lambda x: residual.residual_clip(x, cfg.frames),
        "normalise": lambda x: normalise.normalize(x, (0.0, 0.0, 0.0), (a.residual_std,) * 3, dtype),
    })


# --- references ----------------------------------------------------------------------------
def rgb_reference(windows: Sequence[np.ndarray], params: Sequence[Dict], slot: int, name: str, cfg: ClipConfig,
                  appearance: Optional[AppearanceConfig] = None) -> np.ndarray:
    """NumPy twin of :func:`rgb_graph` for sample ``slot`` of a batch (RAD inter reads another window)."""
    a, p, k = cfg.augment, params[slot], ParamKeys(name)

    def noise_of(x):
        if appearance.op == "be":
            return cut.cut_reference(x, p[k.frame])
        lender = int(p[k.partner]) if appearance.op == "rad_inter" else slot
        frame = cut.cut_reference(windows[lender], params[lender][k.frame])
        return blend.rad_noise_reference(frame, appearance.grid, a.size)

    return _apply(rgb_ops(appearance), windows[slot], {
        "cut": lambda x: cut.cut_reference(x, p[k.idx]),
        "crop": lambda x: crop.crop_resize_reference(x, p[k.roi], a.size),
        "colour": lambda x: colour.color_jitter_reference(x, p[k.color]),
        "blend": lambda x: blend.blend_reference(x, noise_of(x), p[k.lam]),
        "normalise": lambda x: normalise.normalize_reference(x, a.mean, a.std),
    })


def residual_reference(window: np.ndarray, p: Dict, name: str, cfg: ClipConfig) -> np.ndarray:
    """NumPy twin of :func:`residual_graph`."""
    a, k = cfg.augment, ParamKeys(name)
    return _apply(residual_ops(), window, {
        "cut": lambda x: cut.cut_reference(x, p[k.idx]),
        "crop": lambda x: crop.crop_resize_reference(x, p[k.roi], a.size),
        "colour": lambda x: colour.color_jitter_reference(x, p[k.color]),
        "residual": lambda x: residual.residual_reference(x, cfg.frames),
        "normalise": lambda x: normalise.normalize_reference(x, (0.0, 0.0, 0.0), (a.residual_std,) * 3),
    })


def scalar(value, dtype=np.int64) -> np.ndarray:
    """A per-sample value (a speed, a flag) as the 0-d array the source hands to the graph."""
    return np.array(value, dtype=dtype)
