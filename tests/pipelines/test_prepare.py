"""Tests of ``motionssl-prepare`` on tiny generated UCF-101, HMDB-51, Kinetics and folder layouts.

The sources are xvid-like MPEG-4 AVIs written by ``video_io.write_video`` — the format
the real UCF-101/HMDB-51 ship in — so the tests exercise the real conversion path.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from motionssl import prepare as prepare_cli
from motionssl.pipelines import prepare as prep
from motionssl.pipelines.decoders import read_window
from motionssl.pipelines.errors import DataError, DataNotFoundError, OptionError
from motionssl.pipelines.video_io import probe, write_video

REPO = Path(__file__).resolve().parents[2]
UCF_CLASSES = ["ApplyEyeMakeup", "Basketball", "Biking"]


def moving_frames(num_frames, height=48, width=64, seed=0):
    """A bright square moving over a gradient: every frame differs, and it compresses well."""
    y, x = np.mgrid[:height, :width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frames[t, ..., 0] = (x * 4 + seed * 40) % 256
        frames[t, ..., 1] = (y * 5) % 256
        frames[t, ..., 2] = 30
        c = (t * 2 + seed * 7) % (width - 12)
        frames[t, 10:22, c:c + 12] = 250
    return frames


def snapshot(root: Path) -> dict:
    """Content hash, size and mtime of every file under ``root``, and the set of folders."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(root))] = (digest, st.st_size if path.is_file() else 0, st.st_mtime_ns)
    return state


def read_index(path: Path):
    rows = []
    for line in path.read_text().splitlines():
        rel, label, frames = line.split()
        rows.append((rel, int(label), int(frames)))
    return rows


def make_ucf(root: Path) -> dict:
    """3 classes x 2 videos (g08 train, g01 test) plus a zero-byte, a text and a missing video.

    Returns ``{relative source path: frame count}`` for the good videos.
    """
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    frames = {}
    train, test = [], []
    for i, cls in enumerate(UCF_CLASSES):
        (root / cls).mkdir()
        for group, n in (("g08", 20 + i), ("g01", 24 - i)):
            rel = f"{cls}/v_{cls}_{group}_c01.avi"
            write_video(str(root / rel), moving_frames(n, seed=i), codec="mpeg4")
            frames[rel] = n
            (train if group == "g08" else test).append(rel)
    (root / "Biking/v_Biking_g09_c01.avi").write_bytes(b"")
    (root / "Biking/v_Biking_g10_c01.avi").write_text("this is not a video\n" * 20)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF_CLASSES)))
    (lists / "trainlist01.txt").write_text(
        "".join(f"{rel} {UCF_CLASSES.index(rel.split('/')[0]) + 1}\r\n" for rel in train)
        + "Biking/v_Biking_g09_c01.avi 3\r\nBiking/v_Biking_g10_c01.avi 3\r\n")
    (lists / "testlist01.txt").write_text("".join(f"{rel}\n" for rel in test) + "Biking/v_Biking_g11_c01.avi\n")
    return frames


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    """The fake UCF-101 prepared once into VP9 (two workers); shared by the read-only tests."""
    root = tmp_path_factory.mktemp("ucf")
    src, out = root / "UCF-101", root / "prepared"
    frames = make_ucf(src)
    before = snapshot(src)
    summary = prepare_cli.main(["ucf101", "--src", str(src), "--out", str(out), "--workers", "2"])
    return {"src": src, "out": out, "frames": frames, "before": before, "summary": summary}


def test_ucf101_summary_counts(ucf):
    s = ucf["summary"]
    assert (s["converted"], s["skipped"], s["failed"]) == (6, 0, 3)
    assert s["indexes"] == {"train_split1": 3, "test_split1": 3, "all": 6}
    assert s["hours"] == pytest.approx(sum(ucf["frames"].values()) / 25 / 3600)
    assert s["disk_bytes"] == sum(p.stat().st_size for p in (ucf["out"] / "videos").rglob("*.webm"))
    report = json.loads((ucf["out"] / "prepare_report.json").read_text())
    assert report["converted"] == 6 and len(report["failures"]) == 3


def test_ucf101_index_files(ucf):
    out, frames = ucf["out"], ucf["frames"]
    assert (out / "classes.txt").read_text().split() == UCF_CLASSES
    for name, group in (("train_split1", "g08"), ("test_split1", "g01")):
        rows = read_index(out / f"{name}.txt")
        assert len(rows) == 3
        for rel, label, n in rows:
            cls, stem = rel.split("/")[1], Path(rel).stem
            assert rel == f"videos/{cls}/{stem}.webm" and (out / rel).is_file()
            assert group in stem and label == UCF_CLASSES.index(cls)
            assert n == frames[f"{cls}/{stem}.avi"] == probe(str(out / rel)).num_frames
    assert sorted(read_index(out / "all.txt")) == sorted(read_index(out / "train_split1.txt")
                                                         + read_index(out / "test_split1.txt"))


def test_ucf101_outputs_are_short_gop_vp9_without_audio(ucf):
    path = ucf["out"] / "videos/Biking/v_Biking_g01_c01.webm"
    info = probe(str(path))
    assert (info.codec, info.width, info.height, info.num_frames) == ("vp9", 64, 48, 22)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0
        keyframes = [i for i, p in enumerate(container.demux(container.streams.video[0]))
                     if p.size and p.is_keyframe]
    assert keyframes == [0, 16]
    # Transcoding keeps the content: the moving square is where the source has it.
    source = read_window(str(ucf["src"] / "Biking/v_Biking_g01_c01.avi"), 0, 22).astype(float)
    converted = read_window(str(path), 0, 22).astype(float)
    assert np.abs(source - converted).mean() < 8


def test_dali_cpu_decodes_prepared_video(ucf):
    from nvidia.dali import fn, pipeline_def, types

    rel, _, n = read_index(ucf["out"] / "train_split1.txt")[0]
    path = ucf["out"] / rel
    encoded = np.fromfile(path, np.uint8)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        data = fn.external_source(source=lambda: [encoded], batch=True, dtype=types.UINT8)
        return fn.decoders.video(data, device="cpu", start_frame=n - 8, sequence_length=8)

    pipe = decode()
    pipe.build()
    (video,) = pipe.run()
    frames = np.asarray(video[0])
    assert frames.shape == (8, 48, 64, 3)
    # DALI (CPU) and PyAV agree on which frames these are.
    expected = read_window(str(path), n - 8, 8).astype(float)
    assert np.abs(frames.astype(float) - expected).mean() < 3


def test_broken_and_missing_inputs_are_reported_and_skipped(ucf):
    src, out = ucf["src"], ucf["out"]
    failed = dict(line.split("\t") for line in (out / "failed.txt").read_text().splitlines())
    assert set(failed) == {str(src / f"Biking/v_Biking_g{g}_c01.avi") for g in ("09", "10", "11")}
    assert "empty" in failed[str(src / "Biking/v_Biking_g09_c01.avi")]
    assert "not a readable video" in failed[str(src / "Biking/v_Biking_g10_c01.avi")]
    assert "not found" in failed[str(src / "Biking/v_Biking_g11_c01.avi")]
    assert "testlist01.txt line 4" in failed[str(src / "Biking/v_Biking_g11_c01.avi")]
    assert not any("g09" in r or "g10" in r or "g11" in r for r, _, _ in read_index(out / "all.txt"))
    assert not list(out.rglob("*.part*"))


def test_second_run_does_no_work(ucf, monkeypatch):
    calls = []
    real_transcode, real_verify = prep._transcode, prep._verify
    monkeypatch.setattr(prep, "_transcode", lambda *a: calls.append("transcode") or real_transcode(*a))
    monkeypatch.setattr(prep, "_verify", lambda *a: calls.append("verify") or real_verify(*a))
    indexes = {p.name: p.read_text() for p in ucf["out"].glob("*.txt")}
    summary = prep.prepare("ucf101", ucf["src"], ucf["out"], workers=1, progress=False)
    assert (summary["converted"], summary["skipped"], summary["failed"]) == (0, 6, 3)
    assert calls == []  # the broken inputs fail at the input probe, the good ones are not touched
    assert {p.name: p.read_text() for p in ucf["out"].glob("*.txt")} == indexes


def test_source_tree_is_unchanged(ucf):
    # Runs after the conversion (module fixture) and the second run above.
    assert snapshot(ucf["src"]) == ucf["before"]


def test_existing_output_without_manifest_is_verified_not_converted(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "walk").mkdir(parents=True)
    write_video(str(src / "walk/a.avi"), moving_frames(20), codec="mpeg4")
    prep.prepare("folder", src, out, workers=1, progress=False)
    (out / prep.MANIFEST).write_text("")  # as if the run had been killed before recording it
    monkeypatch.setattr(prep, "_transcode", lambda *a: pytest.fail("should not transcode"))
    summary = prep.prepare("folder", src, out, workers=1, progress=False)
    assert (summary["converted"], summary["skipped"]) == (0, 1)
    assert read_index(out / "all.txt") == [("videos/walk/a.webm", 0, 20)]


def make_hmdb(root: Path):
    """2 classes x 3 videos marked train (1), test (2) and unused (0) in split 1."""
    src, splits = root / "hmdb51", root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for i, cls in enumerate(["wave", "brush_hair"]):
        (src / cls).mkdir(parents=True)
        lines = []
        for j, flag in enumerate((1, 2, 0)):
            name = f"{cls}_video_{j}.avi"
            write_video(str(src / cls / name), moving_frames(16 + j, seed=i), codec="mpeg4")
            lines.append(f"{name} {flag} \n")
        (splits / f"{cls}_test_split1.txt").write_text("".join(lines))
    return src, splits


def test_hmdb51(tmp_path):
    src, splits = make_hmdb(tmp_path)
    out = tmp_path / "out"
    summary = prep.prepare("hmdb51", src, out, splits=splits, workers=1, progress=False)
    assert (summary["converted"], summary["failed"]) == (6, 0)
    assert (out / "classes.txt").read_text().split() == ["brush_hair", "wave"]
    assert read_index(out / "train_split1.txt") == [
        ("videos/brush_hair/brush_hair_video_0.webm", 0, 16), ("videos/wave/wave_video_0.webm", 1, 16)]
    assert read_index(out / "test_split1.txt") == [
        ("videos/brush_hair/brush_hair_video_1.webm", 0, 17), ("videos/wave/wave_video_1.webm", 1, 17)]
    assert len(read_index(out / "all.txt")) == 6  # the split-1 "unused" videos are converted too
    assert (out / "failed.txt").read_text() == ""


def test_kinetics_csv_flat_folder_and_label_names(tmp_path):
    src, out = tmp_path / "k400", tmp_path / "out"
    src.mkdir()
    write_video(str(src / "abc_DEF-123_000010_000020.mp4"), moving_frames(12), codec="mpeg4")
    write_video(str(src / "zzzzzzzzzzz_000000_000010.mp4"), moving_frames(14, seed=1), codec="mpeg4")
    csv_file = tmp_path / "kinetics.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\n"
                        "air drumming,abc_DEF-123,10,20,train\n"
                        "abseiling,zzzzzzzzzzz,0,10,validate\n"
                        "abseiling,gone_missing,5,15,train\n")
    summary = prep.prepare("kinetics", src, out, splits=csv_file, workers=1, progress=False)
    assert (summary["converted"], summary["failed"]) == (2, 1)
    assert (out / "classes.txt").read_text().splitlines() == ["abseiling", "air drumming"]
    assert read_index(out / "train.txt") == [("videos/air_drumming/abc_DEF-123_000010_000020.webm", 1, 12)]
    assert read_index(out / "val.txt") == [("videos/abseiling/zzzzzzzzzzz_000000_000010.webm", 0, 14)]
    assert "kinetics.csv line 4" in (out / "failed.txt").read_text()


def test_short_side_and_odd_sizes_give_even_dimensions(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    write_video(str(src / "a/odd.avi"), moving_frames(10, height=47, width=63), codec="mjpeg")
    kept = prep.prepare("folder", src, tmp_path / "kept", workers=1, progress=False)
    resized = prep.prepare("folder", src, tmp_path / "small", short_side=33, workers=1, progress=False)
    assert kept["converted"] == resized["converted"] == 1
    info = probe(str(tmp_path / "kept/videos/a/odd.webm"))
    assert (info.width, info.height) == (62, 46)
    info = probe(str(tmp_path / "small/videos/a/odd.webm"))
    assert (info.width, info.height) == (44, 34)  # 33 -> 34 (even), 63 * 33 / 47 = 44.2 -> 44


@pytest.mark.parametrize("codec", ["vp9", "h264"])
def test_a_phones_rotated_video_is_written_upright_without_a_display_matrix(tmp_path, codec):
    """A phone held upright stores its frames turned and says −90° in the display matrix: the prepared file
    holds the frames upright at the displayed size (short side scaled as displayed) and no matrix to apply again."""
    from tests.fixtures import coloured_id_frames, write_turned

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    frames = coloured_id_frames(12, 48, 80)  # upright: 48 high, 80 wide
    for r in (0, 270, 90, 180):
        write_turned(str(src / f"a/r{r}.mp4"), frames, r)
    summary = prep.prepare("folder", src, tmp_path / "out", codec=codec, short_side=24, workers=1, progress=False)
    assert summary["converted"] == 4, summary["failures"]
    out = {r: str(tmp_path / f"out/videos/a/r{r}{prep.CODECS[codec].extension}") for r in (0, 270, 90, 180)}
    upright = read_window(out[0], 0, 6).astype(int)
    for r in (270, 90, 180):
        info = probe(out[r])
        assert (info.width, info.height) == (40, 24) and info.rotation == 0
        with av.open(out[r]) as container:
            assert next(container.decode(video=0)).side_data.get("DISPLAYMATRIX") is None
        window = read_window(out[r], 0, 6)
        assert window.shape == upright.shape and np.abs(window - upright).mean() < 15  # coding: 4-9; a turn: 59+


@pytest.mark.parametrize("size, short_side, expected", [
    ((320, 240), 128, (170, 128)), ((240, 320), 112, (112, 150)), ((341, 256), None, (340, 256))])
def test_output_size(size, short_side, expected):
    assert prep.output_size(*size, short_side) == expected


def test_h264_output_and_folder_splits(tmp_path):
    src, lists, out = tmp_path / "src", tmp_path / "lists", tmp_path / "out"
    for cls in ("jump", "run"):
        (src / cls).mkdir(parents=True)
        write_video(str(src / cls / "clip one.avi"), moving_frames(18), codec="mpeg4")
    lists.mkdir()
    (lists / "train.txt").write_text("run/clip one.avi\n")
    (lists / "test.txt").write_text("jump/clip one.avi 0 18\n")  # trailing columns are allowed
    summary = prepare_cli.main(["folder", "--src", str(src), "--out", str(out), "--splits", str(lists),
                         "--codec", "h264", "--gop", "8", "--workers", "1"])
    assert summary["converted"] == 2
    # The space in the file name is replaced: DALI file lists split on whitespace.
    assert read_index(out / "train.txt") == [("videos/run/clip_one.mp4", 1, 18)]
    assert read_index(out / "test.txt") == [("videos/jump/clip_one.mp4", 0, 18)]
    info = probe(str(out / "videos/run/clip_one.mp4"))
    assert (info.codec, info.num_frames) == ("h264", 18)


def write_ucf_lists(root: Path, class_ind: str, train: str, test: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("classInd.txt", class_ind), ("trainlist01.txt", train), ("testlist01.txt", test)):
        if text is not None:
            (root / name).write_text(text)
    return root


@pytest.mark.parametrize("class_ind, train, test, message", [
    (None, "A/v_A.avi 1\n", "", "classInd.txt not found"),
    ("1 A\n", "A/v_A.avi one\n", "", "trainlist01.txt line 1"),
    ("1 A\n", "A/v_A.avi 1\nB/v_B.avi 2\n", "", "class 'B' is not in"),
    ("1 A\n2 B\n", "A/v_A.avi 2\n", "", "label 2 disagrees"),
    ("1 A\n3 B\n", "A/v_A.avi 1\n", "", "classInd.txt line 2"),
    ("1 A\n", "A/v_A.avi 1\n", None, "testlist01.txt not found"),
    ("1 A\n", None, None, "no trainlist01.txt"),
])
def test_ucf101_split_errors_name_the_file(tmp_path, class_ind, train, test, message):
    src = tmp_path / "src"
    src.mkdir()
    lists = write_ucf_lists(tmp_path / "lists", class_ind, train, test)
    with pytest.raises(DataError, match=message):
        prep.prepare("ucf101", src, tmp_path / "out", splits=lists, progress=False)
    assert not (tmp_path / "out").exists()  # errors come before any output is written


def test_hmdb51_split_errors(tmp_path):
    src, splits = tmp_path / "src", tmp_path / "splits"
    splits.mkdir(parents=True)
    src.mkdir()
    (splits / "wave_test_split1.txt").write_text("a.avi 1\nb.avi 3\n")
    with pytest.raises(DataError, match=r"wave_test_split1.txt line 2: expected `video.avi 0\|1\|2`"):
        prep.prepare("hmdb51", src, tmp_path / "out", splits=splits, progress=False)
    (splits / "wave_test_split1.txt").write_text("a.avi 1\n")
    (splits / "wave_test_split2.txt").write_text("a.avi 2\n")
    (splits / "run_test_split1.txt").write_text("b.avi 1\n")
    with pytest.raises(DataError, match="run_test_split2.txt not found"):
        prep.prepare("hmdb51", src, tmp_path / "out", splits=splits, progress=False)


def test_argument_errors(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="--src .*missing.* is not a folder"):
        prep.prepare("folder", tmp_path / "missing", tmp_path / "out")
    for out in (src, src / "prepared", tmp_path):
        with pytest.raises(OptionError, match="overlaps --src"):
            prep.prepare("folder", src, out)
    with pytest.raises(OptionError, match="ucf101, hmdb51, kinetics, folder"):
        prep.prepare("ucf", src, tmp_path / "out")
    with pytest.raises(SystemExit) as exc:
        prepare_cli.main(["folder", "--src", str(src), "--out", str(tmp_path / "out"), "--codec", "xvid"])
    assert exc.value.code == 2 and "choose from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        prepare_cli.main(["ucf", "--src", str(src), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and "ucf101" in capsys.readouterr().err
    assert list(src.rglob("*")) == [src / "a"]


def test_cli_help_runs():
    result = subprocess.run([sys.executable, "-m", "motionssl.prepare", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    for word in ("ucf101", "hmdb51", "kinetics", "folder", "--short-side", "--gop", "vp9", "h264"):
        assert word in result.stdout
