"""SimCLR / CVRL baseline samples: two independently positioned and augmented clips of a video."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import clip_kinds, clips
from .clip_kinds import ClipConfig
from .planner import Planner


@dataclass
class SimCLRConfig:
    clip: ClipConfig = field(default_factory=lambda: ClipConfig(speeds=(1,)))


class SimCLRPlanner(Planner):
    outputs = ("view1", "view2")

    def __init__(self, cfg: SimCLRConfig):
        self.cfg = cfg
        self.window = max(clips.clip_span(cfg.clip.frames, max(cfg.clip.speeds)), cfg.clip.window)
        self.keys = clip_kinds.keys_of("view1") + clip_kinds.keys_of("view2")
        self.clip_specs = {name: ("rgb", None) for name in self.outputs}

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        params = {}
        for name in ("view1", "view2"):
            speed = clips.draw_speed(rng, self.cfg.clip.speeds)
            params.update(clip_kinds.draw_rgb(rng, name, self.cfg.clip, speed, valid, frame_hw))
        return params

    def graph(self, window, p, dtype):
        return {name: clip_kinds.rgb_graph(window, p, name, self.cfg.clip, dtype) for name in self.outputs}

    def reference(self, windows, params, slot):
        return {name: clip_kinds.rgb_reference(windows, params, slot, name, self.cfg.clip) for name in self.outputs}
