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
from tests.fixtures import KINETICS_SHAPES, band_ids, coloured_id_frames, write_coloured_videos, write_raw, write_turned

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


# --- rotation: the display matrix of a phone's video --------------------------------------------------
UPRIGHT = (40, 64)  # (H, W) as displayed; stored 64 high and 40 wide when turned a quarter


@pytest.fixture(scope="module")
def turned(tmp_path_factory):
    """Upright coloured id frames, and videos storing them turned by each quarter turn, by (rotation, codec)."""
    root = tmp_path_factory.mktemp("turned")
    frames = coloured_id_frames(20, *UPRIGHT)
    paths = {(r, codec): write_turned(str(root / f"r{r}.{ext}"), frames, r, codec)
             for r in (0, 90, 180, 270) for codec, ext in (("h264", "mp4"), ("vp9", "webm"))}
    return frames, paths


def assert_upright(window, frames):
    """The frames as displayed. Coding loses 6–7 levels on average at this size; a turn the wrong way, a
    transpose or a mirror image differs by 44 or more."""
    assert window.shape == frames.shape
    assert band_ids(window).tolist() == band_ids(frames).tolist()
    assert np.abs(window.astype(int) - frames).mean() < 12


@pytest.mark.parametrize("codec", ["h264", "vp9"])
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_pyav_turns_a_rotated_video_upright(turned, rotation, codec):
    frames, paths = turned
    window = read_window(paths[rotation, codec], 5, 8)
    assert_upright(window, frames[5:13])
    assert window.flags["C_CONTIGUOUS"]  # one copy into the window, in the layout DALI's external source takes


def test_dalis_cpu_decoder_turns_each_video_of_a_batch_upright(turned, tmp_path):
    """VP9 in WebM carries the display matrix too, and DALI's decoder ignores it: the graph turns each window."""
    frames, paths = turned
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{paths[r, 'vp9']} 0\n" for r in (0, 90, 180, 270)))
    index = load_index(str(listing))
    assert [(m.height, m.width, m.rotation) for m in index.media] == [(*UPRIGHT, r) for r in (0, 90, 180, 270)]
    windows = decode_windows(index, [(v, 5) for v in range(4)], 8, "dali")
    for v, window in enumerate(windows):
        assert_upright(window, frames[5:13])
        assert np.abs(window.astype(int) - read_window(index.paths[v], 5, 8)).max() <= 1  # PyAV's pixels


@pytest.mark.parametrize("display", [(45, False), (0, True)], ids=["45-degrees", "mirrored"])
def test_a_display_matrix_that_is_no_quarter_turn_is_named_once_and_left_as_stored(tmp_path, caplog, display):
    frames = coloured_id_frames(8, *UPRIGHT)
    path = write_raw(str(tmp_path / "odd.mp4"), frames, "libx264", "mp4", options={"crf": "10"}, display=display)
    with caplog.at_level("WARNING"):
        first, again = read_window(path, 0, 8), read_window(path, 2, 4)
    assert_upright(first, frames)
    assert_upright(again, frames[2:6])
    assert caplog.text.count("odd.mp4: its display matrix") == 1, caplog.text
    assert ("mirrors" if display[1] else "45 degrees") in caplog.text
