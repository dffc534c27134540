"""Reading a dataset into a :class:`~.video_index.VideoIndex`: :func:`load_index` and one reader per form.

Each reader lists ``(path, label, frame count or None)`` rows — of a prepared dataset's split
list, a file list, a folder of class sub-folders or of loose videos, a glob, a list of paths
— and :func:`index_rows` fills in the frame counts the rows lack, from the cache
(:mod:`.index_cache`) or by probing the files (:mod:`.probing`), and applies the bad-file
policy. The forms are described in :mod:`.index`.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from typing import List, Optional, Sequence, Union

import numpy as np

from .dataset_files import (VIDEO_EXTENSIONS, is_video, list_line, looks_binary, parse_list_line, read_classes,
                            safe_name, split_lists)
from .deprecation import renamed
from .errors import DataError, ours
from .index_cache import cache_path, lookup, read_cache, remember, save_cache
from .probing import check_policy, probe_all, report_bad
from .video_index import VideoIndex
from .video_io import Media, VideoError

log = logging.getLogger(__name__)


Data = Union[str, "os.PathLike[str]", Sequence[str]]
"""What :func:`load_index` reads: a folder, a list file, a glob pattern, or a list/tuple of video paths."""


@ours(value_error=DataError)
@renamed(source="data")
def load_index(data: Data, split: Optional[str] = None, bad_files: str = "skip",
               num_probe_threads: int = 8) -> VideoIndex:
    """The index of ``data``: every video's path, label (``-1``: unlabelled) and frame count.

    Parameters
    ----------
    data : str, os.PathLike, or list/tuple of str
        A folder of class sub-folders (``root/<class>/<video>``, labelled by the sorted
        class names), a folder of videos without classes (``root/<video>``, unlabelled),
        a prepared dataset folder (``motionssl-prepare``; give ``split``), a
        file list of ``path [label [num_frames]]`` lines, a glob pattern (``"clips/**/*.mp4"``,
        unlabelled), or a list or tuple of video paths (unlabelled).
    split : str, optional
        The split list of a prepared dataset folder (``"train_split1"``, ``"test"``,
        ``"train_split1.txt"``). Default ``None``: its ``all`` list; any other input has no
        splits, and a split given for it is an error.
    bad_files : {"skip", "error"}, default "skip"
        A video that is missing or cannot be read: ``"skip"`` leaves it out with a logged
        warning naming it, ``"error"`` raises :class:`~.video_io.VideoError` naming it.
    num_probe_threads : int, default 8
        Threads that read frame counts and headers of videos not yet in the cache.

    Returns
    -------
    VideoIndex
        The videos in a fixed order (sorted names for folders and globs, the list's order
        otherwise). Frame counts are cached in ``$MOTIONSSL_CACHE`` (else
        ``~/.cache/motionssl``), so a second load reads no video.

    Raises
    ------
    FileNotFoundError
        ``data`` does not exist, or a glob matches nothing.
    ValueError
        ``data`` holds no usable video, is a video file itself, mixes loose videos and class
        sub-folders, or has a malformed list line; or ``split`` cannot apply.
    VideoError
        An unusable video with ``bad_files="error"``.
    """
    check_policy(bad_files)
    if isinstance(data, (list, tuple)):
        _no_split(split, "a list of video paths")
        return _load_paths(list(data), bad_files, num_probe_threads, origin=f"the list of {len(data)} paths")
    source = os.fspath(data)
    if not os.path.exists(source) and re.search(r"[*?[]", source):
        _no_split(split, f"the glob pattern {source}")
        return _load_glob(source, bad_files, num_probe_threads)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: no such dataset folder or file list")
    if os.path.isdir(source):
        return _load_dir(source, split, bad_files, num_probe_threads)
    return _load_file(source, split, bad_files, num_probe_threads)


def _load_dir(source: str, split: Optional[str], bad_files: str, threads: int) -> VideoIndex:
    """A prepared dataset folder (a split of it), or a folder of class sub-folders or of videos (no split)."""
    if os.path.exists(os.path.join(source, "classes.txt")) or (split is not None and split_lists(source)):
        return _load_prepared(source, split, bad_files, threads)
    if split is not None:
        kind = "videos" if any(is_video(n) for n in os.listdir(source)) else "class sub-folders"
        raise ValueError(f"{source} is a folder of {kind}, which has no splits, so split={split!r} cannot apply: "
                         "drop the split to use every video, or write split lists with "
                         f"`motionssl-prepare folder --src {source} --out DIR --splits LISTS`")
    return _load_folder(source, bad_files, threads)


def _load_file(source: str, split: Optional[str], bad_files: str, threads: int) -> VideoIndex:
    """A file list (no split); a video or other binary file is no dataset."""
    if source.lower().endswith(VIDEO_EXTENSIONS) or looks_binary(source):
        raise ValueError(f"{source} is a video (or other binary) file, not a dataset: give a folder of class "
                         "sub-folders (root/<class>/<video>), a prepared dataset folder (motionssl-prepare) "
                         "or a text list of `path label [num_frames]` lines")
    if split is not None:
        raise ValueError(f"{source} is a file list, so split={split!r} cannot apply: splits are the lists of a "
                         "prepared dataset folder (pass the folder), or pass each list file itself")
    return _load_list(source, bad_files, threads)


def _load_prepared(root: str, split: Optional[str], bad_files: str, threads: int) -> VideoIndex:
    lists = split_lists(root)
    if split is None:
        split = "all" if "all" in lists else None
    if split is None:
        raise ValueError(f"{root}: a prepared dataset needs a split; choose one of {lists}")
    name = split[:-4] if split.endswith(".txt") else split
    if name not in lists:
        raise ValueError(f"{root}: no split {split!r}; choose one of {lists}")
    index = _load_list(os.path.join(root, name + ".txt"), bad_files, threads)
    index.stats["split"] = name
    return index


def _no_split(split: Optional[str], what: str) -> None:
    if split is not None:
        raise ValueError(f"split={split!r} cannot apply to {what}: splits are the lists of a prepared dataset folder")


def _load_paths(paths: List[str], bad_files: str, threads: int, origin: str) -> VideoIndex:
    """The unlabelled index of a list of video paths (a missing file follows ``bad_files``)."""
    if not paths:
        raise ValueError("the list of video paths is empty")
    paths = [os.fspath(p) for p in paths]
    odd = [p for p in paths if not p.lower().endswith(VIDEO_EXTENSIONS)]
    if odd:
        raise ValueError(f"{odd[0]} is not a video (extensions {', '.join(VIDEO_EXTENSIONS)})"
                         + (f", nor are {len(odd) - 1} more paths" if len(odd) > 1 else "")
                         + ": give only video files")
    anchor = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    return index_rows([(p, -1, None) for p in paths], cache_path(anchor), bad_files, threads, origin=origin)


def _load_glob(pattern: str, bad_files: str, threads: int) -> VideoIndex:
    """The unlabelled index of the videos a glob pattern matches (``**`` matches sub-folders)."""
    matched = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not matched:
        raise FileNotFoundError(f"{pattern}: no files match this pattern")
    videos = [p for p in matched if is_video(p)]
    if not videos:
        raise ValueError(f"{pattern}: the {len(matched)} matching files are not videos (e.g. {matched[0]}; "
                         f"extensions {', '.join(VIDEO_EXTENSIONS)})")
    return _load_paths(videos, bad_files, threads, origin=pattern)


def _load_folder(root: str, bad_files: str, threads: int) -> VideoIndex:
    """A folder of class sub-folders (labelled), or of videos without classes (unlabelled); not both."""
    names = sorted(n for n in os.listdir(root) if not n.startswith("."))
    loose = [n for n in names if is_video(n) and os.path.isfile(os.path.join(root, n))]
    if not loose:
        return _load_class_folder(root, bad_files, threads)
    folders = [n for n in names if os.path.isdir(os.path.join(root, n)) and _holds_videos(os.path.join(root, n))]
    if folders:
        raise ValueError(f"{root} holds both loose videos ({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''})"
                         f" and class sub-folders ({', '.join(folders[:3])}{', ...' if len(folders) > 3 else ''}): a "
                         "folder is either class sub-folders (root/<class>/<video>, labelled) or videos without "
                         "labels; move the loose videos into class folders, or pass a glob such as "
                         f"'{os.path.join(root, '**', '*.mp4')}' to take every video unlabelled")
    rows = [(os.path.join(root, n), -1, None) for n in loose]
    return index_rows(rows, cache_path(root), bad_files, threads, origin=root)


def _holds_videos(folder: str) -> bool:
    """Whether a video lies anywhere under ``folder`` (hidden files and folders aside)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(is_video(f) for f in filenames):
            return True
    return False


def _load_class_folder(root: str, bad_files: str, threads: int) -> VideoIndex:
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise ValueError(f"{root}: expected class sub-folders holding videos (root/<class>/<video>), found none")
    labels = {name: label for label, name in enumerate(classes)}
    dataset = os.path.dirname(os.path.abspath(root))
    named = os.path.join(dataset, "classes.txt")
    if os.path.exists(named):  # the videos/ folder of a prepared dataset: its labels, not alphabetical ones
        listed = read_classes(named)
        by_folder = {safe_name(name): label for label, name in enumerate(listed)}
        unknown = sorted(set(classes) - set(by_folder))
        if unknown:
            raise ValueError(f"{root}: class folders {unknown[:5]} are not in {named}")
        labels, classes = {name: by_folder[name] for name in classes}, listed
        splits = split_lists(dataset)
        log.warning("%s is the videos folder of the prepared dataset %s: every video of every split is loaded "
                    "(labels from its classes.txt). To train or evaluate on a split, pass the dataset folder and a "
                    "split (%s)", root, dataset, ", ".join(splits))
    rows = []
    for name in sorted(labels):
        label = labels[name]
        folder = os.path.join(root, name)
        for fname in sorted(os.listdir(folder)):
            if fname.lower().endswith(VIDEO_EXTENSIONS):
                rows.append((os.path.join(folder, fname), label, None))
    if not rows:
        raise ValueError(f"{root}: the class folders hold no videos with extensions {VIDEO_EXTENSIONS}")
    cache = cache_path(root)
    index = index_rows(rows, cache, bad_files, threads, origin=root)
    index.classes = list(classes)
    return index


def _load_list(path: str, bad_files: str, threads: int) -> VideoIndex:
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte order mark (Windows editors) is not the first path
            for lineno, line in enumerate(f, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                p, label, frames = parse_list_line(line, f"{path}:{lineno}")
                rows.append((p if os.path.isabs(p) else os.path.join(base, p), label, frames))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text list of `path label [num_frames]` lines (it is not UTF-8 text; a "
                         "video file is not a dataset)") from None
    if not rows:
        raise ValueError(f"{path}: the list holds no videos")
    index = index_rows(rows, cache_path(path), bad_files, threads, origin=path)
    index.stats["list"] = path  # for messages naming a video's line (list_line)
    named = os.path.join(base, "classes.txt")
    if os.path.exists(named):  # a split list of a prepared dataset: its labels index classes.txt
        index.classes = read_classes(named)
        wrong = np.flatnonzero(index.labels >= len(index.classes))
        if len(wrong):
            raise ValueError(f"{list_line(index, wrong[0])}: label {index.labels[wrong[0]]} of "
                             f"{index.paths[wrong[0]]} is not a class of {named} ({len(index.classes)} classes, "
                             f"labels 0..{len(index.classes) - 1}; -1 marks an unlabelled video)")
    return index


def index_rows(rows, cache: str, bad_files: str, threads: int, origin: str) -> VideoIndex:
    """Fill in missing frame counts (cache, then probe), apply the bad-file policy."""
    entries = read_cache(cache)
    counts: List[Optional[int]] = []
    media: List[Optional[Media]] = []
    to_probe = []
    bad: List[VideoError] = []
    for i, (p, _, frames) in enumerate(rows):
        if not os.path.exists(p):
            bad.append(VideoError(p, "file not found", "check the path in your file list or dataset folder"))
            counts.append(None)
            media.append(None)
            continue
        cached_frames, cached_media = lookup(entries, p)
        counts.append(frames if frames is not None else cached_frames)
        media.append(cached_media)
        if counts[-1] is None:
            to_probe.append(i)
    if to_probe:
        log.info("probing %d videos for their frame counts (cached in %s)", len(to_probe), cache)
        gaps = []
        for i, (info, exc) in zip(to_probe, probe_all([rows[i][0] for i in to_probe], threads)):
            if exc is not None:
                bad.append(exc)
                continue
            counts[i], media[i] = info.num_frames, info.media
            remember(entries, rows[i][0], info.num_frames, info.media)
            if info.gap:
                gaps.append(f"{rows[i][0]} ({info.gap})")
        save_cache(cache, entries)
        if gaps:
            log.warning("%d videos in %s have irregular timestamps and are used as they are (frames missing from a "
                        "constant rate are damage, frames dropped at the source, or a pause in a variable-rate "
                        "recording): %s%s", len(gaps), origin, "; ".join(gaps[:5]),
                        f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
    report_bad(bad, bad_files, origin)
    keep = [i for i, c in enumerate(counts) if c is not None]
    if not keep:
        raise ValueError(f"{origin}: no usable videos")
    return VideoIndex(paths=[rows[i][0] for i in keep], labels=[rows[i][1] for i in keep],
                      num_frames=[counts[i] for i in keep],
                      stats={"videos": len(keep), "skipped_unreadable": len(bad),
                             "skipped_files": [e.path for e in bad]},
                      media=[media[i] for i in keep], cache=cache,
                      counted=[rows[i][2] is None for i in keep])  # listed counts: checked by verify_counts
