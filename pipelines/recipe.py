"""Clips as the methods use them: one draw, one graph, one reference per clip kind.

A method (``moquad.py``, ``mcpnet.py``, ``simclr.py``) is a list of named clips cut from
the same window. Each clip kind here has three faces that must agree:

* ``draw_*`` — the per-sample parameters, drawn in Python (:class:`~.sources.Planner`);
* ``*_graph`` — the DALI nodes that build the clip from the window and those parameters;
* ``*_reference`` — the same clip from NumPy arrays with :mod:`.reference` (the oracle
  and the reference loader).

Parameter keys are ``"<clip>.<what>"``: ``idx`` (window frame indices), ``roi`` (crop box,
``x0 > x1`` when flipped), ``color`` (brightness, contrast, saturation, hue°) and, for an
appearance-disturbed clip, ``frame`` (the window frame its noise is made of — for RAD inter
the frame this sample *lends*), ``partner`` (RAD inter: whose frame it receives) and
``lam`` (blend weight).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import augment, clips, rad, reference, residual
from .augment import AugmentConfig


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

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        self.speeds = tuple(int(s) for s in self.speeds)
        if self.frames < 1 or not self.speeds or min(self.speeds) < 1:
            raise ValueError(f"need frames >= 1 and positive speeds, got frames={self.frames} speeds={self.speeds}")


# --- draws ---------------------------------------------------------------------------------
def draw_rgb(rng, name: str, cfg: ClipConfig, speed: int, valid: int, frame_hw, motion: str = "speed",
             appearance: Optional[AppearanceConfig] = None, batch_rng=None, slot: int = 0,
             batch_size: int = 1) -> Dict[str, np.ndarray]:
    """Parameters of an RGB clip at ``speed``, optionally appearance-disturbed."""
    params = {f"{name}.idx": clips.draw_clip_indices(rng, cfg.frames, speed, valid, motion),
              f"{name}.roi": augment.draw_crop(rng, frame_hw, cfg.augment),
              f"{name}.color": augment.draw_color(rng, cfg.augment)}
    if appearance is not None and appearance.op != "none":
        params.update(draw_appearance(rng, name, appearance, valid, cfg.frames, batch_rng, slot, batch_size))
    return params


def draw_appearance(rng, name: str, cfg: AppearanceConfig, valid: int, frames: int, batch_rng, slot: int,
                    batch_size: int) -> Dict[str, np.ndarray]:
    if cfg.op == "be":  # one frame of the clip itself
        return {f"{name}.frame": np.array([rng.integers(frames)], np.int32),
                f"{name}.lam": rad.draw_lambda(rng, cfg.be_lambda)}
    params = {f"{name}.frame": np.array([rng.integers(valid)], np.int32),
              f"{name}.lam": rad.draw_lambda(rng, cfg.rad_lambda)}
    if cfg.op == "rad_inter":
        # Every sample draws the batch's derangement from the shared stream and keeps its entry.
        params[f"{name}.partner"] = np.array(rad.draw_derangement(batch_rng, batch_size)[slot], np.int32)
    return params


def draw_residual(rng, name: str, cfg: ClipConfig, speed: int, gap: int, valid: int, frame_hw) -> Dict[str, np.ndarray]:
    """Parameters of a residual clip: ``2T`` indices (clip, then partners ``gap·speed`` later)."""
    return {f"{name}.idx": clips.draw_residual_indices(rng, cfg.frames, speed, gap, valid),
            f"{name}.roi": augment.draw_crop(rng, frame_hw, cfg.augment),
            f"{name}.color": augment.draw_color(rng, cfg.augment)}


def keys_of(name: str, appearance: Optional[AppearanceConfig] = None) -> Tuple[str, ...]:
    keys = [f"{name}.idx", f"{name}.roi", f"{name}.color"]
    if appearance is not None and appearance.op != "none":
        keys += [f"{name}.frame", f"{name}.lam"] + ([f"{name}.partner"] if appearance.op == "rad_inter" else [])
    return tuple(keys)


# --- graphs --------------------------------------------------------------------------------
def rgb_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype, appearance: Optional[AppearanceConfig] = None):
    """DALI nodes: cut → crop/flip/resize → colour → (RAD | BE) → normalise; ``(C, T, H, W)``."""
    a = cfg.augment
    x = augment.crop_resize(clips.cut(window, p[f"{name}.idx"]), p[f"{name}.roi"], a.size, a.antialias)
    x = augment.color_jitter(x, p[f"{name}.color"])
    if appearance is not None and appearance.op != "none":
        if appearance.op == "be":
            noise = rad.pick_frame(x, p[f"{name}.frame"])
        else:
            noise = rad.rad_noise(rad.pick_frame(window, p[f"{name}.frame"]), appearance.grid, a.size, a.antialias)
            if appearance.op == "rad_inter":
                noise = rad.borrow(noise, p[f"{name}.partner"])
        x = rad.blend(x, noise, p[f"{name}.lam"])
    return augment.normalize(x, a.mean, a.std, dtype)


def residual_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype):
    """DALI nodes: cut 2T → crop/flip/resize → colour → |first − second| → scale; ``(C, T, H, W)``."""
    a = cfg.augment
    x = augment.crop_resize(clips.cut(window, p[f"{name}.idx"]), p[f"{name}.roi"], a.size, a.antialias)
    x = residual.residual_clip(augment.color_jitter(x, p[f"{name}.color"]), cfg.frames)
    return augment.normalize(x, (0.0, 0.0, 0.0), (a.residual_std,) * 3, dtype)


# --- references ----------------------------------------------------------------------------
def rgb_reference(windows: Sequence[np.ndarray], params: Sequence[Dict], slot: int, name: str, cfg: ClipConfig,
                  appearance: Optional[AppearanceConfig] = None) -> np.ndarray:
    """NumPy twin of :func:`rgb_graph` for sample ``slot`` of a batch (RAD inter reads another window)."""
    a, p, window = cfg.augment, params[slot], windows[slot]
    x = reference.resize_roi(reference.cut(window, p[f"{name}.idx"]), p[f"{name}.roi"], a.size)
    x = reference.color_twist(x, p[f"{name}.color"])
    if appearance is not None and appearance.op != "none":
        if appearance.op == "be":
            noise = reference.cut(x, p[f"{name}.frame"])
        else:
            lender = int(p[f"{name}.partner"]) if appearance.op == "rad_inter" else slot
            frame = reference.cut(windows[lender], params[lender][f"{name}.frame"])
            noise = reference.rad_noise(frame, appearance.grid, a.size)
        x = reference.blend(x, noise, p[f"{name}.lam"])
    return reference.normalize(x, a.mean, a.std)


def residual_reference(window: np.ndarray, p: Dict, name: str, cfg: ClipConfig) -> np.ndarray:
    a = cfg.augment
    x = reference.resize_roi(reference.cut(window, p[f"{name}.idx"]), p[f"{name}.roi"], a.size)
    x = reference.residual(reference.color_twist(x, p[f"{name}.color"]), cfg.frames)
    return reference.normalize(x, (0.0, 0.0, 0.0), (a.residual_std,) * 3)


def scalar(value, dtype=np.int64) -> np.ndarray:
    return np.array(value, dtype=dtype)


def as_list(value) -> List:
    return list(value) if isinstance(value, (list, tuple)) else [value]
