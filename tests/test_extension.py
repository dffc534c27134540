"""A method of one's own, added the documented way, trains through train.py.

The toy method predicts the playback speed of a clip (1 or 2, a SpeedNet-like pretext
task): its planner (one clip at a random speed and the speed as a per-sample value),
its pipeline spec, its model and one ``register_method`` call — nothing in train.py,
the iterators or the pipeline definition names it. Two phases (first only speed 1,
then both) show a method's phases switching graphs mid-run, and resuming the run from
the checkpoint written at the switch continues it exactly.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from motionssl import train
from motionssl.models.backbones import create_backbone
from motionssl.models.methods import METHODS, Method, Phase, register_method
from motionssl.pipelines import PIPELINES, PipelineSpec, Planner, demo, make_iterator, register_pipeline
from motionssl.pipelines.ops import cut, recipes
from motionssl.pipelines.ops.config import ClipConfig

NAME = "toy_speed"
FAST = ["device=cpu", "batch_size=4", "log_every=1", "retrieval=false", "loader.num_workers=0",
        "backbone=tiny", "optim.lr=0.01", "pipeline_config.clip.augment.size=[32,32]", "pipeline_config.clip.frames=4"]


@dataclass
class SpeedConfig:
    clip: ClipConfig = field(default_factory=lambda: ClipConfig(speeds=(1, 2)))


class SpeedPlanner(Planner):
    """``clip`` at a random speed of ``clip.speeds``; ``speed`` the speed drawn."""

    outputs = ("clip", "speed")
    values = {"speed": "int64"}

    def __init__(self, cfg: SpeedConfig):
        self.cfg = cfg
        self.window = max(cut.clip_span(cfg.clip.frames, max(cfg.clip.speeds)), cfg.clip.window)
        self.keys = ("speed",) + recipes.keys_of("clip")
        self.clip_specs = {"clip": ("rgb", None)}

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        speed = cut.draw_speed(rng, self.cfg.clip.speeds)
        return dict(recipes.draw_rgb(rng, "clip", self.cfg.clip, speed, valid, frame_hw), speed=recipes.scalar(speed))

    def graph(self, window, p, dtype):
        return {"clip": recipes.rgb_graph(window, p, "clip", self.cfg.clip, dtype), "speed": p["speed"]}

    def reference(self, windows, params, slot):
        return {"clip": recipes.rgb_reference(windows, params, slot, "clip", self.cfg.clip),
                "speed": params[slot]["speed"]}


class SpeedPrediction(nn.Module):
    def __init__(self, backbone, classes: int = 2):
        super().__init__()
        self.backbone = create_backbone(backbone) if isinstance(backbone, str) else backbone
        self.classifier = nn.Linear(self.backbone.feature_dim, classes)

    def forward(self, batch):
        logits = self.classifier(self.backbone(batch["clip"]))
        target = batch["speed"].to(logits.device).long() - 1
        loss = nn.functional.cross_entropy(logits, target)
        return {"loss": loss, "acc": (logits.argmax(1) == target).float().mean(),
                "mean_speed": batch["speed"].float().mean()}


def phases():
    return [Phase("speed 1 only", 0.5, {"clip": {"speeds": [1]}}), Phase("both speeds", 0.5)]


@pytest.fixture(scope="module")
def toy():
    spec = register_pipeline(PipelineSpec(NAME, SpeedConfig, SpeedPlanner, "toy: a clip and its speed"))
    method = register_method(Method(NAME, SpeedPrediction, pipeline=NAME, doc="toy speed prediction",
                                    phases=phases))
    yield spec, method
    PIPELINES.pop(NAME), METHODS.pop(NAME)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return demo.generate(str(tmp_path_factory.mktemp("demo") / "d"), per_class=3, test_per_class=1, workers=1)


def records(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return {r["step"]: r for r in map(json.loads, f) if "loss" in r}


def test_a_registered_pipeline_serves_batches_and_matches_its_reference(toy, small_demo):
    from motionssl.pipelines import load_index
    index = load_index(small_demo, split="train")
    it = make_iterator(NAME, index, 4, device="cpu", seed=3, num_workers=0, config={"clip": {"frames": 4}})
    try:
        batch = next(iter(it))
    finally:
        it.close()
    assert batch["clip"].shape[:3] == (4, 3, 4) and batch["clip"].dtype == torch.float32
    assert batch["speed"].shape == (4,) and set(batch["speed"].tolist()) <= {1, 2}


def test_a_registered_method_trains_through_train_py_with_its_phases(toy, small_demo, tmp_path):
    out = str(tmp_path / "run")
    path = train.main(["--pipeline", NAME, "--data", small_demo, "--out", out, "split=train", "steps=4",
                       "checkpoint_every=2"] + FAST)
    assert os.path.isfile(path)
    logged = records(out)
    assert sorted(logged) == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in logged.values())
    # Phase one draws speed 1 only; phase two both speeds (12 draws of two: all 1 has p = 1/4096).
    assert all(logged[s]["mean_speed"] == 1.0 for s in (1, 2))
    assert sum(logged[s]["mean_speed"] for s in (3, 4)) > 2.0
    with open(os.path.join(out, "config.yaml")) as f:
        assert f"pipeline: {NAME}" in f.read()

    resumed = str(tmp_path / "resumed")
    os.makedirs(resumed)
    at_switch = os.path.join(out, "checkpoints", "ckpt-00000002.pt")
    assert os.path.isfile(at_switch), os.listdir(os.path.join(out, "checkpoints"))
    train.main(["--pipeline", NAME, "--resume", at_switch, "--out", resumed])
    again = records(resumed)
    assert [again[s]["loss"] for s in (3, 4)] == [logged[s]["loss"] for s in (3, 4)]


def test_the_toy_method_is_refused_under_another_name(toy):
    with pytest.raises(ValueError, match="registered already"):
        register_method(Method(NAME, SpeedPrediction, pipeline=NAME))
    with pytest.raises(TypeError, match="nn.Module"):
        register_method(Method("toy_other", object, pipeline=NAME))
