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

from motionssl import evaluate, train
from motionssl.pipelines import demo, files
from motionssl.pipelines import prepare as prep
from motionssl.pipelines.index import load_pair
from motionssl.pipelines.video_io import write_video
from tests.fixtures import damage_packet, textured_frames, write_audio_only, write_raw

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
    (root / "good.txt").write_text("\n".join(good) + "\n")
    for bad in ("empty.webm", "truncated.webm", "text.webm", "audio.mkv", "damaged.mp4", "odd.webm", "vfr.mkv",
                "tenbit.mp4"):
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
    for folder, names in ((full, ("jump", "run", "walk")), (part, ("walk",))):
        for k, name in enumerate(names):
            (folder / name).mkdir(parents=True)
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
                                  "--num-workers", "0", "--device", "cpu"], caplog)
    assert got.kind == "ok", got.message
    assert in_flight.read_bytes() == b"the run is writing this"


def test_eval_names_a_video_given_as_data(media, capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["retrieval", "--random-init", "--data", str(media / "good0.webm"), "--test-data",
                       str(media / "good.txt"), "--device", "cpu"])
    assert exit_.value.code == 2
    one_line(capsys.readouterr().err, r"good0\.webm is a video")


# --- generated data: never written over a user's folder -------------------------------------------
def test_demo_refuses_a_folder_with_the_users_files(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "file.bin").write_bytes(b"\x00\x01")
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--out", str(out), "--per-class", "2", "--test-per-class", "1", "--workers", "1"])
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
        prep.prepare("folder", source, out, workers=1, progress=False)
    one_line(str(exit_.value.code), r"out already holds files \(notes\.txt\)")
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
    run = subprocess.run([sys.executable, "-m", "motionssl.pipelines.prepare", "folder", "--src", str(source), "--out", str(out),
                          "--workers", "1"], cwd=ROOT, capture_output=True, text=True, preexec_fn=_limited(200),
                         timeout=300)
    assert run.returncode != 0
    one_line(run.stderr.strip(), r"^prepare: error: File too large .*all\.txt.*run the same command again")
    assert (out / "failed.txt").exists() and not glob.glob(str(out / "*.tmp*"))


def test_prepare_and_demo_say_one_line_when_the_folder_cannot_be_made(source, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as exit_:
        prep.main(["folder", "--src", str(source), "--out", str(a_file / "out")])
    one_line(str(exit_.value.code), r"cannot write --out .*file/out")
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--out", str(a_file / "demo"), "--per-class", "2", "--test-per-class", "1"])
    one_line(str(exit_.value.code), r"pipelines\.demo: error: .*file")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["demo", "prepare"])
def test_ctrl_c_stops_with_one_line_and_keeps_nothing_half_written(command, source, tmp_path):
    out = tmp_path / "out"
    if command == "demo":
        cmd = [sys.executable, "-m", "motionssl.pipelines.demo", "--out", str(out), "--per-class", "40", "--workers", "2"]
        started = lambda: glob.glob(str(out) + ".tmp*/videos/*/*.webm")  # noqa: E731
    else:
        for v in range(4, 40):
            shutil.copy(source / "walk" / "walk_0.avi", source / "walk" / f"walk_{v}.avi")
        cmd = [sys.executable, "-m", "motionssl.pipelines.prepare", "folder", "--src", str(source), "--out", str(out),
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
