"""torchcodec as the window source's third decoder: PyAV's frames, ``read_window``'s contract, named failures.

Skipped as a whole where torchcodec or FFmpeg's shared libraries are missing. What happens
then (``choose_decoder`` names the install lines, the reader raises no ``VideoError``) is
tested in test_sources.py, which runs without torchcodec.
"""
from fractions import Fraction

import av
import numpy as np
import pytest

from motionssl.pipelines.decoders.torchcodec import torchcodec_available

REASON = torchcodec_available()  # first: an old torchcodec without FFmpeg raises RuntimeError on import
if REASON:
    pytest.skip(REASON, allow_module_level=True)
torchcodec = pytest.importorskip("torchcodec")

from motionssl.pipelines import make_iterator  # noqa: E402
from motionssl.pipelines.decoders import (
    choose_decoder,  # noqa: E402
    read_window,  # noqa: E402
)
from motionssl.pipelines.decoders import torchcodec as torchcodec_io  # noqa: E402
from motionssl.pipelines.index import load_index  # noqa: E402
from motionssl.pipelines.sources import WindowSource  # noqa: E402
from motionssl.pipelines.video_io import VideoError, frame_timestamps, write_video
from motionssl.pipelines.decoders.facts import FileFacts  # noqa: E402
from tests.fixtures import coloured_id_frames, decode_ids, id_frames, write_id_videos, write_raw, write_turned  # noqa: E402
from tests.pipelines.test_geometry import UPRIGHT, assert_upright  # noqa: E402
from tests.pipelines.test_damage import damage_packet, textured  # noqa: E402
from tests.pipelines.test_sources import ClipAndResidual, W, run_epochs  # noqa: E402


def read_window_torchcodec(path, start, count, **options):
    return read_window(path, start, count, decoder="torchcodec", **options)


def id_video_at(path, pts, rate=25, time_base=Fraction(1, 1000), gop=8):
    """A lossless VP9 id video (tests.fixtures) whose frame ``i`` has presentation time ``pts[i]``.

    Matroska stores one default frame duration (1/``rate``) however far apart the pts are,
    so gaps shorter than that give frames whose durations overlap the next frame.
    """
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libvpx-vp9", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = gop
        stream.options = {"lossless": "1", "deadline": "realtime", "cpu-used": "8"}
        for i, image in enumerate(id_frames(len(pts))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(pts[i]), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def coloured(num_frames=24, height=96, width=128, colour=True):
    """Moving sine stripes; with ``colour`` each channel is out of phase, so chroma changes every few pixels."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([np.stack([127 + 100 * np.sin(0.2 * x + 0.1 * y * (1 + i / 5) + 2 * c * colour) for c in range(3)],
                              axis=-1).clip(0, 255).astype(np.uint8) for i in range(num_frames)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchcodec")
    vp9 = load_index(write_id_videos(str(folder / "vp9"), [40])).paths[0]
    h264 = load_index(write_id_videos(str(folder / "h264"), [40], codec="h264")).paths[0]  # B-frames
    return {
        "vp9": vp9, "h264": h264,
        "first pts 280 ms": id_video_at(folder / "late.mkv", 280 + 40 * np.arange(40)),
        "variable rate": id_video_at(folder / "vfr.mkv", np.cumsum([0] + [40 if i % 3 else 80 for i in range(1, 30)])),
        "overlapping durations": id_video_at(folder / "overlap.mkv", np.cumsum([0] + [20, 40] * 14 + [20])),
    }


@pytest.mark.parametrize("kind", ["vp9", "h264", "first pts 280 ms", "variable rate", "overlapping durations"])
def test_frame_indices_mean_the_frames_pyav_reads(videos, kind):
    """Every start (clamped below and above) and length: the frames PyAV's read_window returns, padded alike."""
    path = videos[kind]
    stamps = frame_timestamps(path)
    n = len(stamps)
    for start in range(-2, n + 2, 3):
        for count in (1, 6, 16):
            got = read_window_torchcodec(path, start, count, timestamps=stamps)
            expected = np.minimum(min(max(start, 0), n - 1) + np.arange(count), n - 1)
            assert got.shape == (count, 32, 48, 3) and got.dtype == np.uint8
            np.testing.assert_array_equal(decode_ids(got), expected, err_msg=f"{kind}: start {start}, count {count}")
            np.testing.assert_array_equal(decode_ids(read_window(path, start, count, timestamps=stamps)), expected)
    np.testing.assert_array_equal(decode_ids(read_window_torchcodec(path, 3, 5)), np.arange(3, 8))  # no cached stamps


def test_misleading_durations_are_caught_and_decoded_exactly(videos, monkeypatch):
    """Matroska's one default duration overlaps the next frame when frames are 20 ms apart: the single-frame
    lookup returns the previous frame, the pts check notices, and the scan of seek_mode="exact" finds them."""
    modes = []
    real = torchcodec_io._played_at

    def recording(decoder, wanted, tick, exact):
        try:
            frames = real(decoder, wanted, tick, exact)
        except Exception as exc:
            modes.append((exact, type(exc).__name__))
            raise
        modes.append((exact, "ok"))
        return frames

    monkeypatch.setattr(torchcodec_io, "_played_at", recording)
    np.testing.assert_array_equal(decode_ids(read_window_torchcodec(videos["overlapping durations"], 4, 6)),
                                  np.arange(4, 10))
    assert modes == [(False, "_WrongFrame"), (True, "ok")]
    modes.clear()
    read_window_torchcodec(videos["vp9"], 4, 6)
    assert modes == [(False, "ok")]  # regular streams never pay for the scan

    def always_wrong(decoder, wanted, tick, exact):
        raise torchcodec_io._WrongFrame("asked for the frame at pts 160, got pts 140")

    monkeypatch.setattr(torchcodec_io, "_played_at", always_wrong)
    with pytest.raises(VideoError, match=r"overlap\.mkv: torchcodec cannot find frames 4\.\.9 by their timestamps.*"
                                         r"decoder='pyav'"):
        read_window_torchcodec(videos["overlapping durations"], 4, 6)


@pytest.mark.parametrize("codec", ["vp9", "h264", "mjpeg"])
def test_colour_differs_by_the_conversion_never_by_a_frame(tmp_path, codec):
    """torchcodec converts with FFmpeg's defaults, the toolkit as DALI does (video_io.to_rgb).

    Measured on these videos (96×128): grey stripes differ by 0.5 levels on average and at
    most 2 (same matrix and range); stripes whose colour changes every few pixels differ by
    10.4–10.9 on average, at most 15.4 in one frame, up to 88 in one pixel (chroma
    upsampling). The neighbouring frame differs by 37 or more, so the bounds below cannot
    pass a one-frame shift. (On the benchmark videos, real footage: 2.1 on average.)
    """
    ext = {"vp9": "webm", "h264": "mp4", "mjpeg": "mkv"}[codec]
    for colour, bound in ((False, 1.0), (True, 20.0)):
        path = str(tmp_path / f"stripes{colour:d}.{ext}")
        write_video(path, coloured(colour=colour), codec=codec, gop=8)
        ours = read_window(path, 0, 24).astype(np.int16)
        theirs = read_window_torchcodec(path, 0, 24).astype(np.int16)
        per_frame = np.abs(theirs[:, None] - ours[None]).mean(axis=(2, 3, 4))  # [torchcodec frame, PyAV frame]
        assert np.diagonal(per_frame).max() < bound
        np.testing.assert_array_equal(per_frame.argmin(axis=1), np.arange(24))
        if not colour:
            assert np.abs(theirs - ours).max() <= 3


def test_unusable_files_are_named(videos, tmp_path):
    stamps = frame_timestamps(videos["vp9"])
    with pytest.raises(ValueError, match="threads"):
        read_window_torchcodec(videos["vp9"], 0, 4, threads=-1)
    with pytest.raises(ValueError, match="count"):
        read_window_torchcodec(videos["vp9"], 0, 0)
    with pytest.raises(VideoError, match=r"missing\.webm: file not found"):
        read_window_torchcodec(str(tmp_path / "missing.webm"), 0, 4, timestamps=stamps)
    (tmp_path / "empty.webm").write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.webm: file is empty"):
        read_window_torchcodec(str(tmp_path / "empty.webm"), 0, 4, timestamps=stamps)
    (tmp_path / "text.webm").write_bytes(b"not a video " * 100)
    with pytest.raises(VideoError, match=r"text\.webm: not a readable video container \(torchcodec: Could not open"):
        read_window_torchcodec(str(tmp_path / "text.webm"), 0, 4, timestamps=stamps, stream_time_base=Fraction(1, 1000))
    truncated = tmp_path / "truncated.webm"  # the index counted 40 frames; a quarter of the bytes is left
    data = open(videos["vp9"], "rb").read()
    truncated.write_bytes(data[:len(data) // 4])
    with pytest.raises(VideoError, match=r"truncated\.webm: decoding frames 30\.\.37 failed \(torchcodec: .*truncated"):
        read_window_torchcodec(str(truncated), 30, 8, timestamps=stamps, stream_time_base=Fraction(1, 1000))


def test_damaged_frame_data_decodes_silently(tmp_path):
    """What docs/design.md says: torchcodec keeps FFmpeg's log quiet and has no error checks, so an H.264
    frame that PyAV reports as damaged comes back concealed — wrong pixels, no error. If this test
    fails because torchcodec raised, it has learnt to report damage: update the docs and the module doc."""
    good = tmp_path / "good.mp4"
    write_video(str(good), textured(), codec="h264", gop=8)
    damaged = str(damage_packet(good, 20, tmp_path / "damaged.mp4"))
    with pytest.raises(VideoError, match="damaged data"):
        read_window(damaged, 16, 16)
    silent = read_window_torchcodec(damaged, 16, 16).astype(np.int16)
    clean = read_window_torchcodec(str(good), 16, 16).astype(np.int16)
    assert silent.shape == clean.shape and np.abs(silent - clean).mean() > 1  # concealed, not reported


@pytest.fixture(scope="module")
def id_list(tmp_path_factory):
    return write_id_videos(str(tmp_path_factory.mktemp("ids")), [40, 33, 24, 50, 12, 30, 45, 21])


def test_the_source_draws_the_same_samples_as_pyav(id_list):
    index = load_index(id_list).apply_window(W, "pad")
    sources = {d: WindowSource(index, ClipAndResidual(), batch_size=2, seed=3, decoder=d)
               for d in ("pyav", "torchcodec")}
    assert sources["torchcodec"].keys == sources["pyav"].keys and sources["pyav"].keys[0] == "frames"
    for iteration in range(len(sources["pyav"])):
        for slot in range(2):
            pyav, tc = (dict(zip(s.keys, s.sample(1, iteration, slot))) for s in sources.values())
            for key in pyav:
                assert tc[key].shape == pyav[key].shape and tc[key].dtype == pyav[key].dtype, key
                if key == "frames":
                    np.testing.assert_array_equal(decode_ids(tc[key]), decode_ids(pyav[key]))
                else:
                    np.testing.assert_array_equal(tc[key], pyav[key])
    assert len(sources["torchcodec"]._facts.time_bases) > 0  # probed once per file, then cached


def test_the_dali_graph_gets_the_same_windows(id_list):
    index = load_index(id_list).apply_window(W, "pad")
    (pyav,), (tc,) = (run_epochs(WindowSource(index, ClipAndResidual(), batch_size=2, seed=3, decoder=d))
                      for d in ("pyav", "torchcodec"))
    assert len(tc) == len(pyav) == 4
    for a, b in zip(pyav, tc):
        for key in ("index", "label", "speed"):
            np.testing.assert_array_equal(np.stack(b[key]), np.stack(a[key]))
        for key in ("window", "clip"):
            for u, v in zip(a[key], b[key]):
                np.testing.assert_array_equal(decode_ids(v), decode_ids(u))


def test_make_iterator_decodes_with_torchcodec_in_a_worker(id_list):
    index = load_index(id_list)
    assert choose_decoder(index, "torchcodec", "cpu") == ("torchcodec", index)
    config = {"clip": {"frames": 8, "speeds": [1], "augment": {"size": [32, 32]}}}
    batches = {}
    for decoder, workers in (("pyav", 0), ("torchcodec", 1)):
        it = make_iterator("simclr", index, 2, seed=5, config=config, num_workers=workers, decoder=decoder)
        assert it.decoder == decoder
        try:
            batches[decoder] = next(iter(it))
        finally:
            it.close()
    assert batches["torchcodec"].keys() == batches["pyav"].keys()
    for key, value in batches["pyav"].items():
        other = batches["torchcodec"][key]
        assert other.shape == value.shape and other.dtype == value.dtype and other.device == value.device, key
    for key in ("index", "label"):
        assert batches["torchcodec"][key].tolist() == batches["pyav"][key].tolist()


def test_availability_reports_missing_ffmpeg_libraries(monkeypatch):
    assert torchcodec_available() is None
    monkeypatch.setattr(torchcodec, "ffmpeg_major_version", None)  # what torchcodec 0.17 leaves without FFmpeg
    reason = torchcodec_available()
    assert "FFmpeg's shared libraries" in reason and "pip install torchcodec" in reason and \
        "apt-get install ffmpeg" in reason


# --- rotation: frames as displayed, turned as PyAV turns them -------------------------------------------
@pytest.mark.parametrize("rotation,codec", [(270, "h264"), (90, "vp9"), (180, "h264")])
def test_a_rotated_video_comes_upright_as_with_pyav(tmp_path, rotation, codec):
    frames = coloured_id_frames(12, *UPRIGHT)
    path = write_turned(str(tmp_path / f"r.{'mp4' if codec == 'h264' else 'webm'}"), frames, rotation, codec)
    pyav = read_window(path, 2, 6)
    for options in ({}, {"facts": FileFacts()}):  # the rotation probed per window, or once per file
        window = read_window_torchcodec(path, 2, 6, **options)
        assert_upright(window, frames[2:8])
        assert np.abs(window.astype(int) - pyav).mean() < 8  # the conversion (5.4 unrotated), not a turn (44+)


def test_a_display_matrix_that_is_no_quarter_turn_is_as_with_pyav_or_named(tmp_path):
    frames = coloured_id_frames(8, *UPRIGHT)
    mirrored = write_raw(str(tmp_path / "mirrored.mp4"), frames, "libx264", "mp4", options={"crf": "10"},
                         display=(0, True))
    assert_upright(read_window_torchcodec(mirrored, 0, 8), frames)  # torchcodec alone would turn it half round
    tilted = write_raw(str(tmp_path / "tilted.mp4"), frames, "libx264", "mp4", display=(45, False))
    with pytest.raises(VideoError, match=r"tilted\.mp4: its display matrix turns the picture by 45 degrees.*"
                                         r"decoder='pyav'"):
        read_window_torchcodec(tilted, 0, 8)
