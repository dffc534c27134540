"""The video index: folders, lists, prepared datasets, the frame-count cache and bad files."""
import logging
import os

import numpy as np
import pytest

from motionssl.pipelines.index import VideoIndex, load_index, parse_list_line
from motionssl.pipelines.video_io import VideoError, write_video
from tests.fixtures import id_frames, write_id_videos


def test_list_index_probes_once_and_caches_outside_the_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONSSL_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    lst = write_id_videos(str(data), [20, 9, 14])
    before = sorted(os.listdir(data))
    index = load_index(lst)
    assert list(index.num_frames) == [20, 9, 14] and list(index.labels) == [0, 1, 0]
    assert sorted(os.listdir(data)) == before  # nothing written into the dataset folder
    assert index.cache.startswith(str(tmp_path / "cache")) and os.path.exists(index.cache)
    assert [m.codec for m in index.media] == ["vp9"] * 3 and index.media[0].pix_fmt == "yuv420p"
    assert (index.media[0].height, index.media[0].width) == (32, 48)
    import motionssl.pipelines.probing as mod
    def fail(path):
        raise AssertionError(f"probed {path} again")

    monkeypatch.setattr(mod, "probe", fail)
    monkeypatch.setattr(mod, "header", fail)
    again = load_index(lst)
    assert list(again.num_frames) == [20, 9, 14]
    assert again.with_media().media == index.media  # headers cached with the counts
    os.utime(again.paths[1], (1, 1))  # an edited video is probed again
    with pytest.raises(AssertionError, match="v001"):
        load_index(lst)


def test_an_index_cache_written_before_is_read_as_it_was(tmp_path, monkeypatch):
    """The cache's file name and its version-4 lines, spelled out here as earlier releases wrote them: read
    without opening a video, and written back unchanged beside a video probed again."""
    import hashlib

    import motionssl.pipelines.probing as probing

    monkeypatch.setenv("MOTIONSSL_CACHE", str(tmp_path / "cache"))
    lst = write_id_videos(str(tmp_path / "data"), [20, 9])
    digest = hashlib.sha1(os.fsencode(os.path.abspath(lst))).hexdigest()[:16]
    cache = tmp_path / "cache" / "index" / f"list.txt-{digest}.tsv"
    cache.parent.mkdir(parents=True)
    videos = [str(tmp_path / "data" / "videos" / f"v00{v}.webm") for v in range(2)]
    rows = [f"{p}\t{os.stat(p).st_size}\t{int(os.stat(p).st_mtime)}\t{n}\t32\t48\tvp9\tyuv420p\t{r}\t{t}"
            for p, n, r, t in zip(videos, (7, 5), (0, 90), ("0:1:7", "-"))]
    header = "# motionssl index cache 4: path size mtime frames height width codec pix_fmt rotation timing"
    cache.write_text("\n".join([header, *rows]) + "\n")

    def opened(path):
        raise AssertionError(f"opened {path}")

    with monkeypatch.context() as patched:
        for read in ("probe", "scan", "header"):
            patched.setattr(probing, read, opened)
        index = load_index(lst).with_media()
    assert index.cache == str(cache) and index.num_frames.tolist() == [7, 5]
    assert [(m.height, m.width, m.codec, m.pix_fmt, m.rotation) for m in index.media] == [
        (32, 48, "vp9", "yuv420p", 0), (32, 48, "vp9", "yuv420p", 90)]
    assert [m.timing for m in index.media] == [(0, 1, 7), None]
    os.utime(videos[1], (1, 1))  # edited: probed again, the other entry kept as it was
    assert load_index(lst).num_frames.tolist() == [7, 9]
    lines = cache.read_text().split("\n")
    assert lines[:2] == [header, rows[0]] and lines[2].startswith(f"{videos[1]}\t") and lines[3:] == [""]


def test_headers_of_listed_videos_are_read_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONSSL_CACHE", str(tmp_path / "cache"))
    write_id_videos(str(tmp_path), [12, 12])
    (tmp_path / "counted.txt").write_text("videos/v000.webm 0 12\nvideos/v001.webm 1 12\n")
    index = load_index(str(tmp_path / "counted.txt"))
    assert index.media == [None, None]  # counts given: nothing opened yet
    media = index.with_media().media
    assert [m.codec for m in media] == ["vp9", "vp9"]
    import motionssl.pipelines.probing as mod
    monkeypatch.setattr(mod, "header", lambda p: (_ for _ in ()).throw(AssertionError("read again")))
    assert load_index(str(tmp_path / "counted.txt")).with_media().media == media


def test_list_with_frame_counts_needs_no_probe(tmp_path, monkeypatch):
    (tmp_path / "a b.webm").write_bytes(b"not opened")
    (tmp_path / "list.txt").write_text("# comment\na b.webm 3 17\n\n")
    import motionssl.pipelines.probing as mod
    monkeypatch.setattr(mod, "probe", lambda p: (_ for _ in ()).throw(AssertionError("probed")))
    index = load_index(str(tmp_path / "list.txt"))
    assert index.paths == [str(tmp_path / "a b.webm")] and index.labels[0] == 3 and index.num_frames[0] == 17


def test_parse_list_line():
    assert parse_list_line("x/y z.avi 4 100", "f:1") == ("x/y z.avi", 4, 100)
    assert parse_list_line("v.webm -1", "f:2") == ("v.webm", -1, None)
    assert parse_list_line("a video without a label.avi", "f:3") == ("a video without a label.avi", -1, None)
    with pytest.raises(ValueError, match="f:3"):
        parse_list_line("only_a_path", "f:3")  # no label and no video extension: a typo, not a video
    with pytest.raises(ValueError, match="positive"):
        parse_list_line("v.webm 1 0", "f:4")


def test_class_folder_index(tmp_path):
    for name, n in (("b_class", 2), ("a_class", 1)):
        os.makedirs(tmp_path / name)
        for i in range(n):
            write_video(str(tmp_path / name / f"{i}.webm"), id_frames(6, 16, 16), lossless=True)
    (tmp_path / "a_class" / "notes.txt").write_text("ignored")
    index = load_index(str(tmp_path))
    assert index.classes == ["a_class", "b_class"]
    assert sorted(index.labels.tolist()) == [0, 1, 1] and set(index.num_frames.tolist()) == {6}


def test_bad_files_skip_or_error(tmp_path, caplog):
    write_video(str(tmp_path / "good.webm"), id_frames(8, 16, 16), lossless=True)
    (tmp_path / "empty.webm").write_bytes(b"")
    (tmp_path / "text.webm").write_text("hello, not a video")
    good = (tmp_path / "good.webm").read_bytes()
    (tmp_path / "truncated.webm").write_bytes(good[: len(good) // 3])
    (tmp_path / "list.txt").write_text("good.webm 0\nempty.webm 0\ntext.webm 1\nmissing.webm 1\ntruncated.webm 0\n")
    with caplog.at_level(logging.WARNING):
        index = load_index(str(tmp_path / "list.txt"))
    assert [os.path.basename(p) for p in index.paths][0] == "good.webm"
    for name in ("empty.webm", "text.webm", "missing.webm"):
        assert name in caplog.text
    assert index.stats["skipped_unreadable"] >= 3
    with pytest.raises(VideoError, match="empty.webm"):
        load_index(str(tmp_path / "list.txt"), bad_files="error")


def test_short_video_policies(tmp_path, caplog):
    lst = write_id_videos(str(tmp_path), [20, 6, 14])
    index = load_index(lst)
    padded = index.apply_window(10, "pad")
    assert len(padded) == 3 and padded.stats["short_videos"] == 1
    with caplog.at_level(logging.WARNING):
        skipped = index.apply_window(10, "skip")
    assert len(skipped) == 2 and "v001" in caplog.text
    with pytest.raises(ValueError, match="shorter than the 10-frame window.*v001"):
        index.apply_window(10, "error")
    with pytest.raises(ValueError, match="choose one of"):
        index.apply_window(10, "truncate")


def test_prepared_dataset_folder(tmp_path):
    write_id_videos(str(tmp_path), [8, 8])
    (tmp_path / "classes.txt").write_text("up\ndown\n")
    (tmp_path / "train.txt").write_text("videos/v000.webm 0 8\n")
    (tmp_path / "test.txt").write_text("videos/v001.webm 1 8\n")
    index = load_index(str(tmp_path), split="test")
    assert index.classes == ["up", "down"] and index.labels.tolist() == [1]
    with pytest.raises(ValueError, match="choose one of"):
        load_index(str(tmp_path), split="val")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_index(str(tmp_path / "nowhere"))


def test_index_to_list_roundtrip(tmp_path):
    lst = write_id_videos(str(tmp_path), [9, 12])
    index = load_index(lst)
    out = tmp_path / "copy.txt"
    index.to_list(str(out))
    again = load_index(str(out))
    assert again.paths == index.paths and np.array_equal(again.num_frames, index.num_frames)


def test_labels_and_splits_that_cannot_apply_are_errors(tmp_path):
    lst = write_id_videos(str(tmp_path), [8, 8])
    with pytest.raises(ValueError, match=r"list.txt is a file list, so split='test' cannot apply"):
        load_index(lst, split="test")
    with pytest.raises(ValueError, match=r"f:2: label -3 is not a class id"):
        parse_list_line("v.webm -3", "f:2")
    (tmp_path / "classes.txt").write_text("up\ndown\n")
    (tmp_path / "train.txt").write_text("videos/v000.webm 0 8\nvideos/v001.webm 2 8\n")
    with pytest.raises(ValueError, match=r"train.txt:2: label 2 of .*v001.webm is not a class of .*2 classes"):
        load_index(str(tmp_path), split="train")


def test_stats_follow_the_videos_kept(tmp_path):
    index = load_index(write_id_videos(str(tmp_path), [20, 6, 14]))
    assert index.stats["videos"] == 3
    skipped = index.apply_window(10, "skip")
    assert skipped.stats["videos"] == 2 and skipped.stats["short_videos"] == 1


def test_listed_frame_counts_are_checked_against_the_files_before_the_first_batch(tmp_path, monkeypatch, caplog):
    """A stale count (the file was replaced) would start windows past the end on DALI's decoder, or not,
    depending on the draw: every decoder's index is checked up front, whatever the seed."""
    import logging

    from motionssl.pipelines.decoders import choose_decoder

    monkeypatch.setenv("MOTIONSSL_CACHE", str(tmp_path / "cache"))
    write_id_videos(str(tmp_path), [12, 30])
    (tmp_path / "stale.txt").write_text("videos/v000.webm 0 12\nvideos/v001.webm 1 100\n")
    for decoder in ("pyav", "dali"):
        with caplog.at_level(logging.WARNING):
            _, index = choose_decoder(load_index(str(tmp_path / "stale.txt")), decoder, "cpu")
        assert index.num_frames.tolist() == [12, 30] and index.stats["stale_counts"] == 1
        assert "v001.webm (listed 100, holds 30)" in caplog.text
    import motionssl.pipelines.probing as mod
    monkeypatch.setattr(mod, "scan", lambda p: (_ for _ in ()).throw(AssertionError("scanned again")))
    assert load_index(str(tmp_path / "stale.txt")).verify_counts().num_frames.tolist() == [12, 30]  # cached


# --- rotation: sizes as displayed -----------------------------------------------------------------------
def test_a_rotated_video_is_indexed_at_its_displayed_size_by_every_reader_and_the_cache(tmp_path, monkeypatch):
    from motionssl.pipelines.video_io import header, probe, scan
    from tests.fixtures import coloured_id_frames, write_turned

    monkeypatch.setenv("MOTIONSSL_CACHE", str(tmp_path / "cache"))
    frames = coloured_id_frames(10, 40, 64)  # displayed 40 high, 64 wide; stored 64 high, 40 wide
    for r, name in ((270, "phone.mp4"), (180, "upside.mp4")):
        write_turned(str(tmp_path / name), frames, r)
    (tmp_path / "probed.txt").write_text("phone.mp4 0\nupside.mp4 1\n")
    (tmp_path / "counted.txt").write_text("phone.mp4 0 10\nupside.mp4 1 10\n")
    want = [(40, 64, 270), (40, 64, 180)]
    index = load_index(str(tmp_path / "probed.txt"))  # probe
    assert [(m.height, m.width, m.rotation) for m in index.media] == want
    assert index.media[0].coded_size == (64, 40)
    counted = load_index(str(tmp_path / "counted.txt")).verify_counts()  # scan
    assert [(m.height, m.width, m.rotation) for m in counted.media] == want
    path = index.paths[0]
    assert (probe(path).height, probe(path).width, probe(path).rotation) == want[0]
    assert header(path) == scan(path)[1] == index.media[0]
    import motionssl.pipelines.probing as mod

    monkeypatch.setattr(mod, "probe", lambda p: (_ for _ in ()).throw(AssertionError("probed")))
    assert load_index(str(tmp_path / "probed.txt")).with_media().media == index.media  # the rotation is cached


# --- unlabelled videos: a flat folder, a list or tuple of paths, a glob, a list file without labels ---
def test_unlabelled_videos_every_way_they_can_be_given(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONSSL_CACHE", str(tmp_path / "cache"))
    write_id_videos(str(tmp_path), [12, 9, 14])
    folder = tmp_path / "videos"
    paths = sorted(str(p) for p in folder.iterdir())
    (tmp_path / "paths.txt").write_text("videos/v000.webm\nvideos/v001.webm\n# a comment\nvideos/v002.webm\n")
    given = {"flat folder": str(folder), "list of paths": paths, "tuple of paths": tuple(paths),
             "glob": str(tmp_path / "videos" / "*.webm"), "recursive glob": str(tmp_path / "**" / "v00[0-2].webm"),
             "list file without labels": str(tmp_path / "paths.txt")}
    for how, data in given.items():
        index = load_index(data)
        assert index.paths == paths, how
        assert index.labels.tolist() == [-1, -1, -1] and index.num_frames.tolist() == [12, 9, 14], how
        assert index.classes == [], how
    with pytest.raises(FileNotFoundError, match=r"nothing.*\*\.webm"):
        load_index(str(tmp_path / "nothing" / "*.webm"))
    with pytest.raises(ValueError, match=r"notes\.txt is not a video"):
        load_index(paths + [str(tmp_path / "notes.txt")])


def test_a_video_index_built_from_paths_alone_counts_their_frames_before_the_first_batch(tmp_path):
    write_id_videos(str(tmp_path), [12, 9])
    paths = sorted(str(p) for p in (tmp_path / "videos").iterdir())
    for index in (VideoIndex(paths), VideoIndex(paths, None, None), VideoIndex(paths, labels=[1, 0])):
        assert len(index) == 2
        counted = index.verify_counts()
        assert counted.num_frames.tolist() == [12, 9]
    assert VideoIndex(paths).labels.tolist() == [-1, -1]
    with pytest.raises(ValueError, match="labels"):
        VideoIndex(paths, labels=[0])


def test_a_folder_of_class_folders_and_loose_videos_is_an_error_naming_both(tmp_path):
    write_id_videos(str(tmp_path), [8])
    os.makedirs(tmp_path / "videos" / "walk")
    write_video(str(tmp_path / "videos" / "walk" / "w.webm"), id_frames(8, 16, 16), lossless=True)
    with pytest.raises(ValueError, match=r"both loose videos \(v000\.webm\) and class sub-folders \(walk\)"):
        load_index(str(tmp_path / "videos"))
