"""The two kinds of clip the methods cut from a window: RGB clips and residual clips.

A method (``moquad.py``, ``mcpnet.py``, ``simclr.py``) is a list of named clips cut from
the same window. Each kind here has three faces that must agree:

* ``draw_*`` — the per-sample parameters, drawn in Python (:class:`~.planner.Planner`);
* ``*_graph`` — the DALI nodes that build the clip from the window and those parameters;
* ``*_reference`` — the same clip from NumPy arrays with :mod:`.reference` (the oracle
  and the reference loader).

An RGB clip may be appearance-disturbed (RAD inter / intra, BE); a residual clip is
MCPNet's long-range residual. The parameters of the clip ``name`` are named by
:class:`~.planner.ParamKeys` ``(name)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from . import augment, clips, fused, rad, reference, residual
from .augment import AugmentConfig
from .planner import ParamKeys


@dataclass
class AppearanceConfig:
    """Appearance disturbance (MoQuad §3.1, Tab. 5 left): ``op`` in rad_inter / rad_intra / be / none."""

    op: str = "rad_inter"
    grid: int = 5  # k: the noise is a k × k mosaic
    rad_lambda: Tuple[float, float] = (0.1, 0.5)
    be_lambda: Tuple[float, float] = (0.0, 0.3)

    def __post_init__(self):
        if self.op not in rad.APPEARANCE_OPS:
            raise ValueError(f"appearance op {self.op!r}; choose one of {rad.APPEARANCE_OPS}")
        if self.grid < 1:
            raise ValueError(f"appearance grid k must be >= 1, got {self.grid}")


@dataclass
class ClipConfig:
    """What every clip of a method shares: frames per clip, speeds, augmentation."""

    frames: int = 16
    speeds: Tuple[int, ...] = (1, 2)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Frames of the video each sample's clips are drawn from; 0: the fewest its clips need.
    # A longer window lets a sample's clips start further apart in time (CVRL's temporal
    # sampling), so two clips of one video share less than their frames' static content.
    window: int = 0

    def __post_init__(self):
        if self.frames < 1 or not self.speeds or min(self.speeds) < 1:
            raise ValueError(f"need frames >= 1 and positive speeds, got frames={self.frames} speeds={self.speeds}")
        if self.window < 0:
            raise ValueError(f"clip.window must be >= 0 (0: the fewest frames the clips need), got {self.window}")


# --- draws ---------------------------------------------------------------------------------
def draw_rgb(rng, name: str, cfg: ClipConfig, speed: int, valid: int, frame_hw, motion: str = "speed",
             appearance: Optional[AppearanceConfig] = None, batch_rng=None, slot: int = 0,
             batch_size: int = 1) -> Dict[str, np.ndarray]:
    """Parameters of an RGB clip at ``speed``, optionally appearance-disturbed."""
    k = ParamKeys(name)
    params = {k.idx: clips.draw_clip_indices(rng, cfg.frames, speed, valid, motion),
              k.roi: augment.draw_crop(rng, frame_hw, cfg.augment),
              k.color: augment.draw_color(rng, cfg.augment)}
    if appearance is not None and appearance.op != "none":
        params.update(draw_appearance(rng, name, appearance, valid, cfg.frames, batch_rng, slot, batch_size))
    return params


def draw_appearance(rng, name: str, cfg: AppearanceConfig, valid: int, frames: int, batch_rng, slot: int,
                    batch_size: int) -> Dict[str, np.ndarray]:
    k = ParamKeys(name)
    if cfg.op == "be":  # one frame of the clip itself
        return {k.frame: np.array([rng.integers(frames)], np.int32), k.lam: rad.draw_lambda(rng, cfg.be_lambda)}
    params = {k.frame: np.array([rng.integers(valid)], np.int32), k.lam: rad.draw_lambda(rng, cfg.rad_lambda)}
    if cfg.op == "rad_inter":
        # Every sample draws the batch's derangement from the shared stream and keeps its entry.
        params[k.partner] = np.array(rad.draw_derangement(batch_rng, batch_size)[slot], np.int32)
    return params


def draw_residual(rng, name: str, cfg: ClipConfig, speed: int, gap: int, valid: int, frame_hw) -> Dict[str, np.ndarray]:
    """Parameters of a residual clip: ``2T`` indices (clip, then partners ``gap·speed`` later)."""
    k = ParamKeys(name)
    return {k.idx: clips.draw_residual_indices(rng, cfg.frames, speed, gap, valid),
            k.roi: augment.draw_crop(rng, frame_hw, cfg.augment),
            k.color: augment.draw_color(rng, cfg.augment)}


def keys_of(name: str, appearance: Optional[AppearanceConfig] = None) -> Tuple[str, ...]:
    """The parameter names :func:`draw_rgb` / :func:`draw_residual` return for the clip ``name``."""
    k = ParamKeys(name)
    keys = [k.idx, k.roi, k.color]
    if appearance is not None and appearance.op != "none":
        keys += [k.frame, k.lam] + ([k.partner] if appearance.op == "rad_inter" else [])
    return tuple(keys)


# --- graphs --------------------------------------------------------------------------------
def rgb_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype, appearance: Optional[AppearanceConfig] = None):
    """DALI nodes: cut → crop/flip/resize → colour → (RAD | BE) → normalise; ``(C, T, H, W)``.

    On the CPU one fused operator does all of it (:mod:`.fused`) when Numba is usable;
    the RAD mosaic is still built by DALI's operators, at the output size, and handed to it.
    """
    a, k = cfg.augment, ParamKeys(name)
    if fused.usable(window, a.antialias):
        noise = lam = be_frame = None
        if appearance is not None and appearance.op != "none":
            lam = p[k.lam]
            if appearance.op == "be":
                be_frame = p[k.frame]
            else:
                noise = _rad_mosaic(window, p, k, appearance, a)
        x = fused.rgb_clip(window, p[k.idx], p[k.roi], p[k.color], a.size, a.mean, a.std, noise, lam, be_frame)
        return fused.as_clip(x, dtype)
    x = augment.crop_resize(clips.cut(window, p[k.idx]), p[k.roi], a.size, a.antialias)
    x = augment.color_jitter(x, p[k.color])
    if appearance is not None and appearance.op != "none":
        noise = rad.pick_frame(x, p[k.frame]) if appearance.op == "be" else _rad_mosaic(window, p, k, appearance, a)
        x = rad.blend(x, noise, p[k.lam])
    return augment.normalize(x, a.mean, a.std, dtype)


def _rad_mosaic(window, p: Dict, k: ParamKeys, appearance: AppearanceConfig, a: AugmentConfig):
    """DALI nodes: the RAD noise frame at the output size (inter: the one the partner lends)."""
    noise = rad.rad_noise(rad.pick_frame(window, p[k.frame]), appearance.grid, a.size, a.antialias)
    return rad.borrow(noise, p[k.partner]) if appearance.op == "rad_inter" else noise


def residual_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype):
    """DALI nodes: cut 2T → crop/flip/resize → colour → |first − second| → scale; ``(C, T, H, W)``.

    On the CPU one fused operator (:mod:`.fused`) when Numba is usable.
    """
    a, k = cfg.augment, ParamKeys(name)
    if fused.usable(window, a.antialias):
        x = fused.residual_clip(window, p[k.idx], p[k.roi], p[k.color], a.size, a.residual_std)
        return fused.as_clip(x, dtype)
    x = augment.crop_resize(clips.cut(window, p[k.idx]), p[k.roi], a.size, a.antialias)
    x = residual.residual_clip(augment.color_jitter(x, p[k.color]), cfg.frames)
    return augment.normalize(x, (0.0, 0.0, 0.0), (a.residual_std,) * 3, dtype)


# --- references ----------------------------------------------------------------------------
def rgb_reference(windows: Sequence[np.ndarray], params: Sequence[Dict], slot: int, name: str, cfg: ClipConfig,
                  appearance: Optional[AppearanceConfig] = None) -> np.ndarray:
    """NumPy twin of :func:`rgb_graph` for sample ``slot`` of a batch (RAD inter reads another window)."""
    a, p, window, k = cfg.augment, params[slot], windows[slot], ParamKeys(name)
    x = reference.resize_roi(reference.cut(window, p[k.idx]), p[k.roi], a.size)
    x = reference.color_twist(x, p[k.color])
    if appearance is not None and appearance.op != "none":
        if appearance.op == "be":
            noise = reference.cut(x, p[k.frame])
        else:
            lender = int(p[k.partner]) if appearance.op == "rad_inter" else slot
            frame = reference.cut(windows[lender], params[lender][k.frame])
            noise = reference.rad_noise(frame, appearance.grid, a.size)
        x = reference.blend(x, noise, p[k.lam])
    return reference.normalize(x, a.mean, a.std)


def residual_reference(window: np.ndarray, p: Dict, name: str, cfg: ClipConfig) -> np.ndarray:
    a, k = cfg.augment, ParamKeys(name)
    x = reference.resize_roi(reference.cut(window, p[k.idx]), p[k.roi], a.size)
    x = reference.residual(reference.color_twist(x, p[k.color]), cfg.frames)
    return reference.normalize(x, (0.0, 0.0, 0.0), (a.residual_std,) * 3)


def scalar(value, dtype=np.int64) -> np.ndarray:
    """A per-sample value (a speed, a flag) as the 0-d array the source hands to the graph."""
    return np.array(value, dtype=dtype)
