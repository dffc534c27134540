"""MoQuad samples (Liu et al., MoQuad §3.1, Fig. 2a; warm-up Eq. 2 and Algorithm 1).

For every video of the batch, from one decoded window:

* ``anchor``        A   — a clip at speed n;
* ``positive``      P̄   — another clip at speed n, appearance-disturbed (RAD);
* ``intra_neg``     N   — a clip at speed m ≠ n (the motion is disturbed);
* ``intra_neg_ad``  N̄   — a clip at speed m, appearance-disturbed as well.

Each clip has its own random position in the window and its own augmentation draw. The
warm-up graph (appearance task, Eq. 2) yields ``clip_n`` and ``clip_m``: two clips of the
same video at speeds n and m. Switches reproduce the paper's ablations: quadruple members
(Tab. 4), the appearance operation rad_inter / rad_intra / be (Tab. 5 left), the motion
operation speed / reverse / shuffle (Tab. 5 right; reverse and shuffle keep speed n and
disturb the order instead) and the set of speeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import shown
from ..ops import cut, recipes
from ..ops.config import AppearanceConfig, ClipConfig
from .base import Planner

MODES = ("quad", "warmup")


@dataclass
class MoQuadConfig:
    """The ``moquad`` pipeline's settings (``config=`` of ``make_iterator``; ``pipeline_config`` of a run).

    ``clip``: frames, speeds (two at least) and augmentation of every clip; ``appearance``:
    the disturbance of the positive and of N̄ (RAD intra/inter, BE; k, λ range); ``motion``:
    how the intra negatives differ in motion; the three switches of Tab. 4; ``mode``:
    ``"warmup"`` builds the appearance task's two clips instead of the quadruple.

    Parameters
    ----------
    clip : ClipConfig or dict
        Frames per clip, speeds and augmentation (:class:`ClipConfig`). Two speeds at least; default speeds (1, 2, 4).
    appearance : AppearanceConfig or dict
        The disturbance of the positive and of N̄ (:class:`AppearanceConfig`).
    motion : {"speed", "reverse", "shuffle"}, default "speed"
        How the intra negatives differ in motion (Tab. 5 right).
    positive_ad, intra_neg, intra_neg_ad : bool, default True
        The three switches of Tab. 4: disturb the positive's appearance, use intra negatives,
        disturb their appearance.
    mode : {"quad", "warmup"}, default "quad"
        ``"warmup"`` builds the appearance task's two clips instead of the quadruple.
    """

    clip: ClipConfig = field(default_factory=lambda: ClipConfig(speeds=(1, 2, 4)))
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    motion: str = "speed"  # Tab. 5 right: speed / reverse / shuffle
    positive_ad: bool = True  # Tab. 4: disturb the positive's appearance
    intra_neg: bool = True  # Tab. 4: include N
    intra_neg_ad: bool = True  # Tab. 4: include N̄
    mode: str = "quad"  # "warmup": the appearance task of Eq. 2

    def __post_init__(self):
        if self.motion not in cut.MOTION_OPS:
            raise ValueError(f"moquad motion={shown(self.motion)}; choose one of {cut.MOTION_OPS}")
        if self.mode not in MODES:
            raise ValueError(f"moquad mode={shown(self.mode)}; choose one of {MODES}")
        needs_two = self.mode == "warmup" or (self.motion == "speed" and (self.intra_neg or self.intra_neg_ad))
        if needs_two and len(set(self.clip.speeds)) < 2:
            raise ValueError(f"moquad needs two different speeds for n and m, got "
                             f"speeds={shown(list(self.clip.speeds))}")


class MoQuadPlanner(Planner):
    """The quadruple: ``anchor``, ``positive``, ``intra_neg``, ``intra_neg_ad`` ``(C, T, H, W)`` and their speeds
    ``speed_n``, ``speed_m`` (warm-up: ``clip_n``, ``clip_m``)."""

    values = {"speed_n": "int64", "speed_m": "int64"}

    def __init__(self, cfg: MoQuadConfig):
        self.cfg = cfg
        c = cfg.clip
        self.window = max(cut.clip_span(c.frames, max(c.speeds)), c.window)
        ad = cfg.appearance if cfg.appearance.op != "none" else None
        if cfg.mode == "warmup":
            self.members = {"clip_n": None, "clip_m": None}
        else:
            self.members = {"anchor": None, "positive": ad if cfg.positive_ad else None}
            if cfg.intra_neg:
                self.members["intra_neg"] = None
            if cfg.intra_neg_ad:
                self.members["intra_neg_ad"] = ad
        self.keys = ("speed_n", "speed_m") + tuple(k for name, a in self.members.items()
                                                   for k in recipes.keys_of(name, a))
        self.outputs = tuple(self.members) + ("speed_n", "speed_m")
        self.clip_specs = {name: ("rgb", a) for name, a in self.members.items()}
        self.window_keys = recipes.window_keys(self.clip_specs)

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        c = self.cfg.clip
        n = cut.draw_speed(rng, c.speeds)
        # reverse/shuffle disturb the order at the anchor's speed; speed picks m ≠ n
        m = cut.draw_speed(rng, c.speeds, exclude=n) if (self.cfg.motion == "speed" or self.cfg.mode == "warmup") else n
        params = {"speed_n": recipes.scalar(n), "speed_m": recipes.scalar(m)}
        for name, appearance in self.members.items():
            at_m = name in ("intra_neg", "intra_neg_ad", "clip_m")
            motion = self.cfg.motion if (at_m and self.cfg.mode == "quad") else "speed"
            params.update(recipes.draw_rgb(rng, name, c, m if at_m else n, valid, frame_hw, motion, appearance,
                                          batch_rng, slot, batch_size))
        return params

    def graph(self, window, p, dtype):
        out = {name: recipes.rgb_graph(window, p, name, self.cfg.clip, dtype, a) for name, a in self.members.items()}
        out.update(speed_n=p["speed_n"], speed_m=p["speed_m"])
        return out

    def reference(self, windows, params, slot):
        out = {name: recipes.rgb_reference(windows, params, slot, name, self.cfg.clip, a)
               for name, a in self.members.items()}
        out.update(speed_n=params[slot]["speed_n"], speed_m=params[slot]["speed_m"])
        return out
