"""Colour and geometry, on coloured, textured, asymmetric, non-square videos that still carry their frame index.

Grey frames (R = G = B) at square sizes see wrong frame indices and brightness and nothing
else: a crop window off by its transpose, a flip the wrong way, swapped channels or a hue
turned the other way give the same grey. These fixtures (``tests.fixtures.coloured_id_frames``)
show them all, at the frame shapes ``prepare --short-side 256`` writes for Kinetics (456×256,
342×256; widths not multiples of 16, which DALI's decoders pad internally) and at odd sizes.
The same comparisons run on the GPU in ``tests/pipelines/test_gpu.py`` (NVDEC).
"""
import numpy as np
import pytest
import torch

from motionssl.pipelines import PIPELINES, make_iterator
from motionssl.pipelines.decoders import read_window
from motionssl.pipelines.index import load_index
from motionssl.pipelines.reference_loader import reference_loader
from tests.dali_utils import decode_windows
from tests.fixtures import KINETICS_SHAPES, band_ids, coloured_id_frames, write_coloured_videos

B, T, SIZE = 4, 4, (24, 40)  # a non-square output: height and width swapped would not fit


def test_the_fixture_sees_flips_transposes_and_channel_order():
    frames = coloured_id_frames(3, 48, 80)
    assert band_ids(frames).tolist() == [0, 1, 2]
    square = coloured_id_frames(1, 64, 64)[0].astype(int)
    for changed in (square[:, ::-1], square[::-1], square.transpose(1, 0, 2), square[..., ::-1], square[..., [1, 0, 2]]):
        assert np.abs(changed - square).mean() > 20
    assert frames[..., 0].std() > 40 and np.abs(frames[..., 0].astype(int) - frames[..., 1]).mean() > 20  # colour


@pytest.mark.parametrize("shape", KINETICS_SHAPES + ((121, 203),))
def test_dalis_cpu_decoder_and_the_pyav_workers_agree_frame_for_frame(tmp_path, shape):
    index = load_index(write_coloured_videos(str(tmp_path), [shape], num_frames=30))
    samples = [(0, 0), (0, 13)]
    dali = decode_windows(index, samples, 8, "dali")
    for (_, start), window in zip(samples, dali):
        pyav = read_window(index.paths[0], start, 8)
        assert window.shape == pyav.shape == (8, *shape, 3)
        assert band_ids(window).tolist() == list(range(start, start + 8))  # the right frames, in order
        diff = np.abs(window.astype(int) - pyav)
        assert diff.max() <= 1 and diff.mean() < 0.05, (diff.mean(), diff.max())  # the same conversion


@pytest.fixture(scope="module")
def coloured(tmp_path_factory):
    """Eight coloured videos of four non-square shapes (widths not multiples of 16, one odd height)."""
    shapes = [(72, 128), (64, 114), (57, 100), (96, 80)] * 2
    return load_index(write_coloured_videos(str(tmp_path_factory.mktemp("coloured")), shapes, num_frames=30))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "dali-ops"])
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipelines_match_the_reference_on_coloured_non_square_video(coloured, name, fused, monkeypatch):
    """Random crops, flips, colour jitter and grayscale, RAD and residuals: every clip equals the reference's."""
    monkeypatch.setenv("MOTIONSSL_FUSED", "1" if fused else "0")
    clip = {"frames": T, "speeds": [1, 2], "augment": {"size": list(SIZE)}}
    it = make_iterator(name, coloured, B, seed=3, config={"clip": clip}, num_workers=0)
    got = [{k: v.clone() for k, v in b.items()} for _, b in zip(range(2), it)]
    want = list(reference_loader(it, num_workers=0))[:2]
    for batch, ref in zip(got, want):
        for key, value in batch.items():
            if value.ndim == 5:
                assert value.shape == (B, 3, T, *SIZE)
                diff = (value - ref[key]).abs()
                assert diff.max() < 0.05 and diff.mean() < 2e-3, (key, diff.max(), diff.mean())
            else:
                assert torch.equal(value, ref[key]), key
    it.close()
