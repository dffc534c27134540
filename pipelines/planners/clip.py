"""One augmented clip per video: the input of supervised training and of fine-tuning (MCPNet §4.1)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ops import cut, recipes
from ..ops.config import ClipConfig
from .base import Planner


@dataclass
class ClipOnlyConfig:
    """The ``clip`` pipeline's settings: ``clip`` (frames, speeds, augmentation).

    Parameters
    ----------
    clip : ClipConfig or dict
        Frames per clip, speeds and augmentation (:class:`ClipConfig`). Default: one speed, 1.
    """

    clip: ClipConfig = field(default_factory=lambda: ClipConfig(speeds=(1,)))


class ClipOnlyPlanner(Planner):
    """``clip`` — one clip at a random position and speed, with the clip's augmentation."""

    outputs = ("clip",)

    def __init__(self, cfg: ClipOnlyConfig):
        self.cfg = cfg
        self.window = max(cut.clip_span(cfg.clip.frames, max(cfg.clip.speeds)), cfg.clip.window)
        self.keys = recipes.keys_of("clip")
        self.clip_specs = {"clip": ("rgb", None)}
        self.window_keys = recipes.window_keys(self.clip_specs)

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        speed = cut.draw_speed(rng, self.cfg.clip.speeds)
        return recipes.draw_rgb(rng, "clip", self.cfg.clip, speed, valid, frame_hw)

    def graph(self, window, p, dtype):
        return {"clip": recipes.rgb_graph(window, p, "clip", self.cfg.clip, dtype)}

    def reference(self, windows, params, slot):
        return {"clip": recipes.rgb_reference(windows, params, slot, "clip", self.cfg.clip)}
