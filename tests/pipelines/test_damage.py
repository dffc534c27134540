"""Damaged video data is named, never decoded silently into wrong frames where a decoder can tell.

Damage is made the way it happens on disk: bytes flipped inside one frame's payload
(H.264: the decoder detects and reports it), and a frame missing from a constant-rate
stream (a damaged block the demuxer skipped). A VP9 frame payload carries no checksum,
so flipped bytes inside it cannot be detected by decoding — docs/design.md says so.
"""
import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from motionssl.pipelines import make_iterator
from motionssl.pipelines import prepare as prep
from motionssl.pipelines.decoders import read_window
from motionssl.pipelines.index import load_index
from motionssl.pipelines.video_io import (VideoError, check_decoding, duplicate_timestamps, probe, timestamp_gap,
                                          write_video)
from tests.fixtures import count_bframes, write_raw

T = 40


def textured(num_frames=T, height=96, width=128):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([np.clip(127 + 100 * np.sin(0.2 * x + 0.1 * y * (1 + i / 5))[..., None] * np.ones(3), 0, 255)
                     .astype(np.uint8) for i in range(num_frames)])


def damage_packet(path, packet, out):
    """Flip 40 bytes a third into the payload of one video packet; writes ``out``."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[packet]
    data = bytearray(path.read_bytes())
    for k in range(pos + size // 3, min(pos + size // 3 + 40, pos + size)):
        data[k] ^= 0xA5
    out.write_bytes(bytes(data))
    return out


def vp9_with_a_missing_frame(path, missing=21):
    """A constant-rate VP9 stream whose frame ``missing`` is absent (its timestamp skipped)."""
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=25, options={"deadline": "realtime", "cpu-used": "8"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i, image in enumerate(textured()):
            if i == missing:
                continue
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damage")
    good = folder / "good.mp4"
    write_video(str(good), textured(), codec="h264", gop=8)
    return {"good": good, "h264": damage_packet(good, 20, folder / "damaged.mp4"),
            "gap": vp9_with_a_missing_frame(folder / "gap.webm")}


def test_a_full_decode_names_damage(damaged):
    assert check_decoding(str(damaged["good"])) == T
    with pytest.raises(VideoError, match=r"damaged\.mp4: the decoder reported damaged data \(h264: "):
        check_decoding(str(damaged["h264"]))
    with pytest.raises(VideoError, match=r"gap\.webm: damaged: 1 frame\(s\) missing: the timestamps jump after "
                                         r"frame 20"):
        check_decoding(str(damaged["gap"]))


def test_timestamp_gaps_need_a_constant_rate():
    assert timestamp_gap(np.arange(10) * 40) is None
    assert timestamp_gap(np.r_[0:400:40, 440:800:40]) == "1 frame(s) missing: the timestamps jump after frame 9"
    assert timestamp_gap(np.cumsum([0, 40, 40, 80, 40, 33, 47, 40])) is None  # variable rate: not judged
    # a rate that changes all along in whole multiples of one step (repeated frames left out): variable, not damage
    assert timestamp_gap(np.cumsum([0] + [40, 40, 120, 40, 80, 40, 40, 160] * 3)) is None


def test_duplicate_timestamps_are_not_missing_frames():
    one_late = np.r_[0:160:40, 120, 200:800:40]  # frame 4 stamped as frame 3: no frame is missing
    assert timestamp_gap(one_late) is None
    assert duplicate_timestamps(one_late).startswith("duplicate timestamps: 1 frame(s) share the timestamp of the "
                                                     "frame before (first: frame 4); each is kept")
    assert timestamp_gap(np.r_[0:160:40, 120, 240:800:40]) == "1 frame(s) missing: the timestamps jump after frame 4"
    assert duplicate_timestamps(np.arange(10) * 40) is None


@pytest.mark.parametrize("kind", ["h264 cabac b-pyramid", "h264 variable rate", "mpeg4 b-frames"])
def test_the_full_check_passes_clean_files(kind, tmp_path):
    frames, path = textured(24, 48, 64), str(tmp_path / "clean")
    if kind == "mpeg4 b-frames":
        write_raw(path + ".avi", frames, "mpeg4", "avi", options={"bf": "2"})
    else:
        stamps = np.cumsum([0] + [1, 1, 3, 1, 2, 1, 1, 4] * 3)[:24] if kind == "h264 variable rate" else None
        write_raw(path + ".mp4", frames, "libx264", "mp4", pts=stamps,
                  options={"preset": "medium", "x264-params": "bframes=3:b-pyramid=normal"})
    path += ".avi" if kind == "mpeg4 b-frames" else ".mp4"
    assert count_bframes(path) and check_decoding(path) == 24


def test_windows_over_damage_fail_and_elsewhere_read(damaged):
    path = str(damaged["h264"])
    np.testing.assert_array_equal(read_window(path, 0, 8), read_window(str(damaged["good"]), 0, 8))
    with pytest.raises(VideoError, match="damaged data in frames 16..31"):
        read_window(path, 16, 16)


def test_training_skips_or_stops_on_a_damaged_file(damaged, tmp_path, caplog):
    folder = damaged["good"].parent
    rows = ["good.mp4 0", "damaged.mp4 1", "good.mp4 0", "good.mp4 1"]
    (folder / "list.txt").write_text("\n".join(rows) + "\n")
    index = load_index(str(folder / "list.txt"))
    config = {"clip": {"frames": 8, "speeds": [1], "augment": {"size": [32, 32]}}}
    strict = make_iterator("simclr", index, 2, config=config, num_workers=0)
    from motionssl.pipelines.sources import PipelineError

    with pytest.raises(PipelineError, match=r"damaged\.mp4: the decoder reported damaged data"):
        for _ in range(8):  # windows start at random frames: some epoch reaches the damage
            list(strict)
    lenient = make_iterator("simclr", index, 2, config=config, num_workers=0, bad_files="skip")
    with caplog.at_level(logging.WARNING):
        for _ in range(8):
            list(lenient)
    assert "skipping" in caplog.text and "damaged.mp4" in caplog.text


def test_the_index_warns_about_missing_frames(damaged, caplog):
    folder = damaged["gap"].parent
    (folder / "gaps.txt").write_text("gap.webm 0\n")
    with caplog.at_level(logging.WARNING):
        index = load_index(str(folder / "gaps.txt"))
    assert len(index) == 1 and "irregular timestamps" in caplog.text and "gap.webm (1 frame(s) missing" in caplog.text
    assert probe(str(damaged["gap"])).gap


def test_prepare_lists_damaged_sources_in_failed_txt(damaged, tmp_path):
    src = tmp_path / "src"
    (src / "walk").mkdir(parents=True)
    (src / "walk" / "good.mp4").write_bytes(damaged["good"].read_bytes())
    (src / "walk" / "damaged.mp4").write_bytes(damaged["h264"].read_bytes())
    summary = prep.prepare("folder", src, tmp_path / "out", workers=1, progress=False)
    assert (summary["converted"], summary["failed"]) == (1, 1)
    failed = (tmp_path / "out" / "failed.txt").read_text()
    assert "damaged.mp4" in failed and "the decoder reported damaged data" in failed and "good.mp4" not in failed


def test_decoding_under_the_error_log_is_single_threaded(damaged, monkeypatch):
    """The error log is a Python callback: a codec thread that logs while the decoder is closed waits
    for the interpreter lock the closing thread holds — a deadlock. So every decode that collects
    errors runs with one codec thread, whatever ``threads`` asks; ``check_errors=False`` may thread."""
    from motionssl.pipelines import video_io

    seen = []
    real_open = video_io.open_video

    class Recording:
        def __init__(self, container):
            self._container = container

        def __getattr__(self, name):
            return getattr(self._container, name)

        def decode(self, stream):
            ctx = stream.codec_context
            seen.append((ctx.thread_count, str(stream.thread_type)))
            return self._container.decode(stream)

    from motionssl.pipelines.decoders import pyav

    for module in (video_io, pyav):  # check_decoding's open, and the window decoder's
        monkeypatch.setattr(module, "open_video", lambda path: Recording(real_open(path)))
    read_window(str(damaged["good"]), 5, 8, threads=0)
    read_window(str(damaged["good"]), 5, 8, threads=4)
    check_decoding(str(damaged["good"]))
    assert [count for count, _ in seen] == [1, 1, 1]
    read_window(str(damaged["good"]), 5, 8, threads=4, check_errors=False)
    assert seen[-1][0] == 4


def test_the_damage_benchmark_counts_every_trial_by_size():
    from benchmarks import damage

    table = damage.run(trials=3, seed=0, sizes=(1, 128), codecs=("h264",))
    assert sorted(table["h264"]) == [1, 128]
    for counts in table["h264"].values():
        assert counts["harmless"] + counts["detected"] + counts["silent"] == 3
