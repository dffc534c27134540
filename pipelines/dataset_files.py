"""The text a dataset is given in: list lines, ``classes.txt``, split lists, and which files are videos.

A **file list** holds one video per line: ``path label [num_frames]``, or just ``path`` for an
unlabelled video (paths relative to the list's folder; ``#`` starts a comment; label ``-1``
means unlabelled). A **prepared dataset folder** (``motionssl-prepare``) holds
``classes.txt`` (one class name per line, the label is the line's position) and its split
lists: its other ``*.txt`` files.
"""
from __future__ import annotations

import os
import re
from typing import List

from .video_index import VideoIndex

VIDEO_EXTENSIONS = (".webm", ".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv")
NOT_SPLITS = ("classes.txt", "failed.txt")  # text files of a prepared dataset that are not splits


def parse_list_line(line: str, where: str):
    """``path [label [num_frames]]`` → (path, label, num_frames or None); paths may hold spaces.

    A line of a path alone (ending in a video extension) is an unlabelled video (label -1).
    """
    text = line.strip()
    parts = text.rsplit(maxsplit=2)
    if len(parts) == 3 and _is_int(parts[1]) and _is_int(parts[2]):
        path, label, frames = parts[0], int(parts[1]), int(parts[2])
    elif text.lower().endswith(VIDEO_EXTENSIONS):
        path, label, frames = text, -1, None
    else:
        parts = text.rsplit(maxsplit=1)
        if len(parts) != 2 or not _is_int(parts[1]):
            raise ValueError(f"{where}: expected `path [label [num_frames]]` (a video path, then optionally its "
                             f"label, -1 for none, and frame count), got {text!r}")
        path, label, frames = parts[0], int(parts[1]), None
    if frames is not None and frames <= 0:
        raise ValueError(f"{where}: num_frames must be positive, got {frames}")
    if label < -1:
        raise ValueError(f"{where}: label {label} is not a class id (0, 1, ...) nor -1 (unlabelled)")
    return path, label, frames


def _is_int(token: str) -> bool:
    return token.lstrip("-").isdigit()


def read_classes(path: str) -> List[str]:
    """The class names of a ``classes.txt`` (one per line; the label is the line's position)."""
    with open(path, encoding="utf-8-sig") as f:  # a byte order mark is not part of the first name
        names = [line.strip() for line in f if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: class names must be unique, {duplicates} appear more than once")
    return names


def looks_binary(path: str) -> bool:
    """Whether the first KiB of a file holds a NUL byte (a video or archive, not a text list)."""
    try:
        with open(path, "rb") as f:
            return b"\0" in f.read(1024)
    except OSError:
        return False


def safe_name(name: str) -> str:
    """A class or video name as a folder or file name: anything but letters, digits, ``._-`` → ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def list_line(index: VideoIndex, i: int) -> str:
    """``list:line`` naming video ``i`` of ``index`` when it was read from a list, else the video's path."""
    listed = index.stats.get("list")
    if listed:
        base = os.path.dirname(os.path.abspath(listed))
        with open(listed, encoding="utf-8-sig", errors="surrogateescape") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    path = parse_list_line(line, "")[0]
                except ValueError:
                    continue
                if os.path.join(base, path) == index.paths[i]:
                    return f"{listed}:{lineno}"
    return index.paths[i]


def split_lists(root: str) -> List[str]:
    """Names of the split lists of a dataset folder (its ``*.txt`` files but ``classes.txt`` and ``failed.txt``)."""
    return sorted(f[:-4] for f in os.listdir(root) if f.endswith(".txt") and f not in NOT_SPLITS)


def is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS) and not os.path.basename(name).startswith(".")
