"""Parity of every clip-construction op with its NumPy reference, on CPU (and GPU when present)."""
import numpy as np
import pytest
from nvidia.dali import types

from motionssl.pipelines.ops import blend, colour, crop, cut, normalise, residual
from motionssl.pipelines.ops.config import KINETICS_MEAN, KINETICS_STD, AugmentConfig
from tests.dali_utils import run_ops

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
FRAMES = "FHWC"


def random_windows(rng, batch=3, frames=12, shapes=((36, 52), (40, 40), (30, 64))):
    return [rng.integers(0, 256, (frames, *shapes[i % len(shapes)], 3), dtype=np.uint8) for i in range(batch)]


@pytest.mark.parametrize("device", DEVICES)
def test_cut_matches_reference(device):
    rng = np.random.default_rng(0)
    windows = random_windows(rng)
    orders = [cut.draw_clip_indices(rng, 4, s, valid=12, motion=m)
              for s, m in zip((1, 2, 3), ("speed", "reverse", "shuffle"))]
    (out,) = run_ops(lambda w, o: cut.cut(w, o), {"w": windows, "o": orders}, device, {"w": FRAMES})
    for got, win, order in zip(out, windows, orders):
        np.testing.assert_array_equal(got, cut.cut_reference(win, order))


@pytest.mark.parametrize("device", DEVICES)
def test_crop_resize_matches_reference(device):
    rng = np.random.default_rng(1)
    windows = random_windows(rng, frames=3)
    cfg = AugmentConfig(size=(24, 20), flip_prob=0.5)
    rois = [crop.draw_crop(rng, w.shape[1:3], cfg) for w in windows]
    rois[0] = np.array([2.0, 40.0, 30.0, 3.5], np.float32)  # a flipped crop, explicitly
    (out,) = run_ops(lambda w, r: crop.crop_resize(w, r, cfg.size), {"w": windows, "r": rois}, device,
                     {"w": FRAMES})
    for got, win, roi in zip(out, windows, rois):
        want = crop.crop_resize_reference(win, roi, cfg.size)
        assert got.shape == want.shape == (3, 24, 20, 3)
        assert np.abs(got.astype(int) - want).max() <= 1  # float → uint8 rounding at .5 ties


@pytest.mark.parametrize("device", DEVICES)
def test_color_jitter_matches_reference(device):
    rng = np.random.default_rng(2)
    windows = random_windows(rng, frames=2)
    cfg = AugmentConfig(jitter_prob=1.0, grayscale_prob=0.0)
    colors = [colour.draw_color(rng, cfg) for _ in windows]
    colors[1][2] = 0.0  # grayscale
    (out,) = run_ops(lambda w, c: colour.color_jitter(w, c), {"w": windows, "c": colors}, device, {"w": FRAMES})
    for got, win, color in zip(out, windows, colors):
        np.testing.assert_allclose(got, colour.color_jitter_reference(win, color), atol=2e-3 * 255)
    grey = out[1]
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=0.05)  # saturation 0 is grey


def test_draw_color_respects_probabilities():
    rng = np.random.default_rng(3)
    never = AugmentConfig(jitter_prob=0.0, grayscale_prob=0.0)
    assert all(np.array_equal(colour.draw_color(rng, never), colour.IDENTITY_COLOR) for _ in range(50))
    always_grey = AugmentConfig(jitter_prob=0.0, grayscale_prob=1.0)
    assert all(colour.draw_color(rng, always_grey)[2] == 0 for _ in range(50))
    cfg = AugmentConfig(jitter_prob=1.0, brightness=0.2, hue=0.05, grayscale_prob=0.0)
    draws = np.stack([colour.draw_color(rng, cfg) for _ in range(500)])
    assert draws[:, 0].min() >= 0.8 and draws[:, 0].max() <= 1.2
    assert np.abs(draws[:, 3]).max() <= 18.0 and np.abs(draws[:, 3]).max() > 10.0


def test_draw_crop_area_ratio_and_flip():
    rng = np.random.default_rng(4)
    cfg = AugmentConfig(crop_area=(0.3, 1.0), crop_ratio=(0.75, 4 / 3), flip_prob=0.5)
    rois = np.stack([crop.draw_crop(rng, (120, 160), cfg) for _ in range(2000)])
    h = rois[:, 2] - rois[:, 0]
    w = np.abs(rois[:, 3] - rois[:, 1])
    assert np.all(rois[:, 0] >= 0) and np.all(rois[:, 2] <= 120 + 1e-3)
    assert np.all(np.minimum(rois[:, 1], rois[:, 3]) >= 0) and np.all(np.maximum(rois[:, 1], rois[:, 3]) <= 160 + 1e-3)
    area = h * w / (120 * 160)
    assert area.min() >= 0.3 - 1e-4 and area.max() <= 1.0 + 1e-4
    ratio = w / h
    assert ratio.min() >= 0.75 - 1e-3 and ratio.max() <= 4 / 3 + 1e-3
    flipped = np.mean(rois[:, 1] > rois[:, 3])
    assert 0.45 < flipped < 0.55
    no_flip = AugmentConfig(flip_prob=0.0)
    assert all(crop.draw_crop(rng, (64, 64), no_flip)[1] < crop.draw_crop(rng, (64, 64), no_flip)[3]
               for _ in range(100))


@pytest.mark.parametrize("device", DEVICES)
def test_residual_matches_reference(device):
    rng = np.random.default_rng(5)
    pairs = [rng.uniform(0, 255, (8, 10, 12, 3)).astype(np.float32) for _ in range(2)]
    (out,) = run_ops(lambda p: residual.residual_clip(p, 4), {"p": pairs}, device, {"p": FRAMES})
    for got, pair in zip(out, pairs):
        np.testing.assert_allclose(got, residual.residual_reference(pair, 4), atol=1e-4)
        assert got.shape == (4, 10, 12, 3) and got.min() >= 0


@pytest.mark.parametrize("k,size", [(5, (40, 40)), (3, (28, 34)), (1, (16, 16))])
@pytest.mark.parametrize("device", DEVICES)
def test_rad_noise_matches_reference(device, k, size):
    rng = np.random.default_rng(6)
    frames = [w[:1] for w in random_windows(rng, frames=1)]
    (out,) = run_ops(lambda f: blend.rad_noise(f, k, size), {"f": frames}, device, {"f": FRAMES})
    for got, frame in zip(out, frames):
        want = blend.rad_noise_reference(frame, k, size)
        assert got.shape == want.shape == (1, *size, 3)
        assert np.abs(got.astype(int) - want).max() <= 1
    th, tw = blend.tile_size(size, k)
    if k > 1:  # the mosaic repeats: tile (0, 0) equals tile (1, 1)
        np.testing.assert_array_equal(out[0][0, :th, :tw][: size[0] - th, : size[1] - tw],
                                      out[0][0, th:2 * th, tw:2 * tw][: size[0] - th, : size[1] - tw])


@pytest.mark.parametrize("device", DEVICES)
def test_rad_inter_blend_takes_noise_from_partner(device):
    rng = np.random.default_rng(7)
    windows = random_windows(rng, batch=4, frames=6, shapes=((30, 30),))
    clip_idx = [cut.draw_clip_indices(rng, 3, 2, valid=6) for _ in windows]
    noise_idx = [np.array([rng.integers(6)], np.int32) for _ in windows]
    partner = blend.draw_derangement(rng, 4)
    assert np.all(partner != np.arange(4)) and sorted(partner) == [0, 1, 2, 3]
    lams = [blend.draw_lambda(rng, (0.1, 0.5)) for _ in windows]
    size, k = (20, 20), 5

    def build(w, c, n, p, lam):
        clip = fn_float(crop.crop_resize(cut.cut(w, c), full_roi(w), size))
        noise = blend.borrow(blend.rad_noise(blend.pick_frame(w, n), k, size), p)
        return blend.blend(clip, noise, lam)

    from nvidia.dali import fn

    def fn_float(x):
        return fn.cast(x, dtype=types.FLOAT)

    def full_roi(w):
        return np.array([0, 0, 30, 30], np.float32)

    partner_list = [np.array(v, np.int32) for v in partner]
    (out,) = run_ops(build, {"w": windows, "c": clip_idx, "n": noise_idx, "p": partner_list, "lam": lams},
                     device, {"w": FRAMES})
    for i, got in enumerate(out):
        clip = crop.crop_resize_reference(cut.cut_reference(windows[i], clip_idx[i]), [0, 0, 30, 30], size)
        j = partner[i]
        noise = blend.rad_noise_reference(cut.cut_reference(windows[j], noise_idx[j]), k, size)
        want = blend.blend_reference(clip, noise, lams[i])
        assert np.abs(got - want).max() <= 1.0
        # ... and not from the sample's own window
        own = blend.blend_reference(clip, blend.rad_noise_reference(cut.cut_reference(windows[i], noise_idx[i]), k, size), lams[i])
        assert np.abs(got - own).max() > 5


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_matches_reference(device):
    rng = np.random.default_rng(8)
    frames = [rng.uniform(0, 255, (3, 8, 6, 3)).astype(np.float32) for _ in range(2)]
    mean, std = KINETICS_MEAN, KINETICS_STD
    (out,) = run_ops(lambda f: normalise.normalize(f, mean, std, types.FLOAT), {"f": frames}, device, {"f": FRAMES})
    for got, f in zip(out, frames):
        np.testing.assert_allclose(got, normalise.normalize_reference(f, mean, std), atol=1e-4)
        assert got.shape == (3, 3, 8, 6)


def test_derangement_and_lambda_draws():
    rng = np.random.default_rng(9)
    for b in (2, 3, 7, 64):
        for _ in range(20):
            p = blend.draw_derangement(rng, b)
            assert sorted(p) == list(range(b)) and np.all(p != np.arange(b))
    lams = np.array([blend.draw_lambda(rng, (0.1, 0.5)) for _ in range(1000)])
    assert lams.min() >= 0.1 and lams.max() <= 0.5 and abs(lams.mean() - 0.3) < 0.02
    with pytest.raises(ValueError, match="0 <= a <= b <= 1"):
        blend.draw_lambda(rng, (0.5, 0.1))


def test_clip_indices_speed_motion_and_padding():
    rng = np.random.default_rng(10)
    for speed in (1, 2, 4):
        idx = cut.draw_clip_indices(rng, 8, speed, valid=64)
        assert np.all(np.diff(idx) == speed) and idx[0] >= 0 and idx[-1] < 64
    rev = cut.draw_clip_indices(rng, 8, 2, valid=64, motion="reverse")
    assert np.all(np.diff(rev) == -2)
    shuf = cut.draw_clip_indices(rng, 8, 2, valid=64, motion="shuffle")
    assert sorted(np.diff(np.sort(shuf))) == [2] * 7
    short = cut.draw_clip_indices(rng, 8, 2, valid=5)  # span 15 > 5 real frames: pad, never wrap
    np.testing.assert_array_equal(short, [0, 2, 4, 4, 4, 4, 4, 4])
    res = cut.draw_residual_indices(rng, 4, 2, 3, valid=40)
    np.testing.assert_array_equal(res[4:] - res[:4], [6, 6, 6, 6])
    res_short = cut.draw_residual_indices(rng, 4, 2, 3, valid=8)
    assert res_short.max() == 7 and np.all(res_short[4:] >= res_short[:4])
    starts = [cut.draw_clip_indices(rng, 4, 1, valid=10)[0] for _ in range(700)]
    assert set(starts) == set(range(7))  # every start of the window is reachable
    with pytest.raises(ValueError, match="motion"):
        cut.draw_clip_indices(rng, 4, 1, valid=10, motion="jitter")
    with pytest.raises(ValueError, match="two speeds"):
        cut.draw_speed(rng, [2], exclude=2)


@pytest.mark.parametrize("name", ["simclr", "moquad", "mcpnet"])
def test_clip_window_widens_the_decoded_window_and_spreads_the_clips(name):
    """clip.window: the planner decodes that many frames (never fewer than its clips need), and a
    sample's clips then start anywhere in it, further apart than the shortest window allows."""
    from motionssl.pipelines.config import build
    from motionssl.pipelines.iterators import PIPELINES

    spec = PIPELINES[name]
    clip = {"frames": 4, "speeds": [1, 2], "augment": {"size": [16, 16]}}
    need = spec.planner(build(spec.config, {"clip": clip}, name)).window
    assert spec.planner(build(spec.config, {"clip": dict(clip, window=2)}, name)).window == need
    planner = spec.planner(build(spec.config, {"clip": dict(clip, window=need + 12)}, name))
    assert planner.window == need + 12
    rng, batch_rng = np.random.default_rng(0), np.random.default_rng(1)
    starts = []
    for _ in range(50):
        params = planner.draw(rng, batch_rng, 0, 2, planner.window, (20, 20))
        idx = [v for k, v in params.items() if k.endswith("idx")]
        assert all(0 <= i.min() and i.max() < planner.window for i in idx)
        starts.append(max(int(i.min()) for i in idx))
    assert max(starts) > need  # a clip started past the end of the shortest window
    with pytest.raises(ValueError, match="clip.window must be >= 0"):
        build(spec.config, {"clip": dict(clip, window=-1)}, name)


# --- the jitter clamps as torchvision's ColorJitter does ----------------------------------------
def _torchvision(frames, steps):
    """torchvision's functional adjustments, in order, on float frames in [0, 1] (they clamp after each)."""
    import torch
    from torchvision.transforms.v2 import functional as tvf

    x = torch.from_numpy(frames.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    for name, value in steps:
        x = getattr(tvf, f"adjust_{name}")(x, value)
    return x.permute(0, 2, 3, 1).numpy().astype(np.float64) * 255.0


def _mean_grey_128(rng, shape=(2, 16, 24, 3)):
    """Frames whose every channel averages 128 exactly (pixel pairs x, 256 − x), so the two contrast pivots agree."""
    half = rng.integers(1, 256, (shape[0], shape[1] // 2, shape[2], 3))
    return np.concatenate([half, 256 - half], axis=1).astype(np.uint8)


@pytest.mark.parametrize("color, steps", [
    ((1.9, 1.0, 1.0, 0.0), [("brightness", 1.9)]),
    ((0.3, 1.0, 1.0, 0.0), [("brightness", 0.3)]),
    ((1.0, 1.0, 1.9, 0.0), [("saturation", 1.9)]),
    ((1.0, 1.0, 0.0, 0.0), [("saturation", 0.0)]),
    ((1.0, 1.8, 1.0, 0.0), [("contrast", 1.8)]),
    ((1.7, 1.0, 1.9, 0.0), [("brightness", 1.7), ("saturation", 1.9)]),
    ((1.0, 1.6, 1.9, 0.0), [("contrast", 1.6), ("saturation", 1.9)]),
    ((0.6, 1.0, 1.8, 0.0), [("brightness", 0.6), ("saturation", 1.8)]),
])
def test_jitter_clamps_after_every_adjustment_as_torchvision(color, steps):
    """Where the definitions agree (brightness, saturation; contrast on frames of mean grey 128, so not after
    brightness), torchvision's functional ops and the twin agree within a level, clamping included; hue is YIQ
    here (documented)."""
    frames = _mean_grey_128(np.random.default_rng(11))
    ours = colour.color_jitter_reference(frames, np.array(color, np.float32))
    theirs = _torchvision(frames, steps)
    # Brightness and contrast agree to 0.02 levels; saturation to 0.7 (the YIQ coefficients of fn.color_twist,
    # rounded to three decimals, take grey to 1.003 Y in blue).
    assert np.abs(ours - theirs).max() < (1.0 if color[2] != 1.0 else 0.05)
    clipped = (theirs <= 0.0) | (theirs >= 255.0)
    if max(color[:3]) > 1:
        assert clipped.mean() > 0.01  # the strong settings do clamp, so the test can see the clamping


def test_one_clamp_at_the_end_would_differ_from_torchvision():
    """The same chain clamped once at the end (the jitter before) is far from torchvision: per-step clamping matters."""
    frames = _mean_grey_128(np.random.default_rng(12))
    theirs = _torchvision(frames, [("brightness", 1.7), ("saturation", 1.9)])
    x = frames.astype(np.float64)
    for matrix, offset in colour.colour_steps((1.7, 1.0, 1.9, 0.0)):
        x = x @ matrix.T + offset
    assert np.abs(np.clip(x, 0, 255) - theirs).max() > 50


@pytest.mark.parametrize("device", DEVICES)
def test_jittered_values_stay_in_range_and_keep_the_clean_statistics(device):
    """The default augmentation's jitter keeps every value in [0, 255]; the spread of jittered clips stays near
    that of clean ones (unclamped, it was about 1.5 times as wide)."""
    rng = np.random.default_rng(13)
    windows = [_mean_grey_128(rng, (2, 32, 32, 3)) for _ in range(12)]
    cfg = AugmentConfig(jitter_prob=1.0, grayscale_prob=0.0, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
    colors = [colour.draw_color(rng, cfg) for _ in windows]
    (out,) = run_ops(lambda w, c: colour.color_jitter(w, c), {"w": windows, "c": colors}, device, {"w": FRAMES})
    got = np.stack([np.asarray(o) for o in out])
    assert got.min() >= 0.0 and got.max() <= 255.0
    clean = np.stack(windows).astype(np.float64)
    assert got.std() < 1.25 * clean.std()
