"""A method of your own as a Planner: the arrow of time (is this clip played backwards?), in under 60 lines.

    python examples/own_planner.py
"""
from dataclasses import dataclass, field

import numpy as np

from motionssl.pipelines import Planner, PipelineSpec, demo, make_iterator
from motionssl.pipelines.ops import crop, cut, normalise
from motionssl.pipelines.ops.config import ClipConfig


@dataclass
class ArrowConfig:
    """The method's settings, in train.py's vocabulary: ``config={"clip": {"frames": 8, ...}}``."""

    clip: ClipConfig = field(default_factory=ClipConfig)


class ArrowPlanner(Planner):
    """One centre-cropped clip at a random start, reversed for half of the samples; ``reversed`` says which."""

    outputs, values = ("clip", "reversed"), {"reversed": "int64"}
    keys = ("idx", "roi", "reversed")

    def __init__(self, cfg):
        self.clip = cfg.clip
        self.window = cut.clip_span(cfg.clip.frames, 1)

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):  # in the workers, per sample
        idx = cut.draw_clip_indices(rng, self.clip.frames, 1, valid)
        flip = rng.random() < 0.5
        return {"idx": (idx[::-1] if flip else idx).astype(np.int32),
                "roi": crop.center_crop(frame_hw, self.clip.augment.size),
                "reversed": np.array(flip, dtype=np.int64)}

    def graph(self, window, p, dtype):  # DALI nodes
        frames = crop.crop_resize(cut.cut(window, p["idx"]), p["roi"], self.clip.augment.size)
        augment = self.clip.augment
        return {"clip": normalise.normalize(frames, augment.mean, augment.std, dtype), "reversed": p["reversed"]}


if __name__ == "__main__":
    spec = PipelineSpec("arrow", ArrowConfig, ArrowPlanner, "is the clip played backwards?")
    loader = make_iterator(spec, demo.generate(), 8, split="train", num_workers=0,
                           config={"clip": {"frames": 8, "augment": {"size": [56, 56]}}})
    batch = next(iter(loader))
    print(f"arrow of time: clips {tuple(batch['clip'].shape)}, reversed {batch['reversed'].tolist()}")
    loader.close()
