"""The window source: exact frames, speeds and gaps, seeding, sharding, resume, bad input."""
import os

import numpy as np
import pytest
from nvidia.dali import fn, types

from motionssl.pipelines import build_pipeline
from motionssl.pipelines.decoders import choose_decoder, read_window
from motionssl.pipelines.index import load_index
from motionssl.pipelines.ops import cut, residual
from motionssl.pipelines.pipeline import output_names
from motionssl.pipelines.planners.base import Planner
from motionssl.pipelines.sources import WindowSource
from tests.fixtures import band_ids, decode_ids, write_coloured_videos, write_id_videos

T, SPEEDS, GAP, W = 4, (1, 2), 3, 20


class ClipAndResidual(Planner):
    """A clip at a random speed and a residual clip at the same speed (test planner)."""

    window = W
    keys = ("speed", "clip", "pairs")
    outputs = ("window", "clip", "residual", "speed")
    values = {"speed": "int32"}

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        speed = cut.draw_speed(rng, SPEEDS)
        return {"speed": np.array(speed, np.int32),
                "clip": cut.draw_clip_indices(rng, T, speed, valid),
                "pairs": cut.draw_residual_indices(rng, T, speed, GAP, valid)}

    def graph(self, window, p, dtype):
        pairs = fn.cast(cut.cut(window, p["pairs"]), dtype=types.FLOAT)
        return {"window": window, "clip": cut.cut(window, p["clip"]), "residual": residual.residual_clip(pairs, T),
                "speed": p["speed"]}


def run_epochs(source, epochs=1, device="cpu", num_workers=0):
    """All batches of ``epochs`` epochs as dicts of per-sample NumPy arrays."""
    p = build_pipeline(source, source.planner, device=device, num_workers=num_workers, num_threads=2)
    p.build()
    names = output_names(source.planner)
    out = []
    for _ in range(epochs):
        batches = []
        while True:
            try:
                result = p.run()
            except StopIteration:
                p.reset()
                break
            batches.append({k: [np.array(r.as_cpu()[i] if device == "gpu" else r[i]) for i in range(len(r))]
                            for k, r in zip(names, result)})
        out.append(batches)
    return out


@pytest.fixture(scope="module")
def id_list(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ids")
    return write_id_videos(str(folder), [40, 33, 24, 50, 12, 30, 45, 21])


@pytest.fixture(scope="module")
def coloured_list(tmp_path_factory):
    """Coloured, asymmetric id videos, landscape and portrait, at non-square sizes NVDEC reads (its VP9 minimum
    is 128×128); two shorter than a window."""
    shapes = [(128, 200), (176, 128), (128, 232), (136, 170)] * 2
    return write_coloured_videos(str(tmp_path_factory.mktemp("coloured")), shapes,
                                 num_frames=[40, 33, 24, 43, 12, 30, 42, 17])


def make_source(id_list, **kw):
    index = load_index(id_list).apply_window(W, "pad")
    return WindowSource(index, ClipAndResidual(), **{"batch_size": 2, "seed": 3, **kw})


@pytest.mark.parametrize("decoder,device,workers", [
    ("pyav", "cpu", 0), ("dali", "cpu", 0), ("pyav", "cpu", 2),
    pytest.param("dali", "gpu", 2, marks=pytest.mark.gpu), pytest.param("pyav", "gpu", 2, marks=pytest.mark.gpu)])
def test_windows_clips_and_residuals_are_exact(coloured_list, decoder, device, workers):
    """The window is the video's frames from a start that fits (in order, upright, channels in order); the clip
    and the residual are cut from it exactly, at the clip's speed and the residual's gap."""
    source = make_source(coloured_list, decoder=decoder)
    (epoch,) = run_epochs(source, device=device, num_workers=workers)
    index = load_index(coloured_list)
    frames = [read_window(path, 0, n) for path, n in zip(index.paths, index.num_frames)]  # PyAV's decode
    # NVDEC converts YUV to RGB its own way (a few levels off); a flip, transpose or channel swap is tens off.
    tolerance = 4.0 if device == "gpu" and decoder == "dali" else 0.5
    assert len(epoch) == len(source) == 4
    for batch in epoch:
        for s in range(2):
            video, speed = int(batch["index"][s]), int(batch["speed"][s])
            n = index.num_frames[video]
            window = batch["window"][s]
            ids = band_ids(window)
            start = ids[0]
            # W consecutive frames from a start that fits; short videos repeat their last frame
            np.testing.assert_array_equal(ids, np.minimum(start + np.arange(W), n - 1))
            assert 0 <= start <= max(n - W, 0)
            assert np.abs(window.astype(int) - frames[video][ids]).mean() < tolerance
            clip_ids = band_ids(batch["clip"][s])
            np.testing.assert_array_equal(batch["clip"][s], window[clip_ids - start])
            valid = min(n - start, W)
            if cut.clip_span(T, speed) <= valid:
                assert np.all(np.diff(clip_ids) == speed)
            if cut.residual_span(T, speed, GAP) <= valid:  # |F_i − F_{i+t·s}| of frames of the window
                firsts = range(valid - cut.residual_span(T, speed, GAP) + 1)
                pairs = [window[a + speed * np.arange(T + GAP)].astype(np.float32) for a in firsts]
                assert any(np.array_equal(batch["residual"][s], np.abs(p[:T] - p[GAP:])) for p in pairs)
            assert batch["label"][s] == video % 2


def test_epochs_are_permutations_with_new_starts(id_list):
    source = make_source(id_list)
    e0, e1 = run_epochs(source, epochs=2)
    for epoch in (e0, e1):
        seen = [int(i) for b in epoch for i in b["index"]]
        assert sorted(seen) == list(range(8))  # one window per video
        for b in epoch:
            assert len(set(int(i) for i in b["index"])) == len(b["index"])  # distinct videos per batch
    starts0 = {int(i): decode_ids(w)[0] for b in e0 for i, w in zip(b["index"], b["window"])}
    starts1 = {int(i): decode_ids(w)[0] for b in e1 for i, w in zip(b["index"], b["window"])}
    assert starts0 != starts1
    order0 = [int(i) for b in e0 for i in b["index"]]
    order1 = [int(i) for b in e1 for i in b["index"]]
    assert order0 != order1


def test_seeded_runs_reproduce(id_list):
    a = run_epochs(make_source(id_list, seed=11))[0]
    b = run_epochs(make_source(id_list, seed=11))[0]
    c = run_epochs(make_source(id_list, seed=12))[0]
    for x, y in zip(a, b):
        for key in ("window", "clip", "index"):
            for u, v in zip(x[key], y[key]):
                np.testing.assert_array_equal(u, v)
    assert [int(i) for b in a for i in b["index"]] != [int(i) for b in c for i in b["index"]]


def test_two_shards_cover_the_epoch_once(id_list):
    shards = [run_epochs(make_source(id_list, shard_id=r, num_shards=2, seed=5))[0] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 2
    seen = [int(i) for epoch in shards for b in epoch for i in b["index"]]
    assert sorted(seen) == list(range(8))


def test_resume_yields_the_same_next_batches(id_list):
    full = run_epochs(make_source(id_list), epochs=2)
    resumed = run_epochs(make_source(id_list, start_epoch=0, start_iteration=3), epochs=2)
    expected = full[0][3:] + full[1]
    got = resumed[0] + resumed[1]
    assert len(got) == len(expected)
    for x, y in zip(got, expected):
        for key in ("window", "clip", "index"):
            for u, v in zip(x[key], y[key]):
                np.testing.assert_array_equal(u, v)


def test_pad_last_batch_sees_every_video(id_list):
    index = load_index(id_list).apply_window(W, "pad")
    source = WindowSource(index, ClipAndResidual(), batch_size=3, seed=0, last_batch="pad")
    (epoch,) = run_epochs(source)
    assert len(epoch) == 3
    seen = [int(i) for b in epoch for i in b["index"]]
    assert set(seen) == set(range(8))
    assert all(len(set(int(i) for i in b["index"])) == 3 for b in epoch)


def test_evaluation_samples_at_given_starts(id_list):
    index = load_index(id_list).apply_window(W, "pad")
    samples = [(0, 0), (0, 17), (3, 25), (4, 0)]
    source = WindowSource(index, ClipAndResidual(), batch_size=2, shuffle=False, samples=samples)
    (epoch,) = run_epochs(source)
    got = [(int(i), decode_ids(w)[0]) for b in epoch for i, w in zip(b["index"], b["window"])]
    assert got == samples


def test_bad_arguments_are_named(id_list):
    index = load_index(id_list)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        WindowSource(index, ClipAndResidual(), batch_size=9)
    with pytest.raises(ValueError, match="decoder"):
        WindowSource(index, ClipAndResidual(), batch_size=2, decoder="ffmpeg")
    with pytest.raises(ValueError, match="shard_id"):
        WindowSource(index, ClipAndResidual(), batch_size=2, shard_id=2, num_shards=2)


def test_file_broken_after_indexing_is_named_or_skipped(tmp_path):
    lst = write_id_videos(str(tmp_path), [30, 30, 30, 30])
    index = load_index(lst).apply_window(W)
    victim = index.paths[2]
    with open(victim, "r+b") as f:  # corrupt the file after its frames were counted
        f.truncate(os.path.getsize(victim) // 4)
    source = WindowSource(index, ClipAndResidual(), batch_size=2, seed=0)
    with pytest.raises(Exception, match="v002"):
        run_epochs(source)
    skipping = WindowSource(index, ClipAndResidual(), batch_size=2, seed=0, bad_files="skip")
    (epoch,) = run_epochs(skipping)
    seen = [int(i) for b in epoch for i in b["index"]]
    assert 2 not in seen and len(seen) == 4


def test_h264_on_dali_cpu_names_the_conversion(tmp_path):
    lst = write_id_videos(str(tmp_path), [24, 24], codec="h264")
    index = load_index(lst).apply_window(W)
    with pytest.raises(ValueError, match=r"v00\d\.mp4.*h264.*motionssl-prepare"):
        choose_decoder(index, "dali", "cpu")
    assert choose_decoder(index, None, "cpu")[0] == "pyav"
    pyav = WindowSource(index, ClipAndResidual(), batch_size=2, decoder="pyav")
    (epoch,) = run_epochs(pyav)  # PyAV reads any codec
    assert len(epoch) == 1


def test_torchcodec_is_optional_and_names_its_install_lines(id_list, monkeypatch):
    """Runs without torchcodec (tests/pipelines/test_torchcodec.py needs it): asked for where it cannot
    be used, the decoder is refused before the first batch with the reason and the two install lines."""
    import sys

    from motionssl.pipelines.decoders import read_window
    from motionssl.pipelines.decoders import torchcodec as torchcodec_io
    from motionssl.pipelines.video_io import VideoError

    index = load_index(id_list)
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # as if it were not installed
    reason = torchcodec_io.torchcodec_available()
    assert reason.startswith("torchcodec cannot be used (ModuleNotFoundError")
    assert "`pip install torchcodec`" in reason and "`apt-get install ffmpeg`" in reason
    monkeypatch.setattr(torchcodec_io, "torchcodec_available", lambda: reason)
    with pytest.raises(ValueError, match=r"decoder='torchcodec': torchcodec cannot be used .*pip install torchcodec.*"
                                         r"apt-get install ffmpeg.*decoder='pyav'"):
        choose_decoder(index, "torchcodec", "cpu")
    assert choose_decoder(index, None, "cpu")[0] == "pyav"  # never a default
    # In a worker the reader fails with a RuntimeError, not a VideoError that bad_files="skip" would
    # take for a bad file (and skip every file for).
    monkeypatch.setattr(torchcodec_io, "_usable", False)
    with pytest.raises(RuntimeError, match="pip install torchcodec") as raised:
        read_window(index.paths[0], 0, 4, decoder="torchcodec")
    assert not isinstance(raised.value, VideoError)


def _write_vfr_video(path: str, num_frames: int = 20) -> np.ndarray:
    """A lossless VP9 id video whose frame gaps alternate 40/40/80 ms (variable frame rate)."""
    from fractions import Fraction

    import av

    from tests.fixtures import id_frames

    pts = np.cumsum([0] + [40 if i % 3 else 80 for i in range(1, num_frames)])
    with av.open(path, "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"lossless": "1", "deadline": "realtime", "cpu-used": "8"}
        for i, image in enumerate(id_frames(num_frames)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(pts[i]), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return pts


def test_timestamps_are_demuxed_once_per_file_and_kept_compact(tmp_path, monkeypatch):
    from motionssl.pipelines.decoders import facts
    from motionssl.pipelines.video_io import frame_timestamps

    regular = load_index(write_id_videos(str(tmp_path), [24])).paths[0]
    irregular = str(tmp_path / "vfr.mkv")
    pts = _write_vfr_video(irregular)
    calls = []
    monkeypatch.setattr(facts, "frame_timestamps", lambda p: calls.append(p) or frame_timestamps(p))
    cache = facts.FileFacts(capacity=1)
    for _ in range(3):
        np.testing.assert_array_equal(cache.get(regular), frame_timestamps(regular))
        np.testing.assert_array_equal(cache.get(irregular), pts)
    assert calls == [regular, irregular]  # once each, however often asked
    assert regular in cache.regular and irregular not in cache.regular  # 3 numbers, not an array
    assert list(cache.irregular) == [irregular]


def test_variable_frame_rate_windows_count_frames_not_time(tmp_path):
    from motionssl.pipelines.decoders import read_window

    path = str(tmp_path / "vfr.mkv")
    _write_vfr_video(path)
    for threads in (0, 1, 2):
        np.testing.assert_array_equal(decode_ids(read_window(path, 5, 6, threads=threads)), np.arange(5, 11))
    with pytest.raises(ValueError, match="threads"):
        read_window(path, 0, 4, threads=-1)
    (tmp_path / "list.txt").write_text(f"{path} 0\n")
    index = load_index(str(tmp_path / "list.txt"))
    assert index.num_frames[0] == 20
    source = WindowSource(index, ClipAndResidual(), batch_size=1, shuffle=False, samples=[(0, 0)], codec_threads=1)
    sample = dict(zip(source.keys, source.sample(0, 0, 0)))
    np.testing.assert_array_equal(decode_ids(sample["frames"]), np.arange(W))
    with pytest.raises(ValueError, match="codec_threads"):
        WindowSource(index, ClipAndResidual(), batch_size=1, codec_threads=-1)


# --- the worker-side sample path: no extra copy, no fresh window per sample ---------------------------
def test_windows_go_straight_into_reused_buffers(id_list, monkeypatch):
    """Each frame is copied once, into a window buffer that is reused once nothing holds it."""
    stacked = []
    stack = np.stack
    monkeypatch.setattr(np, "stack", lambda *a, **k: stacked.append(1) or stack(*a, **k))
    source = make_source(id_list, shuffle=False)
    n_frames = load_index(id_list).num_frames
    for iteration in range(len(source)):  # every sample dropped before the next: one buffer serves them all
        for slot in range(source.batch_size):
            sample = dict(zip(source.keys, source.sample(0, iteration, slot)))
            start = decode_ids(sample["frames"])[0]
            np.testing.assert_array_equal(decode_ids(sample["frames"]),
                                          np.minimum(start + np.arange(W), n_frames[int(sample["index"])] - 1))
            del sample
    assert stacked == [] and source._buffers.allocations == 1
    held = [source.sample(0, 0, slot)[0] for slot in range(2)]  # samples still held are never written again
    before = [decode_ids(w) for w in held]
    later = [source.sample(0, i, s)[0] for i in range(1, len(source)) for s in range(2)]
    assert not any(np.shares_memory(a, b) for a in held for b in held + later if a is not b)
    assert [list(decode_ids(w)) for w in held] == [list(b) for b in before]


def test_buffers_fit_any_window_size():
    from motionssl.pipelines.decoders import WindowBuffers

    pool = WindowBuffers(keep=2)
    a = pool((4, 8, 8, 3), np.uint8)
    a[:] = 1
    b = pool((2, 8, 8, 3), np.uint8)  # a is held: a second buffer
    assert not np.shares_memory(a, b) and pool.allocations == 2
    del a
    c = pool((3, 8, 8, 3), np.uint8)  # a's buffer is free and large enough
    assert pool.allocations == 2 and c.flags.c_contiguous and c.shape == (3, 8, 8, 3)
    d = pool((4, 8, 8, 3), np.uint8)  # both held and the pool full: an array of its own
    assert pool.allocations == 3 and len(pool.buffers) == 2 and not np.shares_memory(d, c)
    del b, c
    e = pool((10, 8, 8, 3), np.uint8)  # larger than every free buffer: one of them is replaced
    assert e.shape == (10, 8, 8, 3) and len(pool.buffers) == 2
    import pickle

    assert pickle.loads(pickle.dumps(pool)).buffers == []  # a worker starts with a pool of its own


def test_worker_buffers_never_show_a_later_window(id_list):
    """One worker decodes whole batches (all samples of a task alive at once) while DALI copies the last."""
    source = make_source(id_list, batch_size=4)
    reference = make_source(id_list, batch_size=4)
    epochs = run_epochs(source, epochs=2, num_workers=1)
    for epoch, batches in enumerate(epochs):
        for iteration, batch in enumerate(batches):
            for slot in range(4):
                expected = dict(zip(reference.keys, reference.sample(epoch, iteration, slot)))
                assert int(batch["index"][slot]) == int(expected["index"])
                np.testing.assert_array_equal(decode_ids(batch["window"][slot]), decode_ids(expected["frames"]))


def test_timestamps_come_from_the_index(tmp_path, monkeypatch):
    """A file whose evenly spaced timestamps the index read is never opened for them; others once."""
    from motionssl.pipelines import video_io
    from motionssl.pipelines.decoders import pyav

    regular = load_index(write_id_videos(str(tmp_path / "ids"), [24, 30])).paths
    vfr = str(tmp_path / "vfr.mkv")
    _write_vfr_video(vfr)
    (tmp_path / "list.txt").write_text("".join(f"{p} 0\n" for p in regular + [vfr]))
    for _ in range(2):  # probed, then read back from the index cache
        index = load_index(str(tmp_path / "list.txt"))
        assert [m.timing for m in index.media] == [(0, 40, 24), (0, 40, 30), None]  # 25 fps in milliseconds
    opened, decoded = [], []
    open_video = video_io.open_video
    monkeypatch.setattr(video_io, "open_video", lambda p: opened.append(p) or open_video(p))
    monkeypatch.setattr(pyav, "open_video", lambda p: decoded.append(p) or open_video(p))
    source = WindowSource(index, ClipAndResidual(), batch_size=1, shuffle=False, samples=[(0, 3), (1, 5), (2, 2)] * 2)
    for i in range(6):
        frames = source.sample(0, i, 0)[0]
        np.testing.assert_array_equal(decode_ids(frames), np.minimum(np.arange(W) + (3, 5, 2)[i % 3],
                                                                      (23, 29, 19)[i % 3]))
    assert opened == [vfr]  # for its timestamps, once; the indexed files never
    assert len(decoded) == 6


# --- the source's parts: the epoch plan, failures in one line, pickling, subclasses -------------------
def test_the_epoch_plan_cuts_equal_shards_and_pads_from_the_shard_start():
    from motionssl.pipelines.sharding import EpochPlan

    plans = [EpochPlan(11, 2, seed=3, shard_id=r, num_shards=3) for r in range(3)]  # training: 2 videos dropped
    for epoch in (0, 1):
        orders = np.concatenate([p.shard_order(epoch) for p in plans])
        np.testing.assert_array_equal(orders, EpochPlan(11, 2, seed=3).shard_order(epoch)[:9])  # one permutation
        assert len(set(orders.tolist())) == 9
    assert [(p.shard_size, p.batches_per_epoch) for p in plans] == [(3, 1)] * 3
    assert not np.array_equal(plans[0].shard_order(0), plans[0].shard_order(1))
    plan = EpochPlan(7, 3, shuffle=False, shard_id=1, num_shards=2, last_batch="pad")  # evaluation: wraps around
    assert (plan.shard_size, plan.batches_per_epoch) == (4, 2)
    np.testing.assert_array_equal(plan.shard_order(5), [4, 5, 6, 0])
    np.testing.assert_array_equal(plan.batch_ids(5, 1), [0, 4, 5])  # the last batch padded from the shard's start
    with pytest.raises(ValueError, match="last_batch='fill'"):
        EpochPlan(7, 3, last_batch="fill")


def test_a_videos_draws_do_not_depend_on_the_shard_layout(id_list):
    one = make_source(id_list, decoder="dali")
    halves = [make_source(id_list, decoder="dali", shard_id=r, num_shards=2) for r in range(2)]
    for epoch in (0, 3):
        whole = {int(s[3]): s for s in (one.sample(epoch, i, k) for i in range(len(one)) for k in range(2))}
        for half in halves:
            for i in range(len(half)):
                for k in range(2):
                    got = half.sample(epoch, i, k)
                    for a, b in zip(got, whole[int(got[3])]):
                        np.testing.assert_array_equal(a, b)


def test_the_source_pickles_and_its_copy_draws_the_same_samples(id_list):
    """DALI's parallel external source pickles the source into each worker process."""
    import pickle

    for decoder in ("pyav", "dali"):
        source = make_source(id_list, decoder=decoder, batch_size=3, last_batch="pad")
        source.sample(1, 0, 0)  # this process's caches filled
        copy = pickle.loads(pickle.dumps(source))
        assert copy.keys == source.keys and len(copy) == len(source) == 3
        for epoch in (0, 1):
            np.testing.assert_array_equal(copy.shard_order(epoch), source.shard_order(epoch))
            for iteration in range(len(source)):
                for slot in range(3):
                    for a, b in zip(copy.sample(epoch, iteration, slot), source.sample(epoch, iteration, slot)):
                        np.testing.assert_array_equal(a, b)


def test_a_failure_is_read_into_one_line_naming_its_files(id_list):
    from motionssl.pipelines.sources import PipelineError

    source = make_source(id_list, shuffle=False)  # batches of videos (0, 1), (2, 3), (4, 5), (6, 7)
    path = source.paths[5]
    worker = (f"Traceback (most recent call last):\n  File \"worker.py\", line 1, in sample\n"
              f"motionssl.pipelines.video_io.VideoError: {path}: decoded 3 of frames 0..19 — re-encode it\n")
    error = source.explain(RuntimeError(worker), 0, 1)
    assert type(error) is PipelineError and str(error) == f"{path}: decoded 3 of frames 0..19 — re-encode it"
    dali = ("Critical error in pipeline:\nError in CPU operator `nvidia.dali.fn.decoders.video`,\n"
            "which was used in the pipeline definition with the following traceback:\n\n  File \"p.py\", line 9\n\n"
            "encountered:\n\nStart frame 30 is out of bounds in sample #1\nC++ context: [decoder.cc:12]\n")
    assert str(source.explain(RuntimeError(dali), 2, 1, ahead=1)) == (
        f"Start frame 30 is out of bounds in sample #1 (epoch 2, sample 1 of batch 1 or one of the 1 after it; the "
        f"file is one of: {source.paths[3]}, {source.paths[5]}) — check it with `motionssl-prepare`, or decode "
        f"with decoder='pyav', which names the file")
    assert str(source.explain(RuntimeError("fn.decoders.video\nencountered:\n  at x\nbad data"), 0, 3)).startswith(
        f"bad data (epoch 0, batch 3; the file is one of: {source.paths[6]}, {source.paths[7]}) — ")
    assert source.explain(RuntimeError("CUDA out of memory"), 0, 0) is None
    other = RuntimeError("CUDA out of memory")
    with pytest.raises(RuntimeError) as raised:
        source.reraise(other, 0, 0)
    assert raised.value is other
    failure = RuntimeError(worker)
    with pytest.raises(PipelineError, match="v005") as raised:
        source.reraise(failure, 0, 1)
    assert raised.value.__cause__ is failure


def test_a_subclass_serves_its_own_samples_for_as_long_as_it_says(id_list):
    """benchmarks/cost_split.py serves samples decoded beforehand for ever: ``sample`` and ``batches_per_epoch``
    are the source's to override."""
    from types import SimpleNamespace

    from benchmarks.cost_split import CachedSource

    index = load_index(id_list).apply_window(W, "pad")
    source = CachedSource(index, ClipAndResidual(), 2, samples=["a", "b", "c", "d"], batches=2)
    assert len(source) == 10 ** 9 and source.shard_size == 8
    assert [source(SimpleNamespace(epoch_idx=0, iteration=i, idx_in_batch=1)) for i in (0, 5, 1000)] == ["b", "d", "b"]


# --- only the frames the clips read: decoded up to the last, converted and handed over alone ---------------
def test_read_window_keeps_the_frames_asked_for_and_converts_no_other(id_list, monkeypatch):
    """``keep`` returns the window's frames at those positions (past the end: the last frame), and PyAV converts
    exactly those frames to RGB; a decoder that cannot leave frames out is picked from by ``read_window``."""
    from motionssl.pipelines.decoders import DECODERS, Decoder, pyav

    index = load_index(id_list)
    path, n = index.paths[2], int(index.num_frames[2])  # 24 frames
    converted = []
    to_rgb = pyav.to_rgb
    monkeypatch.setattr(pyav, "to_rgb", lambda frame: converted.append(frame.pts) or to_rgb(frame))
    for start, keep in ((3, [0, 4, 5, 11, 19]), (10, [1, 2, 13, 14, 15, 19]), (0, [7])):
        converted.clear()
        got = read_window(path, start, W, keep=keep)
        want = np.minimum(start + np.asarray(keep), n - 1)
        np.testing.assert_array_equal(decode_ids(got), want)
        assert len(converted) == len(np.unique(want))  # not one frame more converted than handed over
    full = read_window(path, 3, W)
    np.testing.assert_array_equal(read_window(path, 3, W, keep=np.arange(W)), full)

    class WholeStretch(Decoder):  # decodes every frame it is asked for, knows nothing of ``keep``
        name = "whole-stretch-test"

        def frames(self, path, wanted, where="", **options):
            return DECODERS["pyav"].frames(path, wanted, where=where, **options)

    monkeypatch.setitem(DECODERS, WholeStretch.name, WholeStretch())
    picked = read_window(path, 10, W, decoder=WholeStretch.name, keep=[1, 2, 13, 19])
    np.testing.assert_array_equal(picked, read_window(path, 10, W, keep=[1, 2, 13, 19]))
    np.testing.assert_array_equal(decode_ids(picked), [11, 12, 23, 23])
    for bad in ([3, 3], [5, 2], [-1], [W], []):
        with pytest.raises(ValueError, match="keep must be sorted"):
            read_window(path, 0, W, keep=bad)


def _epoch_batches(it, n):
    out = []
    for i, batch in enumerate(it):
        out.append({k: v.clone() for k, v in batch.items()})
        if i + 1 == n:
            break
    return out


@pytest.mark.parametrize("name,config", [
    ("moquad", {"clip": {"frames": 4, "speeds": [1, 2], "window": 24, "augment": {"size": [24, 32]}},
                "appearance": {"op": "rad_inter", "grid": 2}}),
    ("moquad", {"clip": {"frames": 4, "speeds": [1, 3], "augment": {"size": [24, 32]}},
                "appearance": {"op": "rad_intra"}, "motion": "shuffle"}),
    ("moquad", {"clip": {"frames": 4, "speeds": [1, 2], "window": 20, "augment": {"size": [24, 32]}},
                "appearance": {"op": "be"}}),  # BE's frame is a position in the clip: never renumbered
    ("moquad", {"clip": {"frames": 4, "speeds": [1, 2], "window": 20, "augment": {"size": [24, 32]}},
                "mode": "warmup"}),
    ("mcpnet", {"clip": {"frames": 4, "speeds": [1, 2], "augment": {"size": [24, 32]}}, "gap": 3}),
    ("mcpnet", {"clip": {"frames": 4, "speeds": [1, 2], "window": 20, "augment": {"size": [24, 32]}},
                "residual_view": "rgb"}),
    ("simclr", {"clip": {"frames": 4, "speeds": [1, 2], "window": 20, "augment": {"size": [24, 32]}}}),
    ("clip", {"clip": {"frames": 4, "speeds": [2], "window": 20, "augment": {"size": [24, 32]}}}),
])
def test_the_source_hands_over_only_the_frames_the_clips_read(coloured_list, name, config, monkeypatch):
    """A method's batch is the same bit for bit whether its source hands over the whole window or only the
    frames its clips read (renumbered): on the fused CPU graph, with RAD frames lent across the batch, and when
    the index's frame size is wrong (the draws are made again with the decoded one)."""
    from motionssl.pipelines import make_iterator

    index = load_index(coloured_list)
    keep_videos, decode = WindowSource._keep_videos, WindowSource._decode

    def run(sizes=None):
        handed = []

        def keep_videos_sized(self, *a):
            keep_videos(self, *a)
            if sizes is not None:
                self.frame_hw[:] = sizes

        monkeypatch.setattr(WindowSource, "_keep_videos", keep_videos_sized)
        monkeypatch.setattr(WindowSource, "_decode", lambda self, *a: (lambda out: handed.append(out[0].shape[0])
                                                                       or out)(decode(self, *a)))
        it = make_iterator(name, index, 4, seed=5, config=config, num_workers=0)
        return _epoch_batches(it, 2), handed, it.planner.window

    whole, whole_frames, window = run(sizes=0)  # 0 x 0: size unknown, the whole window
    kept, kept_frames, _ = run()
    wrong, wrong_frames, _ = run(sizes=(7, 9))
    assert set(whole_frames) == {window} and max(kept_frames) <= window and min(kept_frames) < window
    assert wrong_frames == kept_frames
    for a, b, c in zip(whole, kept, wrong):
        assert set(a) == set(b) == set(c)
        for key in a:
            assert torch_equal(a[key], b[key]) and torch_equal(a[key], c[key]), key


def torch_equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))


def test_window_positions_that_depend_on_the_frame_size_are_refused(id_list):
    """A planner's window positions must be the same whatever the frame size (the source draws before it decodes
    when the index knows the size, and again with the decoded size when the index was wrong)."""

    class SizeDependent(ClipAndResidual):
        window_keys = ("clip", "pairs")

        def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
            out = super().draw(rng, batch_rng, slot, batch_size, valid, frame_hw)
            out["clip"] = np.minimum(out["clip"] + frame_hw[0] % 2, valid - 1).astype(np.int32)
            return out

    index = load_index(id_list).apply_window(W, "pad")
    source = WindowSource(index, SizeDependent(), batch_size=2, seed=3)
    source.frame_hw[:] = (33, 48)  # the files are 32 high
    with pytest.raises(RuntimeError, match="must not depend on"):
        for slot in range(2):
            source.sample(0, 0, slot)
