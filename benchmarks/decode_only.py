"""The decode-only "method": the decoded window and nothing else, through the same source and iterator.

The gap between it and a method's pipeline is what the method's graph costs. It is a
:class:`~pipelines.iterators.PipelineSpec` of its own, handed to ``make_iterator``
directly; the registry of methods is left alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from motionssl.pipelines import make_iterator
from motionssl.pipelines.index import VideoIndex
from motionssl.pipelines.planners import PipelineSpec
from motionssl.pipelines.planners.base import Planner


@dataclass
class DecodeOnlyConfig:
    window: int = 16

    def __post_init__(self):
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")


class DecodeOnlyPlanner(Planner):
    """Outputs the decoded window ``(W, H, W, 3)`` uint8 as it is."""

    outputs = ("window",)
    keys = ()

    def __init__(self, cfg: DecodeOnlyConfig):
        self.cfg = cfg
        self.window = int(cfg.window)

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        return {}

    def graph(self, window, params, dtype):
        return {"window": window}

    def reference(self, windows, params, slot):
        return {"window": windows[slot]}


DECODE_ONLY = PipelineSpec("decode", DecodeOnlyConfig, DecodeOnlyPlanner, "the decoded window only")


def build_iterator(name: str, index: VideoIndex, batch_size: int, device: str, seed: int, config: dict, **options):
    """``make_iterator`` of a method, or of the decode-only spec for ``name="decode"``."""
    return make_iterator(DECODE_ONLY if name == "decode" else name, index, batch_size, device=device, seed=seed,
                         config=config, **options)
