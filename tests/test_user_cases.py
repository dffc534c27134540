"""A corpus of what users do to the toolkit, each with the one outcome it must have.

Every row is a case a user met or will meet — damaged, odd or missing videos, stale lists,
wrong labels, misused options, folders that are not ours, two runs on one folder, full
disks, signals — and the expected outcome:

* ``ok`` — it runs;
* ``warn`` — it runs, and a warning names the file and what was done about it;
* ``skip`` — it runs, and a warning names what was left out;
* ``error`` — it stops with one line (no traceback) that names the file or key.

So a regression shows as one failing row. Full disks are simulated with a file-size limit
(``RLIMIT_FSIZE``: Python ignores ``SIGXFSZ``, so a write past the limit fails with
``EFBIG`` as a full disk fails with ``ENOSPC``); read-only folders are skipped where the
tests run as root, whom permissions do not bind.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, List

import numpy as np
import pytest

from motionssl import demo as demo_cli
from motionssl import evaluate, protocols, show, train
from motionssl import prepare as prepare_cli
from motionssl.pipelines import demo, files
from motionssl.pipelines import prepare as prep
from motionssl.pipelines.index import cache_dir as index_cache_dir
from motionssl.pipelines.index import load_pair
from motionssl.pipelines.video_io import VideoError, check_decoding, frame_timestamps, write_video
from tests.fixtures import count_bframes, damage_box, damage_packet, textured_frames, write_audio_only, write_raw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["device=cpu", "batch_size=4", "max_steps=2", "log_every=1", "retrieval=false", "loader.num_workers=0",
        "pipeline_config.clip.frames=4", "pipeline_config.clip.augment.size=[32,32]",
        "pipeline_config.clip.speeds=[1]"]
FRAMES = 24


@dataclass
class Outcome:
    kind: str  # ok | error
    message: str  # the error line, or what was logged


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Seven good videos and one of every kind of bad file, each beside the good ones in its own list of
    eight: two batches of four, so two steps see every video."""
    root = tmp_path_factory.mktemp("media")
    good = []
    for v in range(7):
        name = f"good{v}.webm"
        write_video(str(root / name), textured_frames(FRAMES, seed=v), codec="vp9", gop=8)
        good.append(f"{name} {v % 2}")
    (root / "empty.webm").write_bytes(b"")
    whole = (root / "good0.webm").read_bytes()
    (root / "truncated.webm").write_bytes(whole[: len(whole) // 3])
    (root / "text.webm").write_text("this is not a video\n" * 50)
    write_audio_only(str(root / "audio.mkv"))
    write_video(str(root / "clean.mp4"), textured_frames(FRAMES, seed=9), codec="h264", gop=FRAMES)
    damage_packet(str(root / "clean.mp4"), 1, str(root / "damaged.mp4"))  # one GOP: every window decodes it
    write_video(str(root / "odd.webm"), textured_frames(FRAMES, 37, 53), codec="vp9", gop=8)
    stamps = np.cumsum([0] + [1, 1, 3, 1, 2, 1, 1, 4] * 3)[:FRAMES]
    write_raw(str(root / "vfr.mkv"), textured_frames(FRAMES), "libvpx-vp9", "matroska", pts=stamps)
    write_raw(str(root / "tenbit.mp4"), textured_frames(FRAMES), "libx264", "mp4", pix_fmt="yuv420p10le")
    write_raw(str(root / "dup.mkv"), textured_frames(FRAMES), "libvpx-vp9", "matroska",
              pts=[0, 1, 2, 3, 3, *range(5, FRAMES)])  # frame 4 stamped as frame 3: duplicate timestamps
    (root / "good.txt").write_text("\n".join(good) + "\n")
    for bad in ("empty.webm", "truncated.webm", "text.webm", "audio.mkv", "damaged.mp4", "odd.webm", "vfr.mkv",
                "tenbit.mp4", "dup.mkv"):
        (root / f"with-{bad}.txt").write_text("\n".join(good + [f"{bad} 1"]) + "\n")
    (root / "stale.txt").write_text("\n".join(f"{row} {FRAMES}" for row in good[:6]) + f"\n{good[6]} 100\n")
    prepared = root / "prepared"
    prepared.mkdir()
    (prepared / "classes.txt").write_text("walk\nrun\n")
    (prepared / "train.txt").write_text("".join(f"../{row}\n" for row in good) + "../good1.webm 7\n")
    return root


def one_line(message: str, *names: str) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    for name in names:
        assert re.search(name, message), f"{name!r} not in {message!r}"


def run_cli(main: Callable, argv: List[str], caplog) -> Outcome:
    """A command's outcome in this process: its one-line error, or ok with what it logged."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        try:
            main(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return Outcome("error", str(exc.code) if isinstance(exc.code, str) else caplog.text)
    return Outcome("ok", caplog.text)


def train_on(media, listing: str, tmp_path, caplog, *extra: str) -> Outcome:
    out = str(tmp_path / "run")
    return run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / listing), "--out", out, *FAST,
                                *extra], caplog)


# --- data: (list, extra arguments, expected outcome, what the line or warning must name) ---------------
DATA_CASES = {
    "empty file": ("with-empty.webm.txt", (), "skip", r"empty\.webm.*empty \(0 bytes\)"),
    "truncated file": ("with-truncated.webm.txt", ("loader.bad_files=raise",), "error",
                       r"truncated\.webm: the decoder reported damaged data .*File ended prematurely"),
    "truncated file, skipped": ("with-truncated.webm.txt", ("loader.bad_files=skip",), "skip",
                                r"skipping .*truncated\.webm"),
    "text with a video extension": ("with-text.webm.txt", (), "skip", r"text\.webm: not a readable video"),
    "audio only": ("with-audio.mkv.txt", (), "skip", r"audio\.mkv: contains no video stream"),
    "damaged H.264": ("with-damaged.mp4.txt", ("loader.bad_files=raise",), "error",
                      r"damaged\.mp4: the decoder reported damaged data"),
    "damaged H.264, skipped": ("with-damaged.mp4.txt", ("loader.bad_files=skip",), "skip",
                               r"skipping .*damaged\.mp4"),
    "odd frame size": ("with-odd.webm.txt", (), "ok", None),
    "variable frame rate": ("with-vfr.mkv.txt", (), "ok", None),
    "10-bit H.264": ("with-tenbit.mp4.txt", (), "ok", None),
    "stale frame count": ("stale.txt", (), "warn", r"good6\.webm \(listed 100, holds 24\)"),
    "label beyond classes.txt": ("prepared/train.txt", (), "error",
                                 r"label 7 of .*good1\.webm is not a class of .*classes\.txt"),
    "a video file as data": ("good0.webm", (), "error", r"good0\.webm is a video .*not a dataset"),
    "nan warm-up": ("good.txt", ("optim.warmup_epochs=nan",), "error", r"optim\.warmup_epochs=.*finite"),
    "nan weight decay": ("good.txt", ("optim.weight_decay=nan",), "error", r"optim\.weight_decay=.*finite"),
    "batch size under loader": ("good.txt", ("loader.batch_size=2",), "error", r"loader\.batch_size.*batch_size="),
    "unknown key": ("good.txt", ("optim.lrate=1",), "error", r"unknown optim key.*lrate"),
    "missing config file": ("good.txt", ("--config", "nowhere.yaml"), "error", r"nowhere\.yaml not found"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_training_data(case, media, tmp_path, caplog):
    listing, extra, expect, names = DATA_CASES[case]
    got = train_on(media, listing, tmp_path, caplog, *extra)
    assert got.kind == ("error" if expect == "error" else "ok"), got.message
    if expect == "error":
        one_line(got.message, names)
    elif expect in ("skip", "warn"):
        assert re.search(names, got.message, re.S), got.message
    else:
        assert os.path.exists(tmp_path / "run" / "checkpoints" / "ckpt-00000002.pt")


def test_a_split_of_a_class_folder_says_it_has_none(media, tmp_path, caplog):
    folder = tmp_path / "classes"
    for name, label in (("a", 0), ("b", 1)):
        (folder / name).mkdir(parents=True)
        shutil.copy(media / f"good{label}.webm", folder / name / "v.webm")
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(folder), "--split", "train", *FAST], caplog)
    one_line(got.message, r"folder of class sub-folders, which has no splits")


# --- test data: labels are joined by class name -------------------------------------------------------
def test_a_test_folder_missing_a_class_keeps_its_labels(media, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    for folder, names, first in ((full, ("jump", "run", "walk"), 0), (part, ("walk",), 4)):
        for k, name in enumerate(names, first):  # other videos than training's: a test video copied from
            (folder / name).mkdir(parents=True)  # the training data would be the training video again
            shutil.copy(media / f"good{k}.webm", folder / name / "v.webm")
    train_index, test_index, _ = load_pair(str(full), None, str(part))
    assert train_index.classes == ["jump", "run", "walk"]
    assert test_index.labels.tolist() == [2]  # walk, as in the training data — not 0, its folder position
    (part / "swim").mkdir()
    shutil.copy(media / "good3.webm", part / "swim" / "v.webm")
    with pytest.raises(ValueError, match=r"class\(es\) that .* lacks: \['swim'\]"):
        load_pair(str(full), None, str(part))


# --- run folders ------------------------------------------------------------------------------------
def test_out_folders_that_cannot_or_may_not_be_written(media, tmp_path, caplog):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / "good.txt"), "--out", str(a_file),
                               *FAST], caplog)
    one_line(got.message, r"notes\.txt is a file")
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / "good.txt"), "--out",
                               str(a_file / "run"), *FAST], caplog)
    one_line(got.message, r"notes\.txt/run")
    user = tmp_path / "user"
    (user / "sub").mkdir(parents=True)
    (user / "sub" / "file.bin").write_bytes(b"data")
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / "good.txt"), "--out", str(user),
                               *FAST], caplog)
    one_line(got.message, r"user already holds files that are not a run's \(sub\)")
    assert (user / "sub" / "file.bin").read_bytes() == b"data"
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root; the read-only case cannot be arranged")
def test_a_read_only_out_folder(media, tmp_path, caplog):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / "good.txt"), "--out",
                                   str(locked / "run"), *FAST], caplog)
        one_line(got.message, r"ro/run")
    finally:
        locked.chmod(0o755)


def test_a_folder_in_use_and_one_whose_holder_died(media, tmp_path, caplog):
    out = tmp_path / "run"
    with files.FolderLock(str(out), "another train.py"):
        got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / "good.txt"), "--out", str(out),
                                   *FAST], caplog)
    one_line(got.message, r"run is in use by process \d+ on .*another train\.py")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from pipelines import files; files.FolderLock(sys.argv[2]).acquire(); "
                               "print('locked', flush=True); time.sleep(600)", ROOT, str(out)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # kill -9: the kernel drops its lock
    holder.wait()
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / "good.txt"), "--out", str(out), *FAST],
                  caplog)
    assert got.kind == "ok", got.message


@pytest.mark.slow
def test_two_runs_started_together_on_one_folder(media, tmp_path):
    out = str(tmp_path / "dup")
    cmd = [sys.executable, "train.py", "--pipeline", "simclr", "--data", str(media / "good.txt"), "--out", out,
           *FAST[:-1], "max_steps=6"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    first_out, first_err = first.communicate(timeout=300)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 1], (first_err[-2000:], second.stderr[-2000:])
    loser = second.stderr if second.returncode else first_err
    one_line(loser.strip().splitlines()[-1], r"dup is in use by process \d+")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        steps = [int(re.search(r'"step": (\d+)', line).group(1)) for line in f]
    assert steps == sorted(set(steps))  # one run's log, each step once


def test_evaluating_a_training_run_leaves_its_checkpoint_in_flight(media, tmp_path, caplog):
    out = tmp_path / "run"
    assert train_on(media, "good.txt", tmp_path, caplog).kind == "ok"
    in_flight = out / "checkpoints" / f"ckpt-00000004.pt.tmp-{os.uname().nodename}-{os.getpid()}"
    in_flight.write_bytes(b"the run is writing this")
    got = run_cli(evaluate.main, ["retrieval", "--checkpoint", str(out), "--data", str(media / "good.txt"),
                                  "--test-data", str(media / "with-odd.webm.txt"), "--num-clips", "1",
                                  "--num-workers", "0", "--device", "cpu", "--out", str(tmp_path / "eval")], caplog)
    assert got.kind == "ok", got.message
    assert in_flight.read_bytes() == b"the run is writing this"


def test_eval_names_a_video_given_as_data(media, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["retrieval", "--random-init", "--data", str(media / "good0.webm"), "--test-data",
                       str(media / "good.txt"), "--device", "cpu"])
    assert exit_.value.code == 2
    one_line(capsys.readouterr().err, r"good0\.webm is a video")


# --- evaluation ---------------------------------------------------------------------------------------
EVAL_FAST = ["--num-clips", "1", "--num-workers", "0", "--device", "cpu", "--frames", "2", "--size", "32"]


def write_list(path, rows) -> str:
    """A plain list (no classes.txt) of ``(video, label)`` rows, each video named by its absolute path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{os.path.abspath(video)} {label}\n" for video, label in rows))
    return str(path)


def other_videos(media, tmp_path) -> str:
    """Test videos that are none of good.txt's."""
    return write_list(tmp_path / "queries" / "test.txt", [(media / "clean.mp4", 0), (media / "odd.webm", 1)])


def eval_cli(argv, capsys):
    """``eval.py``'s outcome: ("error", the last line it printed) or ("ok", its record)."""
    capsys.readouterr()
    try:
        record = evaluate.main(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err.strip().splitlines()
        return "error", err[-1] if err else str(exc.code)
    return "ok", record


def the_training_videos_again(case, media, tmp_path):
    """``(data, test data)``: the training videos, named again in another way."""
    good = [(media / f"good{v}.webm", v % 2) for v in range(7)]
    if case == "symlinked folder":
        folder = tmp_path / "classes"
        for v in range(4):
            (folder / f"c{v % 2}").mkdir(parents=True, exist_ok=True)
            shutil.copy(media / f"good{v}.webm", folder / f"c{v % 2}" / f"v{v}.webm")
        os.symlink(folder, tmp_path / "link")
        return str(folder), str(tmp_path / "link")
    if case == "symlinked list":
        os.symlink(media / "good.txt", tmp_path / "link.txt")
        return str(media / "good.txt"), str(tmp_path / "link.txt")
    if case == "copied list":
        return str(media / "good.txt"), write_list(tmp_path / "copy.txt", good)
    if case == "other relative paths":
        detour = os.path.relpath(media / "prepared", tmp_path)
        (tmp_path / "detour.txt").write_text("".join(f"{detour}/../good{v}.webm {v % 2}\n" for v in range(7)))
        return str(media / "good.txt"), str(tmp_path / "detour.txt")
    if case == "byte-identical copies":
        (tmp_path / "copies").mkdir()
        for video, _ in good:
            shutil.copy(video, tmp_path / "copies" / video.name)
        return str(media / "good.txt"), write_list(tmp_path / "copies.txt", [(tmp_path / "copies" / v.name, y)
                                                                              for v, y in good])
    assert case == "some of the training videos"
    return str(media / "good.txt"), write_list(tmp_path / "some.txt", good[2:5])


@pytest.mark.parametrize("case", ["symlinked folder", "symlinked list", "copied list", "other relative paths",
                                  "byte-identical copies", "some of the training videos"])
def test_testing_on_the_training_videos_under_another_name_is_an_error(case, media, tmp_path):
    data, test_data = the_training_videos_again(case, media, tmp_path)
    with pytest.raises(ValueError) as error:
        load_pair(data, None, test_data)
    one_line(str(error.value), r"the test videos would be the training videos", re.escape(str(test_data)))


def test_test_videos_partly_among_the_training_videos_are_counted_in_a_warning(media, tmp_path, caplog):
    (tmp_path / "copies").mkdir()
    shutil.copy(media / "good3.webm", tmp_path / "copies" / "mine.webm")
    test_data = write_list(tmp_path / "test.txt", [(tmp_path / "copies" / "mine.webm", 1), (media / "clean.mp4", 0),
                                                   (media / "odd.webm", 0)])
    with caplog.at_level(logging.WARNING):
        train_index, test_index, _ = load_pair(str(media / "good.txt"), None, test_data)
    assert len(test_index) == 3
    assert re.search(r"1 of the 3 test videos .* training videos .*mine\.webm", caplog.text), caplog.text


def test_a_plain_list_and_a_class_folder_are_not_joined_by_position(media, tmp_path):
    folder = tmp_path / "classes"
    for name, video in (("run", "clean.mp4"), ("walk", "odd.webm")):
        (folder / name).mkdir(parents=True)
        shutil.copy(media / video, folder / name / video)
    for data, test_data, plain in ((media / "good.txt", folder, "good.txt"), (folder, media / "good.txt", "good.txt")):
        with pytest.raises(ValueError) as error:
            load_pair(str(data), None, str(test_data))
        one_line(str(error.value), plain + r" .*no class names", r"classes\.txt beside")


@pytest.mark.parametrize("task,option,value", [
    ("retrieval", "--size", "-32"), ("retrieval", "--size", "0"), ("retrieval", "--size", "32 0"),
    ("retrieval", "--frames", "0"), ("retrieval", "--stride", "0"), ("retrieval", "--num-clips", "0"),
    ("retrieval", "--batch-size", "0"), ("retrieval", "--num-workers", "-1"), ("retrieval", "--show", "-3"),
    ("retrieval", "--seed", "-1"),
    ("linear", "--epochs", "0"), ("linear", "--lr", "0"), ("linear", "--lr", "nan"),
    ("linear", "--probe-batch-size", "0"), ("linear", "--weight-decay", "-1"),
    ("finetune", "--epochs", "-2"), ("finetune", "--lr", "inf"), ("finetune", "--weight-decay", "nan"),
    ("finetune", "--warmup-epochs", "-1"), ("finetune", "--warmup-epochs", "20"), ("finetune", "--hidden-dim", "0"),
    ("finetune", "--flip-prob", "1.5"),
])
def test_eval_options_out_of_range_are_named_before_any_work(task, option, value, tmp_path, capsys):
    kind, line = eval_cli([task, "--random-init", "--data", str(tmp_path / "nowhere"), "--test-data",
                           str(tmp_path / "nowhere.txt"), option, *value.split()], capsys)
    assert kind == "error"
    one_line(line, re.escape(option))


def test_a_label_typo_in_a_plain_list_is_named_before_any_feature(media, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(protocols, "view_outputs", lambda *a, **k: pytest.fail("features were extracted"))
    rows = [(media / f"good{v}.webm", v % 2) for v in range(6)]
    rows[3] = (rows[3][0], 10000000)
    common = ["linear", "--random-init", "--backbone", "tiny", "--out", str(tmp_path / "out"), "--epochs", "1",
              *EVAL_FAST]
    kind, line = eval_cli([*common, "--data", write_list(tmp_path / "train.txt", rows), "--test-data",
                           other_videos(media, tmp_path)], capsys)
    assert kind == "error"
    one_line(line, r"train\.txt:4: label 10000000 ", r"classes\.txt")
    kind, line = eval_cli([*common, "--data", str(media / "good.txt"), "--test-data",
                           write_list(tmp_path / "test.txt", [(media / "clean.mp4", 0), (media / "odd.webm", 5)])],
                          capsys)
    assert kind == "error"
    one_line(line, r"test\.txt:2: label 5 ")


def test_eval_leaves_the_run_folder_as_it_was_and_writes_under_out(media, tmp_path, capsys, monkeypatch):
    from tests.test_eval_cli import save_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_checkpoint(str(run / "checkpoints" / "ckpt-00000010.pt"))
    (run / "config.yaml").write_text("pipeline: simclr\n")

    def snapshot():
        return {p: open(p, "rb").read() for p in glob.glob(str(run / "**"), recursive=True) if os.path.isfile(p)}

    before = snapshot()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    argv = ["retrieval", "--checkpoint", str(run), "--data", str(media / "good.txt"), "--test-data",
            other_videos(media, tmp_path), *EVAL_FAST]
    kind, record = eval_cli(argv, capsys)
    assert kind == "ok", record
    assert snapshot() == before
    assert os.path.abspath(record["json"]) == str(tmp_path / "cwd" / "runs" / "eval-run" /
                                                  "ckpt-00000010.retrieval.json")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "ckpt-00000010.retrieval.json").write_text("my notes")
    kind, line = eval_cli([*argv, "--out", str(mine)], capsys)
    assert kind == "error"
    one_line(line, r"mine/ckpt-00000010\.retrieval\.json", "--out")
    assert (mine / "ckpt-00000010.retrieval.json").read_text() == "my notes"
    kind, again = eval_cli(argv, capsys)  # its own result of before is replaced
    assert kind == "ok" and again["json"] == record["json"]


# --- generated data: never written over a user's folder -------------------------------------------
def test_demo_refuses_a_folder_with_the_users_files(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "file.bin").write_bytes(b"\x00\x01")
    with pytest.raises(SystemExit) as exit_:
        demo_cli.main(["--out", str(out), "--per-class", "2", "--test-per-class", "1", "--workers", "1"])
    one_line(str(exit_.value.code), r"mine already holds files \(notes\.txt, sub\)")
    assert (out / "notes.txt").read_text() == "keep me" and (out / "sub" / "file.bin").read_bytes() == b"\x00\x01"
    assert not glob.glob(str(out) + ".tmp*")


def test_demo_removes_only_its_own_stale_temporaries(tmp_path):
    out = tmp_path / "demo"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale, foreign = tmp_path / "demo.tmp1", tmp_path / "demo.tmpmine"
    stale.mkdir()
    (stale / files.PARTIAL_MARKER).write_text(f"{os.uname().nodename} {dead}\n")
    foreign.mkdir()
    (foreign / "data.bin").write_bytes(b"not ours")
    demo.generate(str(out), per_class=2, test_per_class=1, workers=1)
    assert not stale.exists() and (foreign / "data.bin").read_bytes() == b"not ours"


# --- dataset preparation ----------------------------------------------------------------------------
@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    for k, name in enumerate(("walk", "run")):
        (src / name).mkdir(parents=True)
        for v in range(4):
            write_video(str(src / name / f"{name}_{v}.avi"), textured_frames(12, seed=k * 4 + v), codec="mpeg4")
    return src


def test_prepare_refuses_a_folder_with_the_users_files_and_redoes_changed_sources(source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_:
        prepare_cli.main(["folder", "--src", str(source), "--out", str(out), "--workers", "1"])
    one_line(str(exit_.value.code), r"^prepare: error: .*out already holds files \(notes\.txt\)")
    assert os.listdir(out) == ["notes.txt"]
    out = tmp_path / "prepared"
    first = prep.prepare("folder", source, out, workers=1, progress=False)
    assert (first["converted"], first["redone"]) == (8, 0)
    time.sleep(0.01)  # a new modification time, whatever the clock's resolution
    write_video(str(source / "walk" / "walk_0.avi"), textured_frames(20, seed=40), codec="mpeg4")
    again = prep.prepare("folder", source, out, workers=1, progress=False)
    assert (again["converted"], again["redone"], again["skipped"]) == (1, 1, 7)
    assert "videos/walk/walk_0.webm 1 20" in (out / "all.txt").read_text()  # the new source, all 20 frames


def _limited(size: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_prepare_on_a_full_disk_writes_its_failures_and_leaves_no_temporaries(source, tmp_path):
    out = tmp_path / "prepared"
    prep.prepare("folder", source, out, workers=1, progress=False)
    for name in ("all.txt", "failed.txt", "prepare_report.json"):
        (out / name).unlink()
    run = subprocess.run([sys.executable, "-m", "motionssl.prepare", "folder", "--src", str(source), "--out", str(out),
                          "--workers", "1"], cwd=ROOT, capture_output=True, text=True, preexec_fn=_limited(200),
                         timeout=300)
    assert run.returncode != 0
    one_line(run.stderr.strip(), r"^prepare: error: File too large .*all\.txt.*run the same command again")
    assert (out / "failed.txt").exists() and not glob.glob(str(out / "*.tmp*"))


def test_prepare_and_demo_say_one_line_when_the_folder_cannot_be_made(source, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as exit_:
        prepare_cli.main(["folder", "--src", str(source), "--out", str(a_file / "out")])
    one_line(str(exit_.value.code), r"cannot write --out .*file/out")
    with pytest.raises(SystemExit) as exit_:
        demo_cli.main(["--out", str(a_file / "demo"), "--per-class", "2", "--test-per-class", "1"])
    one_line(str(exit_.value.code), r"motionssl\.demo: error: .*file")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["demo", "prepare"])
def test_ctrl_c_stops_with_one_line_and_keeps_nothing_half_written(command, source, tmp_path):
    out = tmp_path / "out"
    if command == "demo":
        cmd = [sys.executable, "-m", "motionssl.demo", "--out", str(out), "--per-class", "40", "--workers", "2"]
        started = lambda: glob.glob(str(out) + ".tmp*/videos/*/*.webm")  # noqa: E731
    else:
        for v in range(4, 40):
            shutil.copy(source / "walk" / "walk_0.avi", source / "walk" / f"walk_{v}.avi")
        cmd = [sys.executable, "-m", "motionssl.prepare", "folder", "--src", str(source), "--out", str(out),
               "--workers", "2"]
        started = lambda: os.path.exists(out / prep.MANIFEST) and os.path.getsize(out / prep.MANIFEST)  # noqa
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    for _ in range(600):
        if started() or proc.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    one_line(err.strip().splitlines()[-1], "interrupted")
    assert "Traceback" not in err
    assert not glob.glob(str(out) + ".tmp*") and not glob.glob(str(out / "videos" / "*" / ".*.part"))


# --- resume and configuration ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(media, tmp_path_factory):
    """A finished two-step run with a checkpoint at each step; tests copy it before they change anything."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train.main(["--pipeline", "simclr", "--data", str(media / "good.txt"), "--out", str(out), *FAST])
    return out


def snapshot(*folders):
    """Every file under ``folders`` with its bytes: what a refused command must leave as it found it."""
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def logged_steps(run) -> List[int]:
    return [int(re.search(r'"step": (\d+)', row).group(1)) for row in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_writes_only_into_its_own_run_or_a_new_folder(trained, tmp_path, caplog):
    a, b, user = tmp_path / "a", tmp_path / "b", tmp_path / "user"
    shutil.copytree(trained, a)
    shutil.copytree(trained, b)  # another run's folder
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    (user / "metrics.jsonl").write_text("my own numbers\n")
    shutil.copy(a / "checkpoints" / "ckpt-00000001.pt", tmp_path / "loose.pt")
    before = snapshot(tmp_path)
    ckpt = str(a / "checkpoints" / "ckpt-00000001.pt")
    for out in (b, user):
        got = run_cli(train.main, ["--pipeline", "simclr", "--resume", ckpt, "--out", str(out)], caplog)
        assert got.kind == "error", got.message
        one_line(got.message, re.escape(str(out)), "new or empty --out")
    got = run_cli(train.main, ["--pipeline", "simclr", "--resume", str(tmp_path / "loose.pt")], caplog)
    one_line(got.message, r"loose\.pt", "--out")  # not in a run folder: it has no folder of its own to write
    assert snapshot(tmp_path) == before

    new = tmp_path / "new"
    got = run_cli(train.main, ["--pipeline", "simclr", "--resume", ckpt, "--out", str(new), "max_steps=3"], caplog)
    assert got.kind == "ok", got.message
    assert snapshot(a) == {k: v for k, v in before.items() if k.startswith(str(a) + os.sep)}
    assert logged_steps(new) == [1, 2, 3]  # the run's history up to step 1, then its own steps
    assert sorted(os.listdir(new / "checkpoints")) == [f"ckpt-0000000{s}.pt" for s in (1, 2, 3)]
    assert f"out: {new}" in (new / "config.yaml").read_text()


def test_resume_refuses_other_data_and_changed_settings(trained, media, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    dup = tmp_path / "dup.yaml"
    dup.write_text("epochs: 3\noptim:\n  lr: 0.1\n  lr: 0.2\n")
    before = snapshot(tmp_path)
    for extra, names in ((("--data", str(media / "stale.txt")), (r"--data .*stale\.txt", r"good\.txt")),
                         (("backbone=r3d_18",), (r"backbone='r3d_18' differs from the run's 'tiny'",)),
                         (("optim.name=adamw", "optim.lr=0.001"), (r"optim\.name='adamw' differs from the run's 'sgd'",)),
                         (("--config", str(dup)), (r"dup\.yaml", r"'lr'", r"line 4"))):
        got = run_cli(train.main, ["--pipeline", "simclr", "--resume", str(run), *extra], caplog)
        assert got.kind == "error", (extra, got.message)
        one_line(got.message, *names)
    assert snapshot(tmp_path) == before
    (tmp_path / "link").symlink_to(media)  # the run's data by another path: the same data
    same = str(tmp_path / "link" / "good.txt")
    got = run_cli(train.main, ["--pipeline", "simclr", "--resume", str(run), "--data", same, "max_steps=3"], caplog)
    assert got.kind == "ok", got.message
    assert logged_steps(run) == [1, 2, 3]


CONFIG_CASES = {  # key=value: what the line must name; each refused before anything is written
    "zero std": ("pipeline_config.clip.augment.std=[0.2,0,0.2]", r"pipeline_config\.clip\.augment\.std .*> 0"),
    "zero residual std": ("pipeline_config.clip.augment.residual_std=0",
                          r"pipeline_config\.clip\.augment\.residual_std .*> 0"),
    "no prefetch": ("loader.prefetch=0", r"loader\.prefetch=0"),
    "warm-up beyond the run": ("optim.warmup_epochs=1e308", r"optim\.warmup_epochs=1e\+308 .*epochs"),
    "warm-up beyond a run in steps": ("steps=3 optim.warmup_epochs=40", r"optim\.warmup_epochs=40\.0 .*steps=3"),
    "zero temperature": ("method.temperature=0", r"method\.temperature must be > 0"),
    "a long value": ("epochs=[" + ",".join(["1"] * 20000) + "]", r"epochs=\[1, 1, .*\.\.\..*expected a number"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_values_are_checked_by_key_before_anything_is_written(case, media, tmp_path, caplog):
    given, names = CONFIG_CASES[case]
    got = train_on(media, "good.txt", tmp_path, caplog, *given.split())
    assert got.kind == "error", got.message
    one_line(got.message, names)
    assert len(got.message) < 1000, got.message[:2000]  # a value is echoed cut short, however long it is
    assert not (tmp_path / "run").exists()  # not even a folder holding its lock file


def test_config_files_with_a_duplicate_key_or_an_alias_bomb(media, tmp_path, caplog):
    dup = tmp_path / "dup.yaml"
    dup.write_text("epochs: 3\nbatch_size: 4\nepochs: 5\n")
    got = train_on(media, "good.txt", tmp_path, caplog, "--config", str(dup))
    one_line(got.message, r"dup\.yaml", r"'epochs'", r"line 3")
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]" for p, n in zip("abcde", "bcdef")]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nepochs: *f\n")  # a million values from a few hundred bytes
    for extra in (("--config", str(bomb)), ("method={a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], b: &b [*a, *a, *a, *a, *a, "
                                             "*a, *a, *a, *a, *a], c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], "
                                             "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}",)):
        got = train_on(media, "good.txt", tmp_path, caplog, *extra)
        assert got.kind == "error" and len(got.message) < 1000, got.message[:2000]
        one_line(got.message, r"alias")
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_logging_names_the_log_and_the_last_checkpoint(trained, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    limit = 1 << 16  # every file of a run fits but the log, which is just under it
    rows = (run / "metrics.jsonl").read_text().splitlines()
    rows[0] = rows[0][:-1] + ', "pad": "' + "x" * (limit - 64 - len("\n".join(rows))) + '"}'
    (run / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        got = run_cli(train.main, ["--pipeline", "simclr", "--resume", str(run), "max_steps=3"], caplog)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    one_line(got.message, re.escape(str(run / "metrics.jsonl")), r"File too large", r"ckpt-00000002\.pt")


# --- the loader section and the run's counts: refused by load_config, naming key, value and what is allowed ------
COUNT_CASES = {  # key=value: what the one line must name
    "loader.num_workers=-1": r"loader\.num_workers=-1: expected a whole number >= 0 \(0: .*in the training process\)",
    "loader.num_workers=2.5": r"loader\.num_workers=2\.5: expected a whole number",
    "loader.num_workers=true": r"loader\.num_workers=True: expected a number, got a boolean",
    "loader.num_workers=many": r"loader\.num_workers='many': expected a number",
    "loader.num_threads=0": r"loader\.num_threads=0: expected a whole number >= 1, or null \(.*\)",
    "loader.num_threads=-1": r"loader\.num_threads=-1: expected a whole number >= 1, or null \(.*\)",
    "loader.num_threads=1.5": r"loader\.num_threads=1\.5: expected a whole number",
    "loader.prefetch=0": r"loader\.prefetch=0: expected a whole number >= 1",
    "loader.prefetch=true": r"loader\.prefetch=True: expected a number, got a boolean",
    "loader.decoder=3": r"loader\.decoder=3: expected a string",
    "loader.batch_size=4": r"loader\.batch_size is set by train\.py from batch_size; write batch_size=\.\.\. instead",
    "batch_size=0": r"batch_size must be >= 1, got 0",
    "batch_size=2.5": r"batch_size=2\.5: expected a whole number",
    "batch_size=true": r"batch_size=True: expected a number, got a boolean",
    "steps=-5": r"steps must be >= 0 \(0: off\), got -5",
    "epochs=0": r"epochs must be >= 1, got 0",
    "log_every=0": r"log_every must be >= 1, got 0",
    "checkpoint_every=-1": r"checkpoint_every must be >= 0 \(0: off\), got -1",
    "keep_checkpoints=0": r"keep_checkpoints must be >= 1, got 0",
    "seed=-1": r"seed must be >= 0 and < 2\*\*64, got -1",
    "seed=18446744073709551616": r"seed must be >= 0 and < 2\*\*64, got 18446744073709551616",
}


@pytest.mark.parametrize("given", sorted(COUNT_CASES))
def test_a_count_or_loader_value_that_cannot_be_used_is_refused_at_config_load(given):
    from motionssl.pipelines.config import ConfigError
    from motionssl.training import load_config

    with pytest.raises(ConfigError) as error:
        load_config([], [given], pipeline="moquad")
    one_line(str(error.value), "^" + COUNT_CASES[given])


def test_the_edges_of_the_counts_and_loader_values_are_kept():
    from motionssl.training import load_config

    cfg = load_config([], ["loader.num_workers=0", "loader.num_threads=null", "loader.prefetch=1", "steps=0",
                           "max_steps=0", "checkpoint_every=0", "seed=0"], pipeline="moquad")
    assert cfg.loader == {"num_workers": 0, "num_threads": None, "prefetch": 1}  # 0 workers: decode in-process
    cfg = load_config([], ["loader.num_workers='3'", "loader.num_threads=1", "seed=18446744073709551615"])
    assert cfg.loader == {"num_workers": 3, "num_threads": 1} and cfg.seed == 2 ** 64 - 1


def test_train_py_refuses_negative_workers_in_one_line_before_reading_data(media, tmp_path):
    env = dict(os.environ, MOTIONSSL_CACHE=str(tmp_path / "cache"))  # the index cache: written once data is read
    run = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--pipeline", "simclr", "--data",
                          str(media / "good.txt"), "--out", str(tmp_path / "run"), *FAST, "loader.num_workers=-1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and run.stdout == "", (run.returncode, run.stdout, run.stderr[-2000:])
    one_line(run.stderr, r"^train\.py: error: loader\.num_workers=-1: expected a whole number >= 0")
    assert os.listdir(tmp_path) == []  # no run folder, no runs/, no index cache


# --- training: a full disk, a signal after training -----------------------------------------------
@pytest.mark.slow
def test_a_full_disk_at_the_checkpoint_is_one_line_and_no_temporary(media, tmp_path):
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "train.py", "--pipeline", "simclr", "--data", str(media / "good.txt"),
                          "--out", str(out), *FAST], cwd=ROOT, capture_output=True, text=True,
                         preexec_fn=_limited(1 << 20), timeout=300)  # logs fit in 1 MiB, the checkpoint does not
    assert run.returncode == 1, run.stderr[-2000:]
    one_line(run.stderr.strip().splitlines()[-1], r"could not write checkpoint .*ckpt-\d+\.pt \(File too large;")
    assert not glob.glob(str(out / "checkpoints" / "*"))


@pytest.mark.slow
def test_a_signal_during_the_final_retrieval_stops_the_run(tmp_path):
    data = demo.generate(str(tmp_path / "demo"), per_class=10, test_per_class=3, workers=2)
    proc = subprocess.Popen([sys.executable, "-u", "train.py", "--pipeline", "simclr", "--data", data, "--split", "train",
                             "--test-split", "test", "--out", str(tmp_path / "run"), *FAST[:4],
                             *FAST[5:]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("done:"):  # the checkpoint is written; the retrieval starts
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "retrieval:" not in rest and "Traceback" not in err
    assert glob.glob(str(tmp_path / "run" / "checkpoints" / "ckpt-*.pt"))


# --- demo, prepare, show and the environment ------------------------------------------------------
def _demo_args(tmp_path, *extra):
    return ["--out", str(tmp_path / "demo"), "--per-class", "2", "--test-per-class", "1", "--workers", "1", *extra]


def _prepare_args(tmp_path, *extra):
    return ["folder", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), *extra]


def _show_args(tmp_path, *extra):
    return ["--pipeline", "simclr", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b.png"), *extra]


# (command, its arguments below tmp_path, what the one line must name); nothing may be written
OPTION_CASES = {
    "demo: a negative --test-per-class": (demo_cli.main, lambda t: _demo_args(t, "--test-per-class", "-1"),
                                          r"--test-per-class must be at least 1, got -1"),
    "demo: --test-per-class as large as --per-class": (demo_cli.main, lambda t: _demo_args(t, "--test-per-class", "2"),
                                                       r"--test-per-class \(2\) must be smaller than --per-class"),
    "demo: --per-class 1": (demo_cli.main, lambda t: _demo_args(t, "--per-class", "1"),
                            r"--per-class must be at least 2"),
    "demo: --size 0": (demo_cli.main, lambda t: _demo_args(t, "--size", "0"), r"--size must be at least 16, got 0"),
    "demo: --frames 0": (demo_cli.main, lambda t: _demo_args(t, "--frames", "0"),
                         r"--frames must be at least 1, got 0"),
    "demo: a negative --seed": (demo_cli.main, lambda t: _demo_args(t, "--seed", "-1"), r"--seed must be at least 0"),
    "demo: --workers 0": (demo_cli.main, lambda t: _demo_args(t, "--workers", "0"), r"--workers must be at least 1"),
    "prepare: --crf 100 for vp9": (prepare_cli.main, lambda t: _prepare_args(t, "--crf", "100"),
                                   r"--crf 100 .*vp9.*0 to 63"),
    "prepare: --crf 52 for h264": (prepare_cli.main, lambda t: _prepare_args(t, "--codec", "h264", "--crf", "52"),
                                   r"--crf 52 .*h264.*0 to 51"),
    "prepare: a negative --crf": (prepare_cli.main, lambda t: _prepare_args(t, "--crf", "-1"), r"--crf -1 .*0 to 63"),
    "show: --samples 0": (show.main, lambda t: _show_args(t, "--samples", "0"), r"--samples must be at least 1"),
    "show: --batch-size 0": (show.main, lambda t: _show_args(t, "--batch-size", "0"), r"--batch-size must be at least"),
    "show: a negative --seed": (show.main, lambda t: _show_args(t, "--seed", "-1"), r"--seed must be at least 0"),
    "show: --out under a file": (show.main, lambda t: _show_args(t, "--out", str(t / "file" / "b.png")),
                                 r"--out .*file/b\.png"),
    "show: --out of an unknown kind": (show.main, lambda t: _show_args(t, "--out", str(t / "b.pic")),
                                       r"--out .*b\.pic.*\.png"),
    "show: missing --data": (show.main, lambda t: _show_args(t), r"show: error: .*nowhere: no such dataset"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_options_out_of_range(case, tmp_path, caplog):
    main, argv, names = OPTION_CASES[case]
    (tmp_path / "file").write_text("")
    got = run_cli(main, argv(tmp_path), caplog)
    assert got.kind == "error", got.message
    one_line(got.message, names)
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_prepare_where_every_video_fails_exits_with_the_reason(tmp_path, caplog):
    src = tmp_path / "src"
    for name in ("walk", "run"):
        (src / name).mkdir(parents=True)
        for v in range(2):
            (src / name / f"{name}_{v}.avi").write_text("not a video\n" * 20)
    got = run_cli(prepare_cli.main, ["folder", "--src", str(src), "--out", str(tmp_path / "out"), "--workers", "1"],
                  caplog)
    assert got.kind == "error", got.message
    one_line(got.message, r"all 4 videos failed", r"\(4 of them\), e\.g\. .*\.avi: not a readable video",
             r"out/failed\.txt")


def test_demo_and_prepare_follow_the_umask(source, tmp_path):
    old = os.umask(0o027)
    try:
        written = [demo.generate(str(tmp_path / "demo"), per_class=2, test_per_class=1, workers=1)]
        prep.prepare("folder", source, tmp_path / "prepared", workers=1, progress=False)
        written.append(str(tmp_path / "prepared"))
    finally:
        os.umask(old)
    for root in written:
        for path in [root] + glob.glob(os.path.join(root, "**"), recursive=True):
            mode = os.stat(path).st_mode & 0o777
            assert mode == (0o750 if os.path.isdir(path) else 0o640), (path, oct(mode))


def test_demo_out_whose_parent_cannot_be_written_or_that_is_a_mount_point(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as exit_:
        demo_cli.main(_demo_args(tmp_path, "--out", str(a_file / "demo")))
    one_line(str(exit_.value.code), r"cannot write .*file/demo: .*file .*choose")
    mount = tmp_path / "mnt"
    mount.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: os.path.abspath(p) == str(mount) or real(p))
    with pytest.raises(SystemExit) as exit_:
        demo_cli.main(_demo_args(tmp_path, "--out", str(mount)))
    one_line(str(exit_.value.code), r"mnt is a mount point.*choose a folder inside it")
    assert sorted(os.listdir(tmp_path)) == ["file", "mnt"] and not os.listdir(mount)


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root; the read-only case cannot be arranged")
def test_demo_out_in_a_read_only_folder(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as exit_:
            demo_cli.main(_demo_args(tmp_path, "--out", str(locked / "demo")))
        one_line(str(exit_.value.code), r"cannot write .*ro/demo: Permission denied; .*choose a folder")
    finally:
        locked.chmod(0o755)


def test_show_says_one_line_when_the_picture_cannot_be_written(tmp_path, caplog):
    data = demo.generate(str(tmp_path / "demo"), per_class=2, test_per_class=1, workers=1)
    out = tmp_path / "b.png"
    out.write_bytes(b"an earlier picture")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, hard))  # index cache files fit, the picture does not
    try:
        got = run_cli(show.main, ["--pipeline", "simclr", "--data", data, "--split", "train", "--batch-size", "2",
                                  "--out", str(out)], caplog)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    one_line(got.message, r"show: error: cannot write --out .*b\.png \(File too large\)")
    assert out.read_bytes() == b"an earlier picture" and sorted(os.listdir(tmp_path)) == ["b.png", "demo"]


@pytest.mark.parametrize("value", ["0", "false", "No", "off", ""])
def test_motionssl_debug_off_values(value, tmp_path, monkeypatch):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("keep me")
    monkeypatch.setenv("MOTIONSSL_DEBUG", value)
    with pytest.raises(SystemExit) as exit_:  # not the exception with its traceback
        demo_cli.main(_demo_args(tmp_path))
    one_line(str(exit_.value.code), r"demo already holds files")
    monkeypatch.setenv("MOTIONSSL_DEBUG", "1")
    with pytest.raises(files.FolderError):
        demo_cli.main(_demo_args(tmp_path))


def test_an_empty_motionssl_cache_means_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOTIONSSL_CACHE", "")
    default = str(tmp_path / "home" / ".cache" / "motionssl")
    assert demo.default_root(3) == os.path.join(default, f"demo-v{demo.VERSION}-seed3")
    assert index_cache_dir() == default


# --- damage, timestamps and names ---------------------------------------------------------------------
def test_a_one_byte_damage_that_reorders_h264_frames_is_named(media, tmp_path):
    """One byte of the MP4's composition offsets (``ctts``) overwritten: every frame decodes without a word
    from the decoder, but out of the order of the timestamps — the order every decoder of the toolkit reads."""
    import av

    damaged = damage_box(str(media / "clean.mp4"), b"ctts", 17, str(tmp_path / "reordered.mp4"))
    with av.open(damaged) as container:
        pts = [frame.pts for frame in container.decode(video=0)]
    assert len(pts) == FRAMES and pts != sorted(pts)  # what the test needs: damage the decoder cannot see
    with pytest.raises(VideoError, match=r"reordered\.mp4: damaged timestamps: the decoder returns frame \d+ "):
        check_decoding(damaged)


def test_the_full_check_passes_clean_files_of_every_kind(media, tmp_path):
    write_video(str(tmp_path / "xvid.avi"), textured_frames(12), codec="mpeg4")
    assert count_bframes(str(media / "clean.mp4"))
    for path in (media / "clean.mp4", media / "good0.webm", media / "tenbit.mp4", media / "vfr.mkv",
                 media / "dup.mkv", tmp_path / "xvid.avi"):
        assert check_decoding(str(path)) == len(frame_timestamps(str(path))), path


TIMESTAMP_CASES = {  # (list, what a warning must say or None, what no warning may say)
    "variable frame rate, not damage": ("with-vfr.mkv.txt", None, r"damaged|frames missing|vfr\.mkv"),
    "duplicate timestamps": ("with-dup.mkv.txt", r"dup\.mkv \(duplicate timestamps: 1 frame\(s\) share the "
                                                 r"timestamp of the frame before \(first: frame 4\); each is kept as "
                                                 r"a frame of its own", r"frame\(s\) missing"),
}


@pytest.mark.parametrize("case", sorted(TIMESTAMP_CASES))
def test_irregular_timestamps_are_named_for_what_they_are(case, media, tmp_path, caplog):
    listing, said, unsaid = TIMESTAMP_CASES[case]
    got = train_on(media, listing, tmp_path, caplog)
    assert got.kind == "ok", got.message
    assert said is None or re.search(said, got.message), got.message
    assert not re.search(unsaid, got.message), got.message


def test_a_video_whose_name_is_not_utf8_is_used(media, tmp_path):
    from motionssl.pipelines.index import load_index

    folder = tmp_path / "classes"
    for k, name in enumerate(("a", "b")):
        (folder / name).mkdir(parents=True)
        shutil.copy(media / f"good{k}.webm", folder / name / "v.webm")
    odd = os.fsdecode(os.path.join(os.fsencode(folder / "b"), b"caf\xe9.webm"))  # Latin-1 on disk
    shutil.copy(media / "good2.webm", odd)
    for _ in ("probed", "from the cache"):
        index = load_index(str(folder))
        assert sorted(zip(index.paths, index.labels.tolist())) == [
            (str(folder / "a" / "v.webm"), 0), (odd, 1), (str(folder / "b" / "v.webm"), 1)]


def test_a_list_and_classes_txt_saved_with_a_byte_order_mark(media, tmp_path, caplog):
    from motionssl.pipelines.index import load_index

    (tmp_path / "classes.txt").write_text("\ufeffwalk\nrun\n")
    (tmp_path / "train.txt").write_text("\ufeff" + "".join(f"{media}/good{v}.webm {v % 2}\n" for v in range(7)))
    with caplog.at_level(logging.WARNING):
        index = load_index(str(tmp_path), split="train")
    assert len(index) == 7 and index.classes == ["walk", "run"], caplog.text


# --- rotation: a phone's video (display matrix −90°) is used as it was shown ----------------------------
@pytest.mark.parametrize("decoder", ["pyav", "dali"])
def test_a_phones_rotated_videos_train_upright(tmp_path, caplog, decoder):
    from motionssl.pipelines.index import load_index
    from tests.dali_utils import decode_windows
    from tests.fixtures import coloured_id_frames, write_turned

    frames = coloured_id_frames(FRAMES, 40, 64)  # as the phone showed them: 40 high, 64 wide
    turns = (270, 90, 180, 0)  # held upright, the other way up, upside down, and one landscape video
    (tmp_path / "phone.txt").write_text("".join(
        f"{write_turned(str(tmp_path / f'phone{v}.webm'), frames, r, 'vp9')} {v % 2}\n" for v, r in enumerate(turns)))
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(tmp_path / "phone.txt"), "--out",
                               str(tmp_path / "run"), *FAST, f"loader.decoder={decoder}"], caplog)
    assert got.kind == "ok", got.message
    index = load_index(str(tmp_path / "phone.txt"))
    assert [(m.height, m.width) for m in index.media] == [(40, 64)] * 4  # the displayed size
    for window in decode_windows(index, [(v, 3) for v in range(4)], 4, decoder):  # what training decodes
        assert window.shape == (4, 40, 64, 3) and np.abs(window.astype(int) - frames[3:7]).mean() < 12


def test_prepare_writes_a_phones_rotated_video_upright(tmp_path, capsys):
    from motionssl.pipelines.video_io import probe
    from tests.fixtures import coloured_id_frames, write_turned

    (tmp_path / "src" / "walk").mkdir(parents=True)
    write_turned(str(tmp_path / "src" / "walk" / "phone.mp4"), coloured_id_frames(FRAMES, 40, 64), 270)
    summary = prepare_cli.main(["folder", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                                "--workers", "1"])
    assert summary["converted"] == 1, summary["failures"]
    info = probe(str(tmp_path / "out" / "videos" / "walk" / "phone.webm"))
    assert (info.height, info.width) == (40, 64)  # upright
    assert info.rotation == 0  # nothing left to turn it again


# --- unlabelled videos and the iterator API -----------------------------------------------------------
def unlabelled_folder(media, tmp_path) -> str:
    """Four of the good videos, loose in a folder of their own: no classes, no list."""
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for v in range(4):
        shutil.copy(media / f"good{v}.webm", folder / f"clip{v}.webm")
    return str(folder)


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_training_on_unlabelled_videos(how, media, tmp_path, caplog):
    folder = unlabelled_folder(media, tmp_path)
    data = folder if how == "folder" else os.path.join(folder, "*.webm")
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", data, "--out", str(tmp_path / "run"), *FAST], caplog)
    assert got.kind == "ok", got.message
    assert os.path.exists(tmp_path / "run" / "checkpoints" / "ckpt-00000002.pt")


@pytest.mark.parametrize("task", ["retrieval", "linear", "finetune"])
def test_evaluating_on_unlabelled_test_videos_is_one_line(task, media, tmp_path, capsys):
    folder = unlabelled_folder(media, tmp_path)
    kind, line = eval_cli([task, "--random-init", "--data", str(media / "good.txt"), "--test-data", folder,
                           "--out", str(tmp_path / "out"), *EVAL_FAST], capsys)
    assert kind == "error"
    one_line(line, r"unlabelled", re.escape(folder), "labels")


def test_training_with_unlabelled_test_videos_refuses_the_retrieval_up_front(media, tmp_path, caplog):
    folder = unlabelled_folder(media, tmp_path)
    got = run_cli(train.main, ["--pipeline", "simclr", "--data", str(media / "good.txt"), "--test-data", folder,
                               "--out", str(tmp_path / "run"), *FAST, "retrieval=true"], caplog)
    assert got.kind == "error"
    one_line(got.message, r"unlabelled", re.escape(folder), "retrieval=false")
    assert not os.path.exists(tmp_path / "run")


def test_prepare_a_folder_of_unlabelled_videos(tmp_path):
    from motionssl.pipelines.index import load_index

    src = tmp_path / "src"
    src.mkdir()
    write_video(str(src / "a.mp4"), textured_frames(12, seed=1), codec="h264")
    write_video(str(src / "b.mp4"), textured_frames(12, seed=2), codec="h264")
    summary = prepare_cli.main(["folder", "--src", str(src), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert summary["converted"] == 2, summary["failures"]
    index = load_index(str(tmp_path / "out"), split="all")
    assert index.labels.tolist() == [-1, -1] and index.classes == []
    assert len(set(index.paths)) == 2
    (src / "walk").mkdir()
    write_video(str(src / "walk" / "w.mp4"), textured_frames(12, seed=3), codec="h264")
    with pytest.raises(SystemExit, match=r"both loose videos .*a\.mp4.* and class sub-folders .*walk"):
        prepare_cli.main(["folder", "--src", str(src), "--out", str(tmp_path / "out2"), "--workers", "1"])


# --- the GPU check: a process that exits while the check stops it -----------------------------------------
class _ExitsAsItIsKilled:
    """A process of a stage that is still running when looked at and gone when killed (it exited in between)."""

    pid = 2 ** 30

    def __init__(self):
        self.gone = False

    def status(self):
        import psutil

        if self.gone:
            raise psutil.NoSuchProcess(self.pid)
        return psutil.STATUS_RUNNING

    def kill(self):
        import psutil

        self.gone = True
        raise psutil.NoSuchProcess(self.pid)


def test_a_stage_process_that_exits_as_it_is_stopped_ends_the_stage_normally():
    from benchmarks.gpu_processes import stop_processes

    assert stop_processes([_ExitsAsItIsKilled()], mark="carried by no process here") == 0


# --- the library's modules run as the commands that moved to the application ------------------------------
@pytest.mark.parametrize("module,command", [("motionssl.pipelines.demo", "python -m motionssl.demo"),
                                            ("motionssl.pipelines.show", "python -m motionssl.show"),
                                            ("motionssl.pipelines.prepare", "motionssl-prepare")])
def test_a_library_module_run_as_its_old_command_names_the_new_one(module, command, tmp_path):
    run = subprocess.run([sys.executable, "-m", module, "--out", str(tmp_path / "out")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout, run.stderr)
    one_line(run.stderr, re.escape(module), re.escape(command))
    assert os.listdir(tmp_path) == []


# --- a library's message in the words of its API, a command's in its options ------------------------------
def test_testing_on_the_training_videos_is_refused_in_the_callers_words(media, tmp_path, capsys):
    data = str(media / "good.txt")
    for test_data in (data, write_list(tmp_path / "again.txt", [(media / f"good{v}.webm", v % 2) for v in range(7)])):
        with pytest.raises(ValueError) as error:
            load_pair(data, None, test_data)
        one_line(str(error.value), r"test_split=", r"test_data=")
        assert "--test" not in str(error.value)
        kind, line = eval_cli(["retrieval", "--random-init", "--data", data, "--test-data", test_data, *EVAL_FAST],
                              capsys)
        assert kind == "error"
        one_line(line, r"the test videos would be the training videos", r"--test-split", r"--test-data")
        assert "test_split" not in line and "test_data" not in line
