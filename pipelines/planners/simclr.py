"""SimCLR / CVRL baseline samples: two independently positioned and augmented clips of a video."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ops import cut, recipes
from ..ops.config import ClipConfig
from .base import Planner


@dataclass
class SimCLRConfig:
    """The ``simclr`` pipeline's settings: ``clip`` (frames, speeds, augmentation of both views).

    Parameters
    ----------
    clip : ClipConfig or dict
        Frames per clip, speeds and augmentation (:class:`ClipConfig`). Default: :class:`ClipConfig`'s.
    """

    clip: ClipConfig = field(default_factory=lambda: ClipConfig(speeds=(1,)))


class SimCLRPlanner(Planner):
    """``view1``, ``view2``: two clips ``(C, T, H, W)`` of a video, positioned and augmented independently."""

    outputs = ("view1", "view2")

    def __init__(self, cfg: SimCLRConfig):
        self.cfg = cfg
        self.window = max(cut.clip_span(cfg.clip.frames, max(cfg.clip.speeds)), cfg.clip.window)
        self.keys = recipes.keys_of("view1") + recipes.keys_of("view2")
        self.clip_specs = {name: ("rgb", None) for name in self.outputs}
        self.window_keys = recipes.window_keys(self.clip_specs)

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        params = {}
        for name in ("view1", "view2"):
            speed = cut.draw_speed(rng, self.cfg.clip.speeds)
            params.update(recipes.draw_rgb(rng, name, self.cfg.clip, speed, valid, frame_hw))
        return params

    def graph(self, window, p, dtype):
        return {name: recipes.rgb_graph(window, p, name, self.cfg.clip, dtype) for name in self.outputs}

    def reference(self, windows, params, slot):
        return {name: recipes.rgb_reference(windows, params, slot, name, self.cfg.clip) for name in self.outputs}
