"""MCPNet samples (Huang et al., MCPNet §3, Fig. 2; ablations Tab. 1–3).

For every video of the batch, from one decoded window:

* ``rgb``       r  — an RGB clip at speed s_r;
* ``res_same``  l1 — a long-range residual clip at s_r (MIP positive, Eq. 3);
* ``res_diff``  l2 — a long-range residual clip at s_d ≠ s_r (MIP negative);
* ``cip_same``     — per sample, whether CIP pairs r with l1 (True) or l2 (False): the
  paper's "different speed" setting is all False; Tab. 2's "same" and "random" settings
  are all True and a coin per sample. No extra clip is cut, so the model encodes each
  clip once.

The residual clip of speed s and gap t subtracts frames t·s apart (Eq. 2 applied to the
accelerated clip); ``residual_view`` switches it to the plain residual (t = 1) or to RGB
(Tab. 3), ``gap`` is Tab. 1's t.

``mip_negative`` (not in the paper): ``"speed"`` is the paper's l2, another speed;
``"reverse"`` makes l2 the residual clip at the RGB clip's own speed played backwards, so
that MIP contrasts directions rather than speeds (as MoQuad's Tab. 5 "reverse" does for its
intra negatives). CIP must then pair r with l1 (``cip_speed: same``): pairing it with the
reversed clip would teach the network that a motion and its reverse are one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import shown
from ..ops import cut, recipes
from ..ops.config import ClipConfig
from .base import Planner

CIP_SPEEDS = ("different", "same", "random")
MIP_NEGATIVES = ("speed", "reverse")
RESIDUAL_VIEWS = ("long_range", "residual", "rgb")


@dataclass
class MCPNetConfig:
    """The ``mcpnet`` pipeline's settings (``config=`` of ``make_iterator``; ``pipeline_config`` of a run).

    ``clip``: frames, speeds (two at least) and augmentation; ``gap``: t of Eq. 2, in frames
    of the accelerated clip; ``cip_speed``: the speed of the residual clip CIP pairs with the
    RGB clip (Tab. 2); ``residual_view``: what stands in for the residual clips (Tab. 3);
    ``mip_negative``: l2 at another speed (the paper) or reversed at the same speed (module doc).

    Parameters
    ----------
    clip : ClipConfig or dict
        Frames per clip, speeds and augmentation (:class:`ClipConfig`). Two speeds at least.
    gap : int, default 4
        t of Eq. 2, in frames of the accelerated clip.
    cip_speed : {"different", "same", "random"}, default "different"
        The speed of the residual clip that CIP pairs with the RGB clip (Tab. 2).
    residual_view : {"long_range", "residual", "rgb"}, default "long_range"
        What stands in for the residual clips (Tab. 3).
    mip_negative : {"speed", "reverse"}, default "speed"
        MIP's negative: l2 at another speed (the paper), or reversed at the same speed.
    """

    clip: ClipConfig = field(default_factory=lambda: ClipConfig(speeds=(1, 2)))
    gap: int = 4  # t of Eq. 2 (Tab. 1)
    cip_speed: str = "different"  # Tab. 2
    residual_view: str = "long_range"  # Tab. 3
    mip_negative: str = "speed"  # l2: another speed (the paper), or the same speed played backwards

    def __post_init__(self):
        if self.cip_speed not in CIP_SPEEDS:
            raise ValueError(f"mcpnet cip_speed={shown(self.cip_speed)}; choose one of {CIP_SPEEDS}")
        if self.residual_view not in RESIDUAL_VIEWS:
            raise ValueError(f"mcpnet residual_view={shown(self.residual_view)}; choose one of {RESIDUAL_VIEWS}")
        if self.gap < 1:
            raise ValueError(f"mcpnet gap must be >= 1, got {shown(self.gap)}")
        if self.mip_negative not in MIP_NEGATIVES:
            raise ValueError(f"mcpnet mip_negative={shown(self.mip_negative)}; choose one of {MIP_NEGATIVES}")
        if self.mip_negative == "reverse" and self.cip_speed != "same":
            raise ValueError(f"mcpnet mip_negative=reverse needs cip_speed=same (got {self.cip_speed!r}): CIP would "
                             "pair the RGB clip with its reversed residual clip")
        if self.mip_negative == "speed" and len(set(self.clip.speeds)) < 2:
            raise ValueError(f"mcpnet needs two different speeds for l1 and l2, got "
                             f"speeds={shown(list(self.clip.speeds))}")


class MCPNetPlanner(Planner):
    """``rgb``, ``res_same``, ``res_diff`` ``(C, T, H, W)``; ``speed_rgb``, ``speed_diff`` and ``cip_same`` per sample."""

    outputs = ("rgb", "res_same", "res_diff", "speed_rgb", "speed_diff", "cip_same")
    values = {"speed_rgb": "int64", "speed_diff": "int64", "cip_same": "bool"}

    def __init__(self, cfg: MCPNetConfig):
        self.cfg = cfg
        c = cfg.clip
        self.gap = 1 if cfg.residual_view == "residual" else cfg.gap
        top = max(c.speeds)
        self.window = max(cut.clip_span(c.frames, top),
                          cut.residual_span(c.frames, top, self.gap) if cfg.residual_view != "rgb" else 0, c.window)
        residual = "rgb" if cfg.residual_view == "rgb" else "residual"
        self.keys = ("speed_rgb", "speed_diff", "cip_same") + recipes.keys_of("rgb") + tuple(
            k for name in ("res_same", "res_diff") for k in recipes.keys_of(name, kind=residual))
        self.clip_specs = {"rgb": ("rgb", None), "res_same": (residual, None), "res_diff": (residual, None)}
        self.window_keys = recipes.window_keys(self.clip_specs)

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        c = self.cfg.clip
        s_r = cut.draw_speed(rng, c.speeds)
        reverse = self.cfg.mip_negative == "reverse"
        s_d = s_r if reverse else cut.draw_speed(rng, c.speeds, exclude=s_r)
        if self.cfg.cip_speed == "random":
            cip_same = cut.draw_speed(rng, c.speeds) == s_r
        else:
            cip_same = self.cfg.cip_speed == "same"
        params = {"speed_rgb": recipes.scalar(s_r), "speed_diff": recipes.scalar(s_d),
                  "cip_same": np.array(cip_same, dtype=bool)}
        params.update(recipes.draw_rgb(rng, "rgb", c, s_r, valid, frame_hw))
        for name, speed, backwards in (("res_same", s_r, False), ("res_diff", s_d, reverse)):
            if self.cfg.residual_view == "rgb":
                params.update(recipes.draw_rgb(rng, name, c, speed, valid, frame_hw,
                                               "reverse" if backwards else "speed"))
            else:
                params.update(recipes.draw_residual(rng, name, c, speed, self.gap, valid, frame_hw, backwards))
        return params

    def graph(self, window, p, dtype):
        c = self.cfg.clip
        out = {"rgb": recipes.rgb_graph(window, p, "rgb", c, dtype)}
        for name in ("res_same", "res_diff"):
            out[name] = (recipes.rgb_graph(window, p, name, c, dtype) if self.cfg.residual_view == "rgb"
                         else recipes.residual_graph(window, p, name, c, dtype))
        out.update(speed_rgb=p["speed_rgb"], speed_diff=p["speed_diff"], cip_same=p["cip_same"])
        return out

    def reference(self, windows, params, slot):
        c, p = self.cfg.clip, params[slot]
        out = {"rgb": recipes.rgb_reference(windows, params, slot, "rgb", c)}
        for name in ("res_same", "res_diff"):
            out[name] = (recipes.rgb_reference(windows, params, slot, name, c) if self.cfg.residual_view == "rgb"
                         else recipes.residual_reference(windows[slot], p, name, c))
        out.update(speed_rgb=p["speed_rgb"], speed_diff=p["speed_diff"], cip_same=p["cip_same"])
        return out
