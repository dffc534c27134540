"""The two kinds of clip the methods cut from a window, each a list of ops.

A method (``planners/moquad.py``, ``mcpnet.py``, ``simclr.py``) is a list of named clips cut
from the same window. A clip is built by a recipe — the ops (:class:`~.base.Op`) of
:data:`RECIPES` in order:

* an RGB clip: ``cut → crop → colour → [blend] → normalise`` (``blend``: RAD inter / intra
  or BE, on for an appearance-disturbed clip);
* a long-range residual clip: ``cut → crop → colour → residual → normalise`` (MCPNet Eq. 2;
  the cut takes ``2T`` frames, the clip and its partners).

Each recipe has three faces, all driven by the op list:

* ``draw_*`` — the per-sample parameters, drawn in Python (:class:`~..planners.Planner`),
  each op from a random stream of its own (:func:`.base.draw_clip`);
* ``*_graph`` — the DALI nodes. On the GPU (and on the CPU without Numba) each op's DALI
  step, in list order; on the CPU one fused operator per clip (:mod:`.fused`) runs the
  whole list, and refuses a list its kernels do not implement — an op added to a recipe
  without its kernel fails at graph definition, it is never silently skipped on one device;
* ``*_reference`` — each op's NumPy twin (the oracle and the reference loader).

A new op is a module with an :class:`~.base.Op` subclass and one line in a list here. The
parameters of the clip ``name`` are named by :class:`~.base.ParamKeys` ``(name)``.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, Optional, Sequence, Tuple

import numpy as np

from . import fused
from .base import Clip, Op, ParamKeys, draw_clip, short
from .blend import Blend
from .colour import Colour
from .config import AppearanceConfig, ClipConfig
from .crop import Crop
from .cut import Cut
from .normalise import Normalise
from .residual import Residual

__all__ = ["AppearanceConfig", "ClipConfig", "ParamKeys", "RECIPES", "draw_residual", "draw_rgb", "keys_of",
           "op_names", "param_names", "residual_graph", "residual_reference", "rgb_graph", "rgb_reference", "scalar",
           "window_keys"]

RECIPES: Dict[str, Tuple[Op, ...]] = {
    "rgb": (Cut(), Crop(), Colour(), Blend(), Normalise()),
    "residual": (Cut(residual=True), Crop(), Colour(), Residual(), Normalise(residual=True)),
}


def ops_of(kind: str, clip: Clip) -> Tuple[Op, ...]:
    """The ops the clip runs, in order (those of its recipe that are on for it)."""
    return tuple(op for op in RECIPES[kind] if op.active(clip))


def op_names(kind: str, appearance: Optional[AppearanceConfig] = None) -> Tuple[str, ...]:
    """The fused names of the ops a ``kind`` clip runs (``appearance``: its disturbance), in order."""
    clip = Clip("clip", ClipConfig(), appearance=appearance)
    return tuple(op.fused_name(clip) for op in ops_of(kind, clip))


def param_names() -> FrozenSet[str]:
    """Every parameter name an op of a recipe declares (the attributes of :class:`ParamKeys`)."""
    return frozenset(q.name for ops in RECIPES.values() for op in ops for q in op.params)


def window_keys(clip_specs: Dict[str, Tuple[str, Optional[AppearanceConfig]]]) -> Tuple[str, ...]:
    """The parameter keys of a planner's clips (``Planner.clip_specs``) that are window positions (the frames
    the clips read; :meth:`.base.Op.window_params`)."""
    keys = []
    for name, (kind, appearance) in clip_specs.items():
        clip = Clip(name, ClipConfig(), appearance=appearance)
        keys += [clip.key(q) for op in ops_of(kind, clip) for q in op.window_params(clip)]
    return tuple(keys)


def keys_of(name: str, appearance: Optional[AppearanceConfig] = None, kind: str = "rgb") -> Tuple[str, ...]:
    """The parameter names :func:`draw_rgb` / :func:`draw_residual` return for the clip ``name``."""
    clip = Clip(name, ClipConfig(), appearance=appearance)
    return tuple(clip.key(q.name) for op in ops_of(kind, clip) for q in op.drawn(clip))


# --- draws ---------------------------------------------------------------------------------
def draw_rgb(rng, name: str, cfg: ClipConfig, speed: int, valid: int, frame_hw, motion: str = "speed",
             appearance: Optional[AppearanceConfig] = None, batch_rng=None, slot: int = 0,
             batch_size: int = 1) -> Dict[str, np.ndarray]:
    """Parameters of an RGB clip at ``speed``, optionally appearance-disturbed."""
    clip = Clip(name, cfg, speed=speed, valid=valid, frame_hw=frame_hw, motion=motion, appearance=appearance,
                batch_rng=batch_rng, slot=slot, batch_size=batch_size)
    return draw_clip(rng, RECIPES["rgb"], clip)


def draw_residual(rng, name: str, cfg: ClipConfig, speed: int, gap: int, valid: int, frame_hw,
                  reverse: bool = False) -> Dict[str, np.ndarray]:
    """Parameters of a residual clip: ``2T`` indices (clip, then partners ``gap·speed`` later; ``reverse``: backwards)."""
    clip = Clip(name, cfg, speed=speed, valid=valid, frame_hw=frame_hw, gap=gap, reverse=reverse)
    return draw_clip(rng, RECIPES["residual"], clip)


# --- graphs --------------------------------------------------------------------------------
def _graph(kind: str, window, params: Dict, clip: Clip):
    ops = ops_of(kind, clip)
    p = short(params, clip, ops)
    if fused.usable(window, clip.cfg.augment.antialias):
        return fused.as_clip(fused.build(ops, window, p, clip), clip.dtype)
    x = window
    for op in ops:
        x = op.graph(x, p, clip)
    return x


def rgb_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype, appearance: Optional[AppearanceConfig] = None):
    """DALI nodes of an RGB clip; ``(C, T, H, W)`` in ``dtype`` (on the CPU one fused operator, :mod:`.fused`)."""
    return _graph("rgb", window, p, Clip(name, cfg, appearance=appearance, window=window, dtype=dtype))


def residual_graph(window, p: Dict, name: str, cfg: ClipConfig, dtype):
    """DALI nodes of a residual clip; ``(C, T, H, W)`` in ``dtype`` (on the CPU one fused operator, :mod:`.fused`)."""
    return _graph("residual", window, p, Clip(name, cfg, window=window, dtype=dtype))


# --- references ----------------------------------------------------------------------------
def _reference(kind: str, clip: Clip) -> np.ndarray:
    ops = ops_of(kind, clip)
    p = short(clip.params[clip.slot], clip, ops)
    x = clip.windows[clip.slot]
    for op in ops:
        x = op.reference(x, p, clip)
    return x


def rgb_reference(windows: Sequence[np.ndarray], params: Sequence[Dict], slot: int, name: str, cfg: ClipConfig,
                  appearance: Optional[AppearanceConfig] = None) -> np.ndarray:
    """NumPy twin of :func:`rgb_graph` for sample ``slot`` of a batch (RAD inter reads another window)."""
    return _reference("rgb", Clip(name, cfg, appearance=appearance, windows=windows, params=params, slot=slot))


def residual_reference(window: np.ndarray, p: Dict, name: str, cfg: ClipConfig) -> np.ndarray:
    """NumPy twin of :func:`residual_graph`."""
    return _reference("residual", Clip(name, cfg, windows=[window], params=[p], slot=0))


def scalar(value, dtype=np.int64) -> np.ndarray:
    """A per-sample value (a speed, a flag) as the 0-d array the source hands to the graph."""
    return np.array(value, dtype=dtype)
