"""The video index: (path, label, number of frames) for every video of a dataset.

These inputs are understood (:func:`load_index`):

* a **folder of class sub-folders** (``root/<class>/<video>``): labels are the sorted
  class names' positions;
* a **folder of videos without classes** (``root/<video>``): every label is ``-1``
  (unlabelled). A folder holding both loose videos and sub-folders with videos is an
  error naming both, since either reading would be a guess; for a tree of unlabelled
  videos give a glob (``"root/**/*.mp4"``);
* a **list or tuple of video paths**, or a **glob pattern** (``"clips/**/*.mp4"``,
  recursive): unlabelled;
* a **file list**, one video per line: ``path label [num_frames]``, or just ``path``
  for an unlabelled video (paths relative to the list's folder; ``#`` starts a comment;
  label ``-1`` means unlabelled);
* a **prepared dataset folder** (``motionssl-prepare``) holding ``classes.txt``
  and split lists such as ``train_split1.txt``: pass the folder and a split name.

Frame counts that a list does not give are probed once with PyAV (which also reads each
file's frame size as displayed, codec, pixel format and display rotation) and cached in the
toolkit's cache folder (``$MOTIONSSL_CACHE``, else ``~/.cache/motionssl``), one file per list or folder, keyed by
each video's size and modification time so an edited video is probed again. Nothing is
written into the dataset folder, which may be read-only or shared.

Unreadable files and videos shorter than the window follow a policy instead of crashing
mid-epoch: ``"skip"`` (log a warning naming each file), ``"error"`` (raise naming them),
or for short videos ``"pad"`` (repeat the last frame; counted in :attr:`VideoIndex.stats`).
"""
from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .deprecation import renamed
from .environment import cache_dir
from .errors import DataError, UnlabelledError, ours
from .video_io import Media, VideoError, header, probe, scan

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".webm", ".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv")
BAD_FILE_POLICIES = ("skip", "error")
SHORT_VIDEO_POLICIES = ("pad", "skip", "error")
CACHE_VERSION = "# motionssl index cache 4: path size mtime frames height width codec pix_fmt rotation timing"
# timing: "first:step:frames" of evenly spaced frame timestamps (Media.timing), "-" when uneven or not read
# Paths are the file system's bytes: a name that is not UTF-8 (b"caf\xe9.webm" from a Latin-1 system) is a
# str with surrogate escapes in Python, which plain UTF-8 cannot write; surrogateescape writes its bytes back.
CACHE_ENCODING = "utf-8"
NOT_SPLITS = ("classes.txt", "failed.txt")  # text files of a prepared dataset that are not splits


@dataclass
class VideoIndex:
    """Parallel lists of paths, labels and frame counts, plus what was left out and why.

    ``VideoIndex(paths)`` is an index of unlabelled videos whose frame counts are read from
    the files before the first batch (:meth:`verify_counts`); :func:`load_index` builds one
    from a folder, a list file, a glob or a list of paths, with the counts cached.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The video files, in order; a video's position is its ``index`` in every batch.
    labels : sequence of int, optional
        One class id (0, 1, ...) per video, ``-1`` for an unlabelled one. Default ``None``:
        every video unlabelled.
    num_frames : sequence of int, optional
        One frame count per video. Default ``None``: unknown, read from each file (a demux,
        no decoding) before the first batch.
    classes : list of str, optional
        The class names, ``classes[label]`` naming a label. Default: none.
    stats : dict, optional
        What loading did (videos kept, skipped, padded), for logs.
    media : list, optional
        Per video, its frame size, codec and pixel format where already read, else ``None``.
    cache : str, optional
        The cache file that frame counts and headers are kept in. Default ``None``: none.
    counted : sequence of bool, optional
        Per video, whether its count was read from the file rather than only listed.

    Raises
    ------
    ValueError
        When the lists differ in length.
    """

    paths: List[str]
    labels: Optional[np.ndarray] = None  # (N,) int64, -1 when unlabelled
    num_frames: Optional[np.ndarray] = None  # (N,) int64, -1 where not known yet
    classes: List[str] = field(default_factory=list)
    stats: Dict[str, object] = field(default_factory=dict)
    media: Optional[List[Optional[Media]]] = None  # per video, None where not probed yet
    cache: Optional[str] = None  # the cache file of the list or folder this index was read from
    counted: Optional[np.ndarray] = None  # (N,) bool: the frame count was read from the file (not only listed)

    def __len__(self) -> int:
        return len(self.paths)

    def __post_init__(self):
        if isinstance(self.paths, (str, bytes, os.PathLike)):
            raise ValueError("paths must be a list of video paths, not one path; load_index(folder) reads a folder")
        self.paths = [os.fspath(p) for p in self.paths]
        unknown = self.num_frames is None
        self.labels = np.asarray(np.full(len(self.paths), -1) if self.labels is None else self.labels, dtype=np.int64)
        self.num_frames = np.asarray(np.full(len(self.paths), -1) if unknown else self.num_frames, dtype=np.int64)
        if unknown:
            self.counted = None  # nothing was counted: verify_counts reads every file
        if not (len(self.paths) == len(self.labels) == len(self.num_frames)):
            raise ValueError("paths, labels and num_frames must have the same length")
        if self.media is None:
            self.media = [None] * len(self.paths)
        if len(self.media) != len(self.paths):
            raise ValueError("media must hold one entry per video")
        self.counted = (np.zeros(len(self.paths), dtype=bool) if self.counted is None
                        else np.asarray(self.counted, dtype=bool))

    def subset(self, keep: Sequence[int]) -> "VideoIndex":
        keep = list(keep)
        return VideoIndex([self.paths[i] for i in keep], self.labels[keep], self.num_frames[keep],
                          list(self.classes), dict(self.stats, videos=len(keep)), [self.media[i] for i in keep],
                          self.cache, self.counted[keep])

    def verify_counts(self, bad_files: str = "error", threads: int = 8) -> "VideoIndex":
        """This index with every frame count read from its file, not only from a list.

        A list's ``num_frames`` column saves probing, but goes stale when a file is replaced:
        a count larger than the file's makes a window start past the end, which DALI's decoder
        fails on (or not, depending on the start drawn). So before the first batch every count
        that came from a list is checked against the file's own count (a demux, no decoding;
        cached with the headers, so once per file). A stale count is replaced by the file's,
        with one warning naming the files; an unreadable file raises (``bad_files="error"``)
        or is left out with a warning (``"skip"``).
        """
        if bad_files not in BAD_FILE_POLICIES:
            raise ValueError(f"bad_files={bad_files!r}; choose one of {BAD_FILE_POLICIES}")
        todo = np.flatnonzero(~self.counted)
        if not len(todo):
            return self
        entries = _read_cache(self.cache) if self.cache else {}
        real, media = self.num_frames.copy(), list(self.media)
        unknown = []
        for i in todo:
            frames, found = _lookup(entries, self.paths[i])
            if frames is None:
                unknown.append(i)
            else:
                real[i], media[i] = frames, media[i] or found

        def count(i):
            try:
                return i, scan(self.paths[i]), None
            except VideoError as exc:
                return i, None, exc

        bad = []
        if unknown:
            log.info("reading the frame counts of %d videos from the files%s", len(unknown),
                     f" (cached in {self.cache})" if self.cache else "")
            with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
                for i, found, exc in pool.map(count, unknown):
                    if exc is not None:
                        bad.append((i, exc))
                        continue
                    real[i], media[i] = found
                    _remember(entries, self.paths[i], int(found[0]), found[1])
            if self.cache:
                _save_cache(self.cache, entries)
        _report_bad([exc for _, exc in bad], bad_files, "the index")
        stale = [i for i in todo if 0 <= self.num_frames[i] != real[i] and i not in {j for j, _ in bad}]
        if stale:
            names = "; ".join(f"{self.paths[i]} (listed {self.num_frames[i]}, holds {real[i]})" for i in stale[:5])
            log.warning("%d listed frame counts disagree with the files, which changed since the list was written; "
                        "using the files' counts: %s%s", len(stale), names,
                        f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        out = VideoIndex(list(self.paths), self.labels, real, list(self.classes),
                         dict(self.stats, stale_counts=len(stale)), media, self.cache,
                         np.ones(len(self), dtype=bool))
        return out.subset([i for i in range(len(self)) if i not in {j for j, _ in bad}]) if bad else out

    def with_media(self, bad_files: str = "error", threads: int = 8) -> "VideoIndex":
        """This index with every video's frame size, codec and pixel format known.

        Headers not known yet are read (no decoding) in ``threads`` threads and cached with
        the frame counts. An unreadable file raises (``bad_files="error"``) or is left out
        with a logged warning (``"skip"``).
        """
        if bad_files not in BAD_FILE_POLICIES:
            raise ValueError(f"bad_files={bad_files!r}; choose one of {BAD_FILE_POLICIES}")
        missing = [i for i, m in enumerate(self.media) if m is None]
        if not missing:
            return self
        log.info("reading the headers of %d videos (cached in %s)", len(missing), self.cache)

        def read(i):
            try:
                return i, header(self.paths[i]), None
            except VideoError as exc:
                return i, None, exc

        media, bad = list(self.media), []
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for i, found, exc in pool.map(read, missing):
                media[i] = found
                if exc is not None:
                    bad.append(exc)
        if self.cache:
            entries = _read_cache(self.cache)
            for i in missing:
                if media[i] is not None:
                    _remember(entries, self.paths[i], media=media[i])
            _save_cache(self.cache, entries)
        _report_bad(bad, bad_files, "the index")
        out = VideoIndex(list(self.paths), self.labels, self.num_frames, list(self.classes), dict(self.stats),
                         media, self.cache, self.counted)
        return out.subset([i for i, m in enumerate(media) if m is not None]) if bad else out

    def apply_window(self, window: int, short_videos: str = "pad") -> "VideoIndex":
        """Apply the short-video policy for windows of ``window`` frames (docs/design.md, "Window sampling")."""
        if short_videos not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"short_videos={short_videos!r}; choose one of {SHORT_VIDEO_POLICIES}")
        short = np.flatnonzero(self.num_frames < window)
        stats = dict(window=window, short_videos=int(len(short)), short_policy=short_videos)
        if len(short) == 0:
            out = self.subset(range(len(self)))
            out.stats.update(stats)
            return out
        names = ", ".join(f"{self.paths[i]} ({self.num_frames[i]} frames)" for i in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        if short_videos == "error":
            raise ValueError(f"{len(short)} videos are shorter than the {window}-frame window: {names}{more}. "
                             "Use short_videos='pad' (repeat the last frame) or 'skip', or shorten the clips.")
        if short_videos == "skip":
            log.warning("skipping %d videos shorter than the %d-frame window: %s%s", len(short), window, names, more)
            out = self.subset(np.flatnonzero(self.num_frames >= window))
        else:
            log.warning("padding %d videos shorter than the %d-frame window by repeating their last frame: "
                        "%s%s", len(short), window, names, more)
            out = self.subset(range(len(self)))
        out.stats.update(stats)
        return out

    def to_list(self, path: str) -> None:
        """Write ``path label num_frames`` lines (paths relative to the list when possible)."""
        base = os.path.dirname(os.path.abspath(path))
        with open(path, "w") as f:
            for p, y, n in zip(self.paths, self.labels, self.num_frames):
                rel = os.path.relpath(p, base) if os.path.isabs(p) else p
                f.write(f"{rel} {int(y)} {int(n)}\n")


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
    if bad_files not in BAD_FILE_POLICIES:
        raise ValueError(f"bad_files={bad_files!r}; choose one of {BAD_FILE_POLICIES}")
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
        if os.path.exists(os.path.join(source, "classes.txt")) or (split is not None and _split_lists(source)):
            return _load_prepared(source, split, bad_files, num_probe_threads)
        if split is not None:
            kind = "videos" if any(_is_video(n) for n in os.listdir(source)) else "class sub-folders"
            raise ValueError(f"{source} is a folder of {kind}, which has no splits, so split={split!r} cannot apply: "
                             "drop the split to use every video, or write split lists with "
                             f"`motionssl-prepare folder --src {source} --out DIR --splits LISTS`")
        return _load_folder(source, bad_files, num_probe_threads)
    if source.lower().endswith(VIDEO_EXTENSIONS) or _looks_binary(source):
        raise ValueError(f"{source} is a video (or other binary) file, not a dataset: give a folder of class "
                         "sub-folders (root/<class>/<video>), a prepared dataset folder (motionssl-prepare) "
                         "or a text list of `path label [num_frames]` lines")
    if split is not None:
        raise ValueError(f"{source} is a file list, so split={split!r} cannot apply: splits are the lists of a "
                         "prepared dataset folder (pass the folder), or pass each list file itself")
    return _load_list(source, bad_files, num_probe_threads)


@ours(value_error=DataError)
def load_pair(data: Data, split: Optional[str] = None, test_data: Optional[Data] = None,
              test_split: Optional[str] = None, bad_files: str = "skip"):
    """The train (gallery) and test (query) indexes of an evaluation, and a line saying what they are.

    Parameters
    ----------
    data : str, os.PathLike, or list/tuple of str
        The training videos (the gallery of retrieval), as :func:`load_index` reads them.
    split : str, optional
        Their split of a prepared dataset folder. Default ``None``.
    test_data : str, os.PathLike, or list/tuple of str, optional
        The test videos (the queries). Default ``None``: ``data`` (the two then differ by split).
    test_split : str, optional
        Their split of a prepared dataset folder. Default ``None``.
    bad_files : {"skip", "error"}, default "skip"
        What an unusable video does while loading (:func:`load_index`).

    Returns
    -------
    tuple of (VideoIndex, VideoIndex, str)
        The train index, the test index (its labels joined to the training classes by
        name, :func:`align_classes`) and a line describing both.

    Raises
    ------
    ValueError
        Testing on the very videos of training would print perfect scores that mean
        nothing, so it is an error however the test videos are named: the same list or split
        (through a link, too), or other lines, paths or byte-identical copies reaching only
        training videos (:func:`shared_videos`); test videos *partly* among the training
        videos are counted in a warning. Every evaluation scores against labels, so
        unlabelled videos (label ``-1``) on either side are an error too.
    """
    test_data = test_data or data
    train_name = _named(data) + (f" [{split}]" if split else "")
    test_name = _named(test_data) + (f" [{test_split}]" if test_split else "")
    if (not isinstance(data, (list, tuple)) and not isinstance(test_data, (list, tuple))
            and os.path.realpath(test_data) == os.path.realpath(data) and split == test_split):
        raise ValueError(f"the test videos would be the training videos: {test_name} is {train_name}; give a test "
                         "split of a prepared dataset (--test-split) or another list or folder (--test-data)")
    train = load_index(data, split=split, bad_files=bad_files)
    test = load_index(test_data, split=test_split, bad_files=bad_files)
    for index, name in ((test, test_name), (train, train_name)):
        unlabelled = np.flatnonzero(index.labels < 0)
        if len(unlabelled):
            raise UnlabelledError(f"{len(unlabelled)} of the {len(index)} videos of {name} are unlabelled (label -1, e.g. "
                             f"{index.paths[unlabelled[0]]}): retrieval, linear probes and fine-tuning score against "
                             "labels; give labelled videos (class sub-folders, or a list of `path label` lines)")
    shared = shared_videos(train, test)
    if len(shared) == len(test):
        raise ValueError(f"the test videos would be the training videos: all {len(test)} test videos of {test_name} "
                         f"are videos of {train_name} (the same files, or byte-identical copies); give other test "
                         "videos (--test-split, --test-data)")
    if shared:
        log.warning("%d of the %d test videos of %s are also training videos of %s (the same files, or "
                    "byte-identical copies): %s%s. They find themselves and inflate the scores; remove them from the "
                    "test videos", len(shared), len(test), test_name, train_name,
                    ", ".join(test.paths[i] for i in shared[:5]), f" and {len(shared) - 5} more" if len(shared) > 5
                    else "")
    test = align_classes(train, test, train_name, test_name)
    describe = f"{len(train)} videos of {train_name}, {len(test)} test videos of {test_name}"
    return train, test, describe


def _named(data: Data) -> str:
    """``data`` in a message: itself, or for a list of paths how many and the first."""
    if isinstance(data, (list, tuple)):
        return f"the list of {len(data)} paths ({data[0] if data else ''}, ...)"
    return os.fspath(data)


def shared_videos(train: VideoIndex, test: VideoIndex, chunk: int = 1 << 16) -> List[int]:
    """Positions of the test videos that are training videos: the same file by any path, or a copy.

    A file is the same when its device and inode are (links, other relative paths); a copy
    has the same size and the same first and last ``chunk`` bytes. Only files of equal size
    are read, so a dataset costs one ``stat`` per video.
    """
    def stat(path):
        try:
            return os.stat(path)
        except OSError:
            return None

    digests: Dict[str, Optional[str]] = {}

    def digest(path: str, size: int) -> Optional[str]:
        if path not in digests:
            try:
                with open(path, "rb") as f:
                    head = f.read(chunk)
                    f.seek(max(size - chunk, len(head)))
                    digests[path] = hashlib.sha1(head + f.read(chunk)).hexdigest()
            except OSError:
                digests[path] = None
        return digests[path]

    files, by_size = set(), {}
    for path in train.paths:
        st = stat(path)
        if st is not None:
            files.add((st.st_dev, st.st_ino))
            by_size.setdefault(st.st_size, []).append(path)
    shared = []
    for i, path in enumerate(test.paths):
        st = stat(path)
        if st is None:
            continue
        same_size = by_size.get(st.st_size, ())
        if (st.st_dev, st.st_ino) in files or (same_size and digest(path, st.st_size) is not None and any(
                digest(path, st.st_size) == digest(other, st.st_size) for other in same_size)):
            shared.append(i)
    return shared


def align_classes(train: VideoIndex, test: VideoIndex, train_name: str = "the training data",
                  test_name: str = "the test data") -> VideoIndex:
    """``test`` with its labels renumbered to ``train``'s classes, joined by class *name*.

    Labels are positions in a list of class names (sorted class folders, ``classes.txt``),
    so the same number can mean another class in two datasets — a test folder that lacks
    one class shifts every later label. Where both sides know their class names, each test
    label is mapped to the training label of the same name; a test class the training data
    lacks is a ``ValueError`` naming it. Where a side has no names (a plain list), its labels
    are taken as they are, and a test label beyond the training classes is an error too.
    """
    if train.classes and test.classes:
        position = {name: label for label, name in enumerate(train.classes)}
        present = sorted({test.classes[label] for label in test.labels if label >= 0})
        unknown = [name for name in present if name not in position]
        if unknown:
            raise ValueError(f"{test_name} holds videos of {len(unknown)} class(es) that {train_name} lacks: "
                             f"{unknown[:8]}{' ...' if len(unknown) > 8 else ''}; its classes are {train.classes[:8]}"
                             f"{' ...' if len(train.classes) > 8 else ''}. Remove those videos from the test data or "
                             "add the classes to the training data")
        mapping = np.array([position.get(name, -1) for name in test.classes], dtype=np.int64)
        labels = np.where(test.labels >= 0, mapping[np.maximum(test.labels, 0)], -1)
        if not np.array_equal(labels, test.labels) or test.classes != train.classes:
            log.info("test labels joined to the training classes by name (%d test classes, %d training classes)",
                     len(test.classes), len(train.classes))
        out = test.subset(range(len(test)))
        out.labels, out.classes = labels, list(train.classes)
        return out
    for plain, plain_name, named, named_name in ((train, train_name, test, test_name),
                                                 (test, test_name, train, train_name)):
        if named.classes and not plain.classes and (plain.labels >= 0).any():
            raise ValueError(f"{plain_name} has no class names and {named_name} names its classes "
                             f"({', '.join(named.classes[:3])}{', ...' if len(named.classes) > 3 else ''}), so their "
                             "labels cannot be joined by class name; put a classes.txt beside the list (one class "
                             "name per line, line k naming label k)")
    return test


def class_count(train: VideoIndex, test: VideoIndex) -> int:
    """The number of classes a classifier of ``train``'s and ``test``'s labels needs, every label checked.

    With class names (``train``'s, which ``test``'s labels are joined to) it is their
    number; lists without names number their classes 0..K-1, K being the number of
    distinct labels of both. A label beyond (a typo such as 10000000 would otherwise size
    the classifier by it) is a ``ValueError`` naming its list, line and label.
    """
    labels = np.concatenate([train.labels, test.labels])
    count = len(train.classes) if train.classes else len(np.unique(labels[labels >= 0]))
    for index in (train, test):
        beyond = np.flatnonzero(index.labels >= count)
        if len(beyond):
            i = int(beyond[0])
            named = f"one of the {count} classes of the training videos" if train.classes else (
                f"one of 0..{count - 1}: lists without classes.txt number their {count} classes by their distinct "
                "labels; fix the label, or name the classes in a classes.txt beside the list (one name per line)")
            raise ValueError(f"{list_line(index, i)}: label {int(index.labels[i])} of {index.paths[i]} is not {named}")
    return count


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


def _split_lists(root: str) -> List[str]:
    """Names of the split lists of a dataset folder (its ``*.txt`` files but ``classes.txt`` and ``failed.txt``)."""
    return sorted(f[:-4] for f in os.listdir(root) if f.endswith(".txt") and f not in NOT_SPLITS)


def _load_prepared(root: str, split: Optional[str], bad_files: str, threads: int) -> VideoIndex:
    lists = _split_lists(root)
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


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS) and not os.path.basename(name).startswith(".")


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
    return _finish([(p, -1, None) for p in paths], _cache_path(anchor), bad_files, threads, origin=origin)


def _load_glob(pattern: str, bad_files: str, threads: int) -> VideoIndex:
    """The unlabelled index of the videos a glob pattern matches (``**`` matches sub-folders)."""
    matched = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not matched:
        raise FileNotFoundError(f"{pattern}: no files match this pattern")
    videos = [p for p in matched if _is_video(p)]
    if not videos:
        raise ValueError(f"{pattern}: the {len(matched)} matching files are not videos (e.g. {matched[0]}; "
                         f"extensions {', '.join(VIDEO_EXTENSIONS)})")
    return _load_paths(videos, bad_files, threads, origin=pattern)


def _load_folder(root: str, bad_files: str, threads: int) -> VideoIndex:
    """A folder of class sub-folders (labelled), or of videos without classes (unlabelled); not both."""
    names = sorted(n for n in os.listdir(root) if not n.startswith("."))
    loose = [n for n in names if _is_video(n) and os.path.isfile(os.path.join(root, n))]
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
    return _finish(rows, _cache_path(root), bad_files, threads, origin=root)


def _holds_videos(folder: str) -> bool:
    """Whether a video lies anywhere under ``folder`` (hidden files and folders aside)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(_is_video(f) for f in filenames):
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
        splits = _split_lists(dataset)
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
    cache = _cache_path(root)
    index = _finish(rows, cache, bad_files, threads, origin=root)
    index.classes = list(classes)
    return index


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
    index = _finish(rows, _cache_path(path), bad_files, threads, origin=path)
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


def read_classes(path: str) -> List[str]:
    """The class names of a ``classes.txt`` (one per line; the label is the line's position)."""
    with open(path, encoding="utf-8-sig") as f:  # a byte order mark is not part of the first name
        names = [line.strip() for line in f if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: class names must be unique, {duplicates} appear more than once")
    return names


def _looks_binary(path: str) -> bool:
    """Whether the first KiB of a file holds a NUL byte (a video or archive, not a text list)."""
    try:
        with open(path, "rb") as f:
            return b"\0" in f.read(1024)
    except OSError:
        return False


def safe_name(name: str) -> str:
    """A class or video name as a folder or file name: anything but letters, digits, ``._-`` → ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _cache_path(anchor: str) -> str:
    """The cache file of a list or folder: ``<cache_dir>/index/<hash of its absolute path>.tsv``."""
    digest = hashlib.sha1(os.fsencode(os.path.abspath(anchor))).hexdigest()[:16]
    return os.path.join(cache_dir(), "index", f"{os.path.basename(os.path.normpath(anchor))[:40]}-{digest}.tsv")


# A cache entry: (size, mtime, frames or -1, Media or None), keyed by the video's absolute path.
def _read_cache(cache: str) -> Dict[str, tuple]:
    entries: Dict[str, tuple] = {}
    try:
        with open(cache, encoding=CACHE_ENCODING, errors="surrogateescape") as f:
            lines = f.read().split("\n")  # only "\n" ends a line: a file name may hold other line breaks
    except OSError:
        return entries
    if not lines or lines[0] != CACHE_VERSION:
        return entries  # another format: probe again
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) != 10:
            continue
        try:
            size, mtime, frames, height, width = (int(v) for v in parts[1:6])
            rotation = int(parts[8])
            timing = None if parts[9] == "-" else tuple(int(v) for v in parts[9].split(":"))
        except ValueError:
            continue
        if timing is not None and (len(timing) != 3 or timing[1] <= 0 or timing[2] <= 0):
            timing = None
        media = Media(height, width, parts[6], parts[7], rotation, timing) if height > 0 else None
        entries[parts[0]] = (size, mtime, frames, media)
    return entries


def _lookup(entries: Dict[str, tuple], path: str):
    """``(frames or None, Media or None)`` cached for ``path`` if the file is unchanged since."""
    hit = entries.get(os.path.abspath(path))
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    if not hit or hit[0] != st.st_size or hit[1] != int(st.st_mtime):
        return None, None
    return (hit[2] if hit[2] > 0 else None), hit[3]


def _remember(entries: Dict[str, tuple], path: str, frames: Optional[int] = None, media: Optional[Media] = None):
    st = os.stat(path)
    key = os.path.abspath(path)
    old = entries.get(key)
    if old and old[:2] == (st.st_size, int(st.st_mtime)):
        frames = frames if frames is not None else (old[2] if old[2] > 0 else None)
        media = media or old[3]
    entries[key] = (st.st_size, int(st.st_mtime), frames if frames is not None else -1, media)


def _save_cache(cache: str, entries: Dict[str, tuple]) -> None:
    """Write the cache atomically; a cache that cannot be written is a slowdown, not an error."""
    tmp = f"{cache}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        with open(tmp, "w", encoding=CACHE_ENCODING, errors="surrogateescape") as f:
            f.write(CACHE_VERSION + "\n")
            for p, (size, mtime, frames, media) in sorted(entries.items()):
                m = media or Media(-1, -1, "", "")
                timing = ":".join(map(str, m.timing)) if m.timing else "-"
                f.write(f"{p}\t{size}\t{mtime}\t{frames}\t{m.height}\t{m.width}\t{m.codec}\t{m.pix_fmt}\t"
                        f"{m.rotation}\t{timing}\n")
        os.replace(tmp, cache)
    except OSError as exc:
        log.warning("could not write the index cache %s: %s", cache, exc)
        if os.path.exists(tmp):
            os.remove(tmp)


def _report_bad(bad: List[VideoError], bad_files: str, origin: str) -> None:
    if not bad:
        return
    listing = "\n  ".join(str(e) for e in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    if bad_files == "error":
        raise VideoError(bad[0].path, f"{len(bad)} unusable videos in {origin}:\n  {listing}{more}",
                         "fix or remove them, or load with bad_files='skip'")
    log.warning("skipping %d unusable videos in %s:\n  %s%s", len(bad), origin, listing, more)


def _finish(rows, cache: str, bad_files: str, threads: int, origin: str) -> VideoIndex:
    """Fill in missing frame counts (cache, then probe), apply the bad-file policy."""
    entries = _read_cache(cache)
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
        cached_frames, cached_media = _lookup(entries, p)
        counts.append(frames if frames is not None else cached_frames)
        media.append(cached_media)
        if counts[-1] is None:
            to_probe.append(i)
    if to_probe:
        log.info("probing %d videos for their frame counts (cached in %s)", len(to_probe), cache)

        def run(i):
            try:
                return i, probe(rows[i][0]), None
            except VideoError as exc:
                return i, None, exc

        gaps = []
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for i, info, exc in pool.map(run, to_probe):
                if exc is not None:
                    bad.append(exc)
                    continue
                counts[i], media[i] = info.num_frames, info.media
                _remember(entries, rows[i][0], info.num_frames, info.media)
                if info.gap:
                    gaps.append(f"{rows[i][0]} ({info.gap})")
        _save_cache(cache, entries)
        if gaps:
            log.warning("%d videos in %s have irregular timestamps and are used as they are (frames missing from a "
                        "constant rate are damage, frames dropped at the source, or a pause in a variable-rate "
                        "recording): %s%s", len(gaps), origin, "; ".join(gaps[:5]),
                        f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
    _report_bad(bad, bad_files, origin)
    keep = [i for i, c in enumerate(counts) if c is not None]
    if not keep:
        raise ValueError(f"{origin}: no usable videos")
    return VideoIndex(paths=[rows[i][0] for i in keep], labels=[rows[i][1] for i in keep],
                      num_frames=[counts[i] for i in keep],
                      stats={"videos": len(keep), "skipped_unreadable": len(bad),
                             "skipped_files": [e.path for e in bad]},
                      media=[media[i] for i in keep], cache=cache,
                      counted=[rows[i][2] is None for i in keep])  # listed counts: checked by verify_counts
