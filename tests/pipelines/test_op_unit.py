"""A clip op is one unit: a new op is one class and one line in a recipe, and an op that is off changes nothing.

A throwaway ``invert`` op (defined here, with its draw, DALI-free twin and no kernel) is
added to both recipes: its parameter appears under every clip's keys and as a
:class:`ParamKeys` attribute, it draws from a stream of its own (so, off, every other
parameter and every sample stays bit-identical), and on it changes the clips it is in.
"""
import numpy as np
import pytest

from motionssl.pipelines.ops import recipes
from motionssl.pipelines.ops.base import Op, Param, ParamKeys
from motionssl.pipelines.ops.config import AppearanceConfig, AugmentConfig, ClipConfig
from motionssl.pipelines.planners import pipeline_spec


class Invert(Op):
    name = "invert"
    params = (Param("invert", "bool"),)

    def __init__(self, prob):
        self.prob = prob

    def draw(self, rng, clip):
        return {"invert": rng.uniform() < self.prob}

    def reference(self, x, p, clip):
        return 255.0 - x if p["invert"] else x


def with_invert(monkeypatch, prob):
    for kind, ops in list(recipes.RECIPES.items()):
        at = [op.name for op in ops].index("colour") + 1
        monkeypatch.setitem(recipes.RECIPES, kind, ops[:at] + (Invert(prob),) + ops[at:])


def samples(name, config, seeds=range(4), batch=3):
    spec = pipeline_spec(name)
    planner = spec.planner(spec.config(**config))
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        windows = [rng.integers(0, 256, (planner.window + 2, 24, 32, 3), dtype=np.uint8) for _ in range(batch)]
        params = [planner.draw(np.random.default_rng([seed, slot]), np.random.default_rng([seed, 99]), slot, batch,
                               planner.window, (24, 32)) for slot in range(batch)]
        out.append((planner, params, [planner.reference(windows, params, slot) for slot in range(batch)]))
    return out


CLIP = ClipConfig(frames=4, speeds=(1, 2), augment=AugmentConfig(size=(12, 16), jitter_prob=1.0))
CONFIGS = [("moquad", {"clip": CLIP}), ("moquad", {"clip": CLIP, "appearance": AppearanceConfig("be")}),
           ("mcpnet", {"clip": CLIP}), ("simclr", {"clip": CLIP})]


@pytest.mark.parametrize("name,config", CONFIGS, ids=["moquad", "moquad-be", "mcpnet", "simclr"])
def test_an_op_that_is_off_leaves_every_sample_bit_identical(name, config, monkeypatch):
    before = samples(name, config)
    with_invert(monkeypatch, prob=0.0)
    after = samples(name, config)
    planner = after[0][0]
    new_keys = [k for k in planner.keys if k.endswith(".invert")]
    assert new_keys and set(planner.keys) - set(new_keys) == set(before[0][0].keys)  # every clip draws it
    for (_, params0, out0), (_, params1, out1) in zip(before, after):
        for p0, p1, o0, o1 in zip(params0, params1, out0, out1):
            assert set(p1) == set(p0) | set(new_keys)
            for key, value in p0.items():
                assert np.array_equal(value, p1[key]) and value.dtype == p1[key].dtype, key
            for key, value in o0.items():
                assert np.array_equal(value, o1[key]), key


def test_an_op_that_is_on_changes_its_clips_and_names_its_parameter(monkeypatch):
    config = {"clip": CLIP}
    before = samples("simclr", config, seeds=[0])
    with_invert(monkeypatch, prob=1.0)
    assert ParamKeys("view1").invert == "view1.invert"
    after = samples("simclr", config, seeds=[0])
    assert all(bool(p["view1.invert"]) for p in after[0][1])
    assert not np.array_equal(before[0][2][0]["view1"], after[0][2][0]["view1"])


def test_an_op_must_draw_what_it_declares(monkeypatch):
    class Sloppy(Invert):
        def draw(self, rng, clip):
            return {"invert": False, "extra": 1}

    monkeypatch.setitem(recipes.RECIPES, "rgb", recipes.RECIPES["rgb"] + (Sloppy(0.0),))
    config = {"clip": CLIP}
    with pytest.raises(RuntimeError, match=r"op 'invert' drew \['extra', 'invert'\] but declares \['invert'\]"):
        samples("simclr", config, seeds=[0])


def test_residual_clips_draw_only_what_their_ops_use():
    assert recipes.keys_of("res", kind="residual") == ("res.idx", "res.roi", "res.color")
    with pytest.raises(AttributeError, match="no op declares a parameter 'rio'"):
        ParamKeys("clip").rio
