"""``motionssl-prepare``: convert a downloaded video dataset for the pipelines (:mod:`motionssl.pipelines.prepare`).

::

    motionssl-prepare ucf101   --src UCF-101 --splits ucfTrainTestlist --out data/ucf101
    motionssl-prepare folder   --src my_videos --out data/mine          # my_videos/<class>/<video>

The conversion, the output layout and the resuming are the library's; this is the command:
its options, the summary it prints, its one-line errors (``prepare: error: ...``, status 1)
and Ctrl-C (status 130, what was converted is kept).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

from motionssl.console import console_script
from motionssl.pipelines import environment
from motionssl.pipelines.datasets import DATASETS
from motionssl.pipelines.decoders.dali import DALI_CPU_CODECS
from motionssl.pipelines.errors import MotionSSLError
from motionssl.pipelines.prepare import CODECS, Interrupted, prepare


def fail(message: str):
    """Stop with a message for the user (no traceback): what is wrong and what to do."""
    raise SystemExit(f"prepare: error: {message}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="motionssl-prepare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a video dataset to short-GOP VP9/H.264 files plus index lists\n"
                    "(`path label num_frames`) that the pipelines read directly.",
        epilog="examples:\n"
               "  motionssl-prepare ucf101 --src UCF-101 --splits ucfTrainTestlist --out data/ucf101\n"
               "  motionssl-prepare hmdb51 --src hmdb51 --splits testTrainMulti_7030_splits "
               "--out data/hmdb51\n"
               "  motionssl-prepare kinetics --src k400 --splits k400/annotations --out data/k400 "
               "--short-side 256\n"
               "  motionssl-prepare folder --src my_videos --out data/mine\n\n"
               "output: OUT/videos/<class>/*, OUT/classes.txt, OUT/<split>.txt, OUT/all.txt,\n"
               "OUT/prepare_report.json, OUT/failed.txt. Re-running skips finished videos.")
    parser.add_argument("dataset", choices=list(DATASETS),
                        help="layout of --src: ucf101, hmdb51, kinetics (CSV annotations) or folder "
                             "(SRC/<class>/<video>, or SRC/<video> for videos without labels)")
    parser.add_argument("--src", required=True, metavar="DIR",
                        help="the downloaded dataset (read only, never modified)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder; must lie outside --src")
    parser.add_argument("--splits", metavar="DIR_OR_CSV",
                        help="split files: ucf101 the ucfTrainTestlist folder (default SRC/ucfTrainTestlist "
                             "or SRC); hmdb51 the folder of <class>_test_split<k>.txt (default "
                             "SRC/testTrainMulti_7030_splits or SRC); kinetics a CSV or folder of CSVs "
                             "(default SRC); folder a folder with train.txt/val.txt/test.txt (optional)")
    parser.add_argument("--codec", choices=list(CODECS), default="vp9",
                        help="vp9 (.webm): DALI decodes it on CPU and GPU (default); h264 (.mp4): faster "
                             "to encode and on NVDEC, but GPU-only in DALI")
    parser.add_argument("--short-side", type=int, metavar="N",
                        help="resize so the short side is N pixels (aspect kept, rounded to even); "
                             "default: keep the size (rounded down to even)")
    parser.add_argument("--gop", type=int, default=16, metavar="N",
                        help="keyframe interval in frames (default 16); a random window decodes at most "
                             "this many extra frames")
    parser.add_argument("--crf", type=int, metavar="Q",
                        help="quality: lower is better and larger (vp9 0 to 63, default 32; h264 0 to 51, "
                             "default 23)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="parallel conversions (default: the number of CPUs)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    try:
        summary = prepare(args.dataset, args.src, args.out, splits=args.splits, codec=args.codec,
                          short_side=args.short_side, gop=args.gop, crf=args.crf, workers=args.workers)
    except MotionSSLError as exc:  # an argument, the dataset's split files, the output folder: before any work
        fail(str(exc))
    except Interrupted as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # outside the conversions: while scanning --src, or writing the lists at the end
        print(f"prepare: interrupted; what was converted is kept in {args.out} — run the same command again to "
              "finish", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as exc:  # a full disk, a folder that became unwritable
        if environment.debug():
            raise
        fail(f"{exc.strerror or exc} ({exc.filename or args.out}); the videos converted so far are kept — free "
             "the space (or fix the folder) and run the same command again")
    report(summary, args.codec)
    return summary


def report(summary: dict, codec: str) -> None:
    """What the conversion did, in a few lines; every video failing is an error naming the most common reason."""
    redone = f" ({summary['redone']} of them again: their source changed)" if summary["redone"] else ""
    print(f"converted {summary['converted']}{redone}, skipped {summary['skipped']} (already done), "
          f"failed {summary['failed']}; {summary['hours']:.2f} h of video, "
          f"{human_bytes(summary['disk_bytes'])} on disk, {summary['videos_per_s']:.2f} videos/s "
          f"({summary['seconds']:.1f} s)")
    failed = Path(summary["out"]) / "failed.txt"
    if summary["failed"] and summary["failed"] == summary["videos"]:
        reasons = Counter(f["reason"].replace(f["src"], "") for f in summary["failures"])  # less the file's name
        common, count = reasons.most_common(1)[0]
        example = next(f for f in summary["failures"] if f["reason"].replace(f["src"], "") == common)
        every = "the one video" if summary["videos"] == 1 else f"all {summary['videos']} videos"
        fail(f"{every} failed; the most common reason ({count} of them), e.g. {example['src']}: {example['reason']}; "
             f"every failure and its reason: {failed}")
    if summary["failed"]:
        print(f"failures and their reasons: {failed}")
    if codec not in DALI_CPU_CODECS:
        print(f"note: DALI's CPU decoder cannot read {codec}; decode it on the GPU or with the PyAV source")
    print(f"index files: {', '.join(f'{n}.txt ({c})' for n, c in summary['indexes'].items())} "
          f"in {summary['out']}")


cli = console_script(__name__)  # ``motionssl-prepare``


if __name__ == "__main__":
    main()
