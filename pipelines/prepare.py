"""Turn a downloaded video dataset into short-GOP files and index lists the pipelines read fast.

:func:`prepare` does the work; ``motionssl-prepare`` (:mod:`motionssl.prepare`) is its command::

    motionssl-prepare ucf101   --src UCF-101 --splits ucfTrainTestlist --out data/ucf101
    motionssl-prepare hmdb51   --src hmdb51  --splits testTrainMulti_7030_splits --out data/hmdb51
    motionssl-prepare kinetics --src k400/videos --splits k400/annotations --out data/k400 --short-side 256
    motionssl-prepare folder   --src my_videos --out data/mine          # my_videos/<class>/<video>
    motionssl-prepare folder   --src my_clips --out data/clips          # my_clips/<video>: unlabelled (-1)

Why: UCF-101 and HMDB-51 ship as xvid AVI, which DALI's CPU decoder cannot read at all
and NVDEC reads unreliably; Kinetics ships as H.264 of mixed sizes with long keyframe
intervals, so every random window decodes from a distant keyframe (docs/design.md, "DALI facts").
Every input is stream-decoded with PyAV (one frame in memory at a time), turned upright
where its display matrix says so (a phone's video; the output carries no matrix), optionally
resized, and re-encoded with a keyframe every ``--gop`` frames (default 16), even width
and height, and no audio stream.

Codecs (``--codec``):

* ``vp9`` (default, ``.webm``, libvpx-vp9): the only choice that both DALI decoders read —
  CPU (``fn.decoders.video(device="cpu")``) and GPU (NVDEC) — so one prepared copy serves
  laptops, CI and GPU servers.
* ``h264`` (``.mp4``, libx264): encodes faster and NVDEC decodes it faster, but DALI's CPU
  decoder cannot read it (the PyAV source still can). Pick it for GPU-only training.

Output layout (the contract the rest of the toolkit reads)::

    OUT/videos/<class>/<stem>.<webm|mp4>   converted videos (OUT/videos/<stem>.<ext> when unlabelled)
    OUT/classes.txt                        one class name per line; label = 0-based line number
                                           (empty for unlabelled videos, whose label is -1)
    OUT/train_split{k}.txt, test_split{k}.txt   UCF-101 and HMDB-51, k = 1..3
    OUT/train.txt, val.txt, test.txt       Kinetics (those splits its CSVs have), folder with --splits
    OUT/all.txt                            every converted video
    OUT/prepare_report.json                summary and every failure with its reason
    OUT/failed.txt                         ``src_path<TAB>reason`` per failed input
    OUT/.manifest.jsonl                    finished outputs (makes re-runs free)

Index lines are ``path label num_frames``: the path is relative to OUT, the label indexes
``classes.txt`` and ``num_frames`` is the frame count of the output file. Class folder
and file names are made whitespace-free (anything but letters, digits, ``.``, ``_`` and
``-`` becomes ``_``) because DALI file lists split on whitespace; ``classes.txt`` keeps
the original names (Kinetics' "air drumming").

Every output is verified (opens, first and last frames decode) before it counts. Inputs
that fail — unreadable, empty, not a video, no frames, listed in a split file but missing
on disk — are skipped and reported, never fatal; only when every input fails does the
command exit non-zero, naming the most common reason. What stops a whole run before any
conversion (an argument, a split file, the output folder) is raised as a
:class:`~.errors.MotionSSLError` naming it in the command's words (``--src``, ``--out``...).
A run can be interrupted and started again: finished outputs are recorded in the manifest
and skipped without any decoding.
Nothing under ``--src`` is ever written: the output folder must lie outside it.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import av
from tqdm import tqdm

from . import files
from .datasets import DATASETS, Dataset, Item
from .errors import DataError, DataNotFoundError, OptionError
from .dataset_files import safe_name
from .video_io import (VideoError, check_decoding, checked_frames, decoder_errors, frame_timestamps, open_video,
                       probe, rotation)
from .workers import pool as worker_pool

MANIFEST = ".manifest.jsonl"
ALL_INDEX = "all"


@dataclass(frozen=True)
class Codec:
    """How one ``--codec`` choice is written."""

    encoder: str
    extension: str
    container: str
    default_crf: int
    crf_range: Tuple[int, int]  # the encoder's quality range, best first
    options: Tuple[Tuple[str, str], ...]


# libvpx realtime/cpu-used 8 is ~6x faster than "good"/cpu-used 5 at ~1.5x the size: on a
# dataset of thousands of clips the encode time is what users feel. Realtime mode also
# makes no alt-ref (hidden) frames, so every packet is one displayed frame.
CODECS: Dict[str, Codec] = {
    "vp9": Codec("libvpx-vp9", ".webm", "webm", 32, (0, 63),
                 (("deadline", "realtime"), ("cpu-used", "8"), ("row-mt", "1"), ("b", "0"))),
    "h264": Codec("libx264", ".mp4", "mp4", 23, (0, 51), (("preset", "veryfast"),)),
}


# --------------------------------------------------------------------------- conversion


def output_size(width: int, height: int, short_side: Optional[int]) -> Tuple[int, int]:
    """Target (width, height): short side scaled to ``short_side`` (aspect kept), both even.

    H.264 and 4:2:0 chroma need even sizes; rounding to the nearest even number changes
    the aspect by at most one pixel.
    """
    def even(x: float) -> int:  # nearest even number, halves up (round() would send 33 to 32)
        return max(2, 2 * int(x / 2 + 0.5))

    if short_side is None:
        return max(2, width - width % 2), max(2, height - height % 2)
    scale = short_side / min(width, height)
    return even(width * scale), even(height * scale)


@dataclass(frozen=True)
class Job:
    """One conversion, as sent to a worker process (plain data, so it pickles)."""

    src: str
    dst: str
    codec: str
    short_side: Optional[int]
    gop: int
    crf: int
    threads: int
    existing: bool  # dst exists without a manifest record: verify it instead of converting


@dataclass
class Result:
    """What a worker reports back; ``status`` is ``converted``, ``verified`` or ``failed``."""

    src: str
    status: str
    num_frames: int = 0
    fps: float = 0.0
    bytes: int = 0
    reason: str = ""


def _transcode(job: Job, tmp: str) -> None:
    """Stream-decode ``job.src``, resize, and encode to ``tmp``; one frame in memory at a time.

    A source whose decoder reports damaged data fails (and is listed in failed.txt) instead
    of being converted into wrong frames. Frames are re-timed at a constant rate, so a gap
    in the source's timestamps (a frame dropped at the source) is not an error here.
    """
    with decoder_errors() as errors:
        count, codec = _transcode_frames(job, tmp, errors)
    if errors:
        raise VideoError(job.src, f"the decoder reported damaged data ({'; '.join(errors[:3])})",
                         "re-download it, or remove it from the split files")
    if count == 0:
        raise VideoError(job.src, "no frame could be decoded", "re-download it or remove it from the split files")
    if codec in COUNTED_CODECS:
        stored = len(frame_timestamps(job.src))
        if count != stored:  # frames the decoder dropped without a word
            raise VideoError(job.src, f"damaged: {count} frames decoded of the {stored} the stream holds",
                             "re-download it, or remove it from the split files")


# Codecs whose packets are whole frames in every container the datasets use, so a decoded
# count below the packet count is damage. Not MPEG-4 part 2: xvid AVIs pack two frames into
# one packet ("packed B-frames"), whose decoded and stored counts may legitimately differ.
COUNTED_CODECS = frozenset({"h264", "hevc"})


# FFmpeg's filters that turn a frame counter-clockwise by each display rotation (video_io.display_rotation).
TURN_FILTERS = {90: (("transpose", "cclock"),), 180: (("hflip", ""), ("vflip", "")), 270: (("transpose", "clock"),)}


def _turner(turn: int, width: int, height: int, rate: Fraction):
    """``frame -> frame`` turning ``width``×``height`` yuv420p frames ``turn`` degrees counter-clockwise, in YUV."""
    graph = av.filter.Graph()
    node = graph.add_buffer(width=width, height=height, format="yuv420p", time_base=1 / rate)
    for name, args in TURN_FILTERS[turn]:
        step = graph.add(name, args)
        node.link_to(step)
        node = step
    node.link_to(graph.add("buffersink"))
    graph.configure()

    def turn(frame):
        graph.push(frame)
        return graph.pull()

    return turn


def _transcode_frames(job: Job, tmp: str, errors: List[str]) -> Tuple[int, str]:
    """``(frames written, source codec)``; frames the decoder marks corrupt are recorded in ``errors``.

    A source whose display matrix turns its frames (a phone's video: −90°) is written
    upright, its frames turned (:func:`..video_io.display_rotation`), and the output carries
    no display matrix: nothing is left to turn it again. Its size is the displayed size.
    """
    codec = CODECS[job.codec]
    turn = rotation(job.src)
    with contextlib.closing(open_video(job.src)) as inp:
        stream = inp.streams.video[0]
        # Decoded single-threaded: this runs under decoder_errors, whose log callback can
        # deadlock against decoder threads (see there). The encoder keeps job.threads.
        stream.codec_context.thread_count = 1
        coded = stream.codec_context.width, stream.codec_context.height
        width, height = output_size(*(coded[::-1] if turn in (90, 270) else coded), job.short_side)
        # Frames are re-timed at a constant rate: the pipelines index frames, not seconds,
        # and a constant rate keeps num_frames / fps an honest duration.
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25).limit_denominator(1001)
        with av.open(tmp, mode="w", format=codec.container) as out:
            options = dict(codec.options, crf=str(job.crf))
            ostream = out.add_stream(codec.encoder, rate=rate, options=options)
            ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
            ostream.codec_context.gop_size = job.gop
            ostream.codec_context.thread_count = job.threads
            count = 0
            # Resized as stored, then turned: the turn moves pixels, it does not filter them.
            stored = (height, width) if turn in (90, 270) else (width, height)
            turn_upright = _turner(turn, *stored, rate) if turn else None
            for frame in checked_frames(inp.decode(stream), errors):
                image = frame.reformat(width=stored[0], height=stored[1], format="yuv420p", interpolation="AREA")
                image.pts, image.time_base = count, 1 / rate
                if turn_upright:
                    image = turn_upright(image)
                count += 1
                for packet in ostream.encode(image):
                    out.mux(packet)
            for packet in ostream.encode():
                out.mux(packet)
        return count, stream.codec_context.name


def _verify(path: str, codec: str):
    """Decode every frame of ``path`` with the decoder's error checks; return its probe info.

    An output of this tool has a constant frame rate, so a gap in its timestamps is damage.
    """
    info = probe(path)
    if info.codec != codec:
        raise VideoError(path, f"is {info.codec}, expected {codec}", "delete it so it is converted again")
    check_decoding(path)
    return info


def convert(job: Job) -> Result:
    """The worker: convert (or verify an existing) output; every failure becomes a reason."""
    tmp = str(Path(job.dst).with_name(f".{Path(job.dst).name}.part"))
    try:
        if job.existing:
            try:
                info = _verify(job.dst, job.codec)
                return Result(job.src, "verified", info.num_frames, info.fps, os.path.getsize(job.dst))
            except VideoError:
                pass  # a broken leftover (e.g. from another tool): convert again
        probe(job.src)  # names empty, non-video or frameless inputs before any encoding
        os.makedirs(os.path.dirname(job.dst), exist_ok=True)
        _transcode(job, tmp)
        info = _verify(tmp, job.codec)
        os.replace(tmp, job.dst)  # only verified files ever carry the final name
        return Result(job.src, "converted", info.num_frames, info.fps, os.path.getsize(job.dst))
    except VideoError as exc:
        return Result(job.src, "failed", reason=exc.reason)
    except Exception as exc:  # one odd file must not end a run over thousands
        return Result(job.src, "failed", reason=f"{exc.__class__.__name__}: {exc}".replace("\n", " "))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------- bookkeeping


def _load_manifest(out: Path) -> Dict[str, dict]:
    """Finished outputs by relative path; a torn last line (interrupted run) is ignored."""
    records = {}
    path = out / MANIFEST
    if path.exists():
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                    records[record["video"]] = record
                except (json.JSONDecodeError, KeyError):
                    continue
    return records


def write_indexes(out: Path, dataset: Dataset, done: Dict[Path, Tuple[str, int]]) -> Dict[str, int]:
    """Write ``classes.txt`` and one ``path label num_frames`` list per index; return line counts.

    ``done`` maps each converted input to (output path relative to ``out``, frame count).
    Lines keep the order of the split files; failed inputs are left out.
    """
    files.write_text(str(out / "classes.txt"), "".join(f"{c}\n" for c in dataset.classes))
    label_of = {c: i for i, c in enumerate(dataset.classes)}
    counts = {}
    for name in dataset.index_names + [ALL_INDEX]:
        lines = [f"{done[item.src][0]} {label_of.get(item.class_name, -1)} {done[item.src][1]}\n"
                 for item in dataset.items
                 if item.src in done and (name == ALL_INDEX or name in item.splits)]
        files.write_text(str(out / f"{name}.txt"), "".join(lines))
        counts[name] = len(lines)
    return counts


def _check_locations(src: Path, out: Path) -> None:
    """Refuse output folders that overlap the source tree, so --src is never written to."""
    if not src.is_dir():
        raise DataNotFoundError(f"--src {src} is not a folder; point it at the unpacked dataset")
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents or o in s.parents:
        raise OptionError(f"--out {out} overlaps --src {src}; choose an output folder outside the source tree "
                          "(and not containing it): prepare never writes under --src")


# --------------------------------------------------------------------------- driver


def prepare(dataset: str, src, out, splits=None, codec: str = "vp9", short_side: Optional[int] = None,
            gop: int = 16, crf: Optional[int] = None, workers: Optional[int] = None,
            progress: bool = True) -> dict:
    """Convert a dataset and write its index files; return the summary written to the report.

    Arguments mirror the command line, and so do the messages. Errors in the arguments raise an
    :class:`~.errors.OptionError`, in the dataset or its split files a :class:`~.errors.DataError`
    (:class:`~.errors.DataNotFoundError` for a missing ``--src``), with the output folder a
    :class:`~.files.FolderError`, all before anything is written; failures of single videos are
    reported, not raised. Ctrl-C during the conversions is an :class:`Interrupted` saying what
    was kept.
    """
    if dataset not in DATASETS:
        raise OptionError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if codec not in CODECS:
        raise OptionError(f"unknown --codec {codec!r}; choose one of {', '.join(CODECS)}")
    for flag, value in (("--short-side", short_side), ("--gop", gop), ("--workers", workers)):
        if value is not None and value < 1:
            raise OptionError(f"{flag} must be a positive integer, got {value}")
    low, high = CODECS[codec].crf_range
    if crf is not None and not low <= crf <= high:
        raise OptionError(f"--crf {crf} is outside {codec}'s range, {low} to {high} (lower is better and larger)")
    src, out = Path(os.path.abspath(src)), Path(os.path.abspath(out))
    _check_locations(src, out)
    found = DATASETS[dataset](src, Path(os.path.abspath(splits)) if splits else None)
    crf = CODECS[codec].default_crf if crf is None else crf

    # Output names: videos/<class>/<stem><ext>; two inputs must never share one.
    target: Dict[Path, str] = {}
    owner: Dict[str, Path] = {}
    for item in found.items:
        folder = "" if item.class_name is None else f"{safe_name(item.class_name)}/"  # unlabelled: videos/<stem>
        rel = f"videos/{folder}{safe_name(item.src.stem)}{CODECS[codec].extension}"
        if rel in owner:
            raise DataError(f"{item.src} and {owner[rel]} would both be written to {rel}; rename one of them")
        owner[rel], target[item.src] = item.src, rel

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise files.FolderError(f"cannot write --out {out} ({exc.strerror or exc}); choose a folder you can "
                                "write") from None
    if not (out / MANIFEST).exists():  # not an output of this tool: never mixed into
        files.refuse_foreign(str(out), "an output of `motionssl-prepare`")
        (out / MANIFEST).touch()  # the folder is an output of this tool from now on
    lock = files.FolderLock(str(out), "motionssl-prepare")
    try:
        lock.acquire()
    except (files.FolderError, OSError) as exc:
        raise files.FolderError(f"cannot lock --out {out}: {exc}") from None
    try:
        return _prepare(dataset, found, src, out, target, codec, short_side, gop, crf, workers, progress)
    finally:
        lock.release()


def _prepare(dataset: str, found: Dataset, src: Path, out: Path, target: Dict[Path, str], codec: str,
             short_side: Optional[int], gop: int, crf: int, workers: Optional[int], progress: bool) -> dict:
    """The conversion itself, with ``out`` created and locked (see :func:`prepare`)."""
    settings = {"codec": codec, "short_side": short_side, "gop": gop, "crf": crf}
    _remove_partials(out)  # from a run that was killed
    books = _Books(src, out, target, settings, _load_manifest(out))
    pending = books.sort(found.items)
    workers = min(workers or os.cpu_count() or 1, max(1, len(pending)))
    # Split the cores between workers: with fewer videos than cores, the codecs thread.
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [Job(str(item.src), str(out / target[item.src]), codec, short_side, gop, crf, threads,
                existing=(out / target[item.src]).is_file() and target[item.src] not in books.manifest)
            for item in pending]
    started = time.perf_counter()
    if jobs:
        _convert_all(jobs, books, {str(item.src): item.src for item in pending}, workers, f"prepare {dataset}",
                     progress)
    return _report(dataset, found, books, time.perf_counter() - started)


@dataclass
class _Books:
    """What one run of :func:`_prepare` knows of its inputs: the manifest, what is done, what failed, the counts."""

    src: Path
    out: Path
    target: Dict[Path, str]  # input → its output, relative to out
    settings: dict
    manifest: Dict[str, dict]  # finished outputs by relative path (_load_manifest)
    done: Dict[Path, Tuple[str, int]] = field(default_factory=dict)  # input → (output, frame count)
    failures: List[Tuple[str, str]] = field(default_factory=list)  # (input, reason)
    redo: Set[str] = field(default_factory=set)  # outputs converted again: their source changed
    converted: int = 0
    redone: int = 0
    skipped: int = 0

    def sort(self, items: List[Item]) -> List[Item]:
        """The inputs to convert; those already done go to ``done`` (and ``skipped``), missing ones to ``failures``."""
        pending: List[Item] = []
        for item in items:
            rel, dst = self.target[item.src], self.out / self.target[item.src]
            record = self.manifest.get(rel)
            if not item.src.is_file():
                listed = f" (listed in {next(iter(item.splits.values()))})" if item.splits else ""
                self.failures.append((str(item.src), f"file not found{listed}"))
            # Done = recorded with these settings, from this source as it is now (size and modification
            # time), and still the recorded size: no decoding needed. A changed source is converted again.
            elif (record and record["src"] == str(item.src.relative_to(self.src))
                  and record["settings"] == self.settings and dst.is_file() and dst.stat().st_size == record["bytes"]):
                if _source_stamp(item.src) == record.get("source", _source_stamp(item.src)):
                    self.done[item.src] = (rel, record["num_frames"])
                else:
                    self.redo.add(rel)
                    pending.append(item)
            else:
                pending.append(item)
        self.skipped = len(self.done)
        return pending

    def book(self, result: Result, item_src: Path, manifest_file) -> None:
        """Count one conversion's result; a finished one is written to the manifest at once."""
        if result.status == "failed":
            self.failures.append((result.src, result.reason))
            return
        rel = self.target[item_src]
        manifest_file.write(json.dumps({
            "video": rel, "src": str(item_src.relative_to(self.src)), "source": _source_stamp(item_src),
            "settings": self.settings, "num_frames": result.num_frames, "fps": result.fps,
            "bytes": result.bytes}) + "\n")
        manifest_file.flush()
        self.done[item_src] = (rel, result.num_frames)
        self.manifest[rel] = {"num_frames": result.num_frames, "fps": result.fps, "bytes": result.bytes}
        self.converted += result.status == "converted"
        self.redone += result.status == "converted" and rel in self.redo
        self.skipped += result.status == "verified"


def _convert_all(jobs: List[Job], books: _Books, src_of: Dict[str, Path], workers: int, desc: str,
                 progress: bool) -> None:
    """Run ``jobs`` in ``workers`` processes, booking each result as it arrives (``src_of``: a job's input)."""
    bar = tqdm(total=len(jobs), unit="video", desc=desc, disable=not progress)
    # spawn, not fork: the caller may have DALI or CUDA threads that a fork would copy
    # half-initialised. Results arrive as they finish, so the manifest grows line by line
    # and an interrupted run loses at most the videos in flight. The workers leave Ctrl-C
    # to this process, which stops them and says so in one line.
    pool = worker_pool(workers, "spawn") if workers > 1 else None
    results = pool.imap_unordered(convert, jobs) if pool else map(convert, jobs)
    try:
        with open(books.out / MANIFEST, "a") as manifest_file:
            for result in results:
                bar.update()
                books.book(result, src_of[result.src], manifest_file)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {books.converted} videos converted in this run are kept in {books.out}; run "
                          "the same command again to finish") from None
    finally:
        bar.close()
        if pool:
            pool.terminate()
            pool.join()
            _remove_partials(books.out)  # of the conversions the terminated workers left midway


def _report(dataset: str, found: Dataset, books: _Books, seconds: float) -> dict:
    """The run's summary, written with ``failed.txt``, the index lists and ``prepare_report.json``."""
    records = [books.manifest[rel] for rel, _ in books.done.values()]
    out, converted, failures = books.out, books.converted, books.failures
    summary = {
        "dataset": dataset, "src": str(books.src), "out": str(out), **books.settings,
        "classes": len(found.classes), "videos": len(found.items),
        "converted": converted, "redone": books.redone, "skipped": books.skipped, "failed": len(failures),
        "hours": sum(r["num_frames"] / r["fps"] for r in records if r["fps"]) / 3600,
        "disk_bytes": sum(r["bytes"] for r in records),
        "seconds": seconds, "videos_per_s": converted / seconds if converted else 0.0,
        "failures": [{"src": s, "reason": r} for s, r in sorted(failures)],
    }
    # Failures first: the smallest file and the one a user needs when the disk fills up.
    files.write_text(str(out / "failed.txt"), "".join(f"{s}\t{r}\n" for s, r in sorted(failures)))
    summary["indexes"] = write_indexes(out, found, books.done)
    files.write_text(str(out / "prepare_report.json"), json.dumps(summary, indent=2) + "\n")
    return summary


def _remove_partials(out: Path) -> None:
    """Remove the ``.<name>.part`` files conversions write before renaming (see :func:`convert`): ours alone."""
    for leftover in (out / "videos").rglob(".*.part"):
        leftover.unlink()


class Interrupted(Exception):
    """Ctrl-C during a conversion; the message says what was kept."""


def _source_stamp(path: Path) -> List[int]:
    """``[size, modification time in ns]`` of a source: a source that changes is converted again."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


if __name__ == "__main__":  # the command is the application's now
    import sys

    print("motionssl.pipelines.prepare is a library module; its command is `motionssl-prepare`", file=sys.stderr)
    sys.exit(2)
