"""Reading the videos of an index: frame counts and headers, in threads, and the files that cannot be used.

Every file the index reads is read here, with :mod:`.video_io` (a demux, no decoding):
:func:`probe_all` for a video not seen before (its frame count, header and timestamps),
:func:`scan_all` to check a frame count a list gave, :func:`header_all` for the frame size,
codec and pixel format. An unreadable file is not an exception there but a
:class:`~.video_io.VideoError` in its place, which :func:`report_bad` raises or logs by the
bad-file policy.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from .video_io import VideoError, header, probe, scan

log = logging.getLogger(__name__)

BAD_FILE_POLICIES = ("skip", "error")
T = TypeVar("T")


def check_policy(bad_files: str) -> None:
    """Raise ``ValueError`` for a ``bad_files`` that is not one of :data:`BAD_FILE_POLICIES`."""
    if bad_files not in BAD_FILE_POLICIES:
        raise ValueError(f"bad_files={bad_files!r}; choose one of {BAD_FILE_POLICIES}")


def read_all(read: Callable[[str], T], paths: Sequence[str],
             threads: int) -> List[Tuple[Optional[T], Optional[VideoError]]]:
    """``read(path)`` of every path in ``threads`` threads, in order: ``(result, None)`` or ``(None, error)``."""
    def one(path):
        try:
            return read(path), None
        except VideoError as exc:
            return None, exc

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(one, paths))


def probe_all(paths: Sequence[str], threads: int):
    """:func:`~.video_io.probe` of every path: frame count, header and timestamp gaps (:func:`read_all`)."""
    return read_all(probe, paths, threads)


def scan_all(paths: Sequence[str], threads: int):
    """:func:`~.video_io.scan` of every path: ``(frame count, Media)`` read from the file (:func:`read_all`)."""
    return read_all(scan, paths, threads)


def header_all(paths: Sequence[str], threads: int):
    """:func:`~.video_io.header` of every path: frame size, codec and pixel format (:func:`read_all`)."""
    return read_all(header, paths, threads)


def report_bad(bad: List[VideoError], bad_files: str, origin: str) -> None:
    if not bad:
        return
    listing = "\n  ".join(str(e) for e in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    if bad_files == "error":
        raise VideoError(bad[0].path, f"{len(bad)} unusable videos in {origin}:\n  {listing}{more}",
                         "fix or remove them, or load with bad_files='skip'")
    log.warning("skipping %d unusable videos in %s:\n  %s%s", len(bad), origin, listing, more)
