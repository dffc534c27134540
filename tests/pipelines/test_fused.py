"""The fused CPU clip operators against the NumPy reference and the unfused DALI graph.

Every clip kind (plain RGB, RAD inter and intra, BE, residual) is built from textured
random windows of different frame sizes in one batch, with flipped crops and clamped
indices, once by the fused operator and once by DALI's operators, and both are compared
with the ops' NumPy twins through the same functions the reference loader uses. The fused
kernels and the DALI graph run the same op list of each recipe, or the graph is refused.
"""
import numpy as np
import pytest

from motionssl.pipelines import inspection
from motionssl.pipelines.ops import fused
from motionssl.pipelines.ops import recipes
from motionssl.pipelines.ops.config import AppearanceConfig, AugmentConfig, ClipConfig
from tests.dali_utils import run_ops

pytestmark = pytest.mark.skipif(fused.available() is not None, reason=f"fused operators unusable: {fused.available()}")

SHAPES = ((36, 52), (40, 40), (30, 64), (48, 36))
CFG = ClipConfig(frames=5, speeds=(1, 2), augment=AugmentConfig(size=(20, 28), jitter_prob=1.0, grayscale_prob=0.3))
# One level of rounding after the resize, through the normalisation, is the most the
# graph and the reference may differ by (DALI's resize rounds half-way values its own way).
ONE_LEVEL = 1.0 / (255 * min(CFG.augment.std)) + 1e-4


def jitter_gain(color) -> float:
    """The most the colour jitter ``[brightness, contrast, saturation, hue]`` can scale a one-level difference:
    the product of its steps' ∞-norms (the clamps between them only shrink differences)."""
    from motionssl.pipelines.ops.colour import colour_steps

    return max(1.0, float(np.prod([np.abs(m).sum(axis=1).max() for m, _ in colour_steps(color)])))


def windows_and_params(rng, name, kind, appearance=None, batch=4, frames=12):
    windows = [rng.integers(0, 256, (frames, *SHAPES[i % len(SHAPES)], 3), dtype=np.uint8) for i in range(batch)]
    batch_rng_seed = int(rng.integers(1 << 30))
    params = []
    for slot, w in enumerate(windows):
        valid = frames - 3 if slot == 1 else frames  # a short video: indices clamp to the last real frame
        if kind == "residual":
            p = recipes.draw_residual(rng, name, CFG, 2, 3, valid, w.shape[1:3])
        else:
            p = recipes.draw_rgb(rng, name, CFG, 2, valid, w.shape[1:3], "speed", appearance,
                                    np.random.default_rng(batch_rng_seed), slot, batch)
        params.append(p)
    params[0][f"{name}.roi"] = np.array([2.5, 40.0, 30.0, 3.5], np.float32)  # flipped, explicitly
    return windows, params


def run_graph(windows, params, name, kind, appearance, use_fused, monkeypatch):
    if not use_fused:
        monkeypatch.setattr(fused, "usable", lambda window, antialias: False)
    keys = list(params[0])
    inputs = {"w": windows, **{k.replace(".", "__"): [p[k] for p in params] for k in keys}}

    def build(w, **nodes):
        p = {k.replace("__", "."): v for k, v in nodes.items()}
        if kind == "residual":
            return recipes.residual_graph(w, p, name, CFG, _float())
        return recipes.rgb_graph(w, p, name, CFG, _float(), appearance)

    (out,) = run_ops(build, inputs, "cpu", {"w": "FHWC"})
    return out


def _float():
    from nvidia.dali import types

    return types.FLOAT


def reference_clips(windows, params, name, kind, appearance):
    if kind == "residual":
        return [recipes.residual_reference(w, p, name, CFG) for w, p in zip(windows, params)]
    return [recipes.rgb_reference(windows, params, slot, name, CFG, appearance) for slot in range(len(windows))]


CASES = [("rgb", None), ("rgb", AppearanceConfig("rad_inter", grid=3)), ("rgb", AppearanceConfig("rad_intra", grid=4)),
         ("rgb", AppearanceConfig("be")), ("residual", None)]


@pytest.mark.parametrize("kind,appearance", CASES, ids=["rgb", "rad_inter", "rad_intra", "be", "residual"])
def test_fused_and_unfused_graphs_match_the_reference(kind, appearance, monkeypatch):
    rng = np.random.default_rng(11)
    windows, params = windows_and_params(rng, "clip", kind, appearance)
    want = reference_clips(windows, params, "clip", kind, appearance)
    got_fused = run_graph(windows, params, "clip", kind, appearance, True, monkeypatch)
    got_ops = run_graph(windows, params, "clip", kind, appearance, False, monkeypatch)
    for f, o, w, p in zip(got_fused, got_ops, want, params):
        assert f.shape == o.shape == w.shape == (3, CFG.frames, *CFG.augment.size)
        assert f.dtype == np.float32
        # the fused operator computes the reference's arithmetic: float32 rounding only,
        # but a resized value on a rounding tie may land one level apart, which the colour
        # jitter then scales by its gain; such values are rare
        assert np.mean(np.abs(f - w)) < 1e-3
        assert np.mean(np.abs(f - w) > 1e-4) < 0.02
        assert np.abs(f - w).max() <= ONE_LEVEL * jitter_gain(p["clip.color"]) + 1e-4
        assert np.abs(o - w).max() <= ONE_LEVEL * 1.5 + 2e-3 * 255 / (255 * min(CFG.augment.std))


@pytest.mark.parametrize("kind,appearance", [("rgb", None), ("rgb", AppearanceConfig("be")), ("residual", None)],
                         ids=["rgb", "be", "residual"])
def test_clips_without_colour_jitter_skip_it_and_still_match_the_reference(kind, appearance, monkeypatch):
    """A clip whose jitter was not drawn (``[1, 1, 1, 0]``) skips the step in the kernels: the output is the reference's."""
    from motionssl.pipelines.ops.colour import IDENTITY_COLOR

    rng = np.random.default_rng(13)
    windows, params = windows_and_params(rng, "clip", kind, appearance)
    for p in params[1:]:  # sample 0 keeps its jitter: both branches in one batch
        p["clip.color"] = IDENTITY_COLOR.copy()
    want = reference_clips(windows, params, "clip", kind, appearance)
    got = run_graph(windows, params, "clip", kind, appearance, True, monkeypatch)
    for f, w in zip(got, want):
        assert np.mean(np.abs(f - w)) < 1e-3
        assert np.abs(f - w).max() <= ONE_LEVEL * 1.5


def test_fused_clip_differs_when_a_parameter_does(monkeypatch):
    """A wrong colour, crop or frame would show: the kernels read every parameter."""
    rng = np.random.default_rng(12)
    windows, params = windows_and_params(rng, "clip", "rgb")
    base = run_graph(windows, params, "clip", "rgb", None, True, monkeypatch)
    for key, change in (("clip.color", lambda c: c * np.float32(0.9)), ("clip.roi", lambda r: r + np.float32(1.5)),
                        ("clip.idx", lambda i: np.roll(i, 1))):
        changed = [dict(p, **{key: change(p[key])}) for p in params]
        other = run_graph(windows, changed, "clip", "rgb", None, True, monkeypatch)
        assert np.abs(other[2] - base[2]).max() > 0.1, key


def test_cpu_graph_uses_the_fused_operator_and_gpu_graph_does_not(tmp_path):
    from motionssl.pipelines import make_iterator
    from tests.fixtures import write_id_videos

    data = write_id_videos(str(tmp_path), [20, 20, 20, 20])
    it = make_iterator("moquad", data, 2, device="cpu", config={"clip": {"frames": 4, "speeds": [1, 2],
                                                                   "augment": {"size": [16, 16]}}}, num_workers=0)
    cpu = inspection.operator_counts(inspection.define(it.source, it.planner, "cpu").values())
    gpu = inspection.operator_counts(inspection.define(it.source, it.planner, "gpu").values())  # built, never run
    assert cpu.get("NumbaFuncImpl") == 4 and "ColorTwist" not in cpu and "CropMirrorNormalize" not in cpu
    assert "NumbaFuncImpl" not in gpu and gpu["ColorTwist"] == 8  # saturation and hue of 4 clips
    it.close()


def test_falls_back_to_dali_operators_without_numba(monkeypatch, tmp_path):
    from motionssl.pipelines import make_iterator
    from tests.fixtures import write_id_videos

    monkeypatch.setitem(fused._state, "reason", "Numba is not usable (ImportError: none); `pip install numba`")
    data = write_id_videos(str(tmp_path), [20, 20, 20, 20])
    it = make_iterator("simclr", data, 2, device="cpu", config={"clip": {"frames": 4, "augment": {"size": [16, 16]}}},
                       num_workers=0)
    cpu = inspection.operator_counts(inspection.define(it.source, it.planner, "cpu").values())
    assert "NumbaFuncImpl" not in cpu and cpu["ColorTwist"] == 4  # saturation and hue of 2 clips
    batch = next(iter(it))
    assert batch["view1"].shape == (2, 3, 4, 16, 16)
    it.close()


def test_environment_switch_turns_fusion_off(monkeypatch):
    monkeypatch.setenv(fused.ENV_SWITCH, "0")
    assert "MOTIONSSL_FUSED=0" in fused.available()


def test_antialiased_clips_are_not_fused():
    class Node:
        device = "cpu"

    assert fused.usable(Node(), antialias=False) is True
    assert fused.usable(Node(), antialias=True) is False
    Node.device = "gpu"
    assert fused.usable(Node(), antialias=False) is False


def test_the_fused_kernels_run_exactly_the_recipes_op_lists():
    assert fused.KERNEL_OPS["rgb"] == recipes.op_names("rgb") == recipes.op_names("rgb", AppearanceConfig(op="none"))
    for op, kernel in (("rad_inter", "rad"), ("rad_intra", "rad"), ("be", "be")):
        assert fused.KERNEL_OPS[kernel] == recipes.op_names("rgb", AppearanceConfig(op=op))
    assert fused.KERNEL_OPS["residual"] == recipes.op_names("residual")


def test_an_op_added_to_a_recipe_alone_is_refused_not_skipped(monkeypatch, tmp_path):
    """An op written into the recipe but not into the fused kernel would be skipped on the CPU."""
    from motionssl.pipelines import make_iterator
    from motionssl.pipelines.ops.base import Op
    from tests.fixtures import write_id_videos

    class Sharpen(Op):
        name = "sharpen"

    it = make_iterator("simclr", write_id_videos(str(tmp_path), [12] * 4), 2,
                       config={"clip": {"frames": 4, "augment": {"size": [16, 16]}}}, num_workers=0)
    rgb = recipes.RECIPES["rgb"]
    monkeypatch.setitem(recipes.RECIPES, "rgb", rgb[:2] + (Sharpen(),) + rgb[2:])
    with pytest.raises(NotImplementedError, match=r"no fused kernel runs .*'sharpen'.*sharpen not implemented.*"
                                                  r"_kernels\.py"):
        inspection.define(it.make_source(), it.planner, "cpu")
    monkeypatch.setenv(fused.ENV_SWITCH, "0")  # the DALI operators take the new op (here: one without a graph step)
    with pytest.raises(NotImplementedError, match="op 'sharpen' has no DALI graph step"):
        inspection.define(it.make_source(), it.planner, "cpu")
