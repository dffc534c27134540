"""The video index: paths, labels and frame counts of a dataset's videos, and what was left out and why.

:class:`VideoIndex` is what every loader of the toolkit reads (:func:`.index.load_index`
builds one). Frame counts a list gives are checked against the files before the first batch
(:meth:`VideoIndex.verify_counts`), headers are read where a decoder needs them
(:meth:`VideoIndex.with_media`), both cached with the index (:mod:`.index_cache`); videos
shorter than the window follow a policy (:meth:`VideoIndex.apply_window`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .index_cache import lookup, read_cache, remember, save_cache
from .probing import check_policy, header_all, report_bad, scan_all
from .video_io import Media

log = logging.getLogger(__name__)

SHORT_VIDEO_POLICIES = ("pad", "skip", "error")


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
        check_policy(bad_files)
        todo = np.flatnonzero(~self.counted)
        if not len(todo):
            return self
        entries = read_cache(self.cache) if self.cache else {}
        real, media = self.num_frames.copy(), list(self.media)
        unknown = []
        for i in todo:
            frames, found = lookup(entries, self.paths[i])
            if frames is None:
                unknown.append(i)
            else:
                real[i], media[i] = frames, media[i] or found
        bad = []
        if unknown:
            log.info("reading the frame counts of %d videos from the files%s", len(unknown),
                     f" (cached in {self.cache})" if self.cache else "")
            for i, (found, exc) in zip(unknown, scan_all([self.paths[i] for i in unknown], threads)):
                if exc is not None:
                    bad.append((i, exc))
                    continue
                real[i], media[i] = found
                remember(entries, self.paths[i], int(found[0]), found[1])
            if self.cache:
                save_cache(self.cache, entries)
        report_bad([exc for _, exc in bad], bad_files, "the index")
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
        check_policy(bad_files)
        missing = [i for i, m in enumerate(self.media) if m is None]
        if not missing:
            return self
        log.info("reading the headers of %d videos (cached in %s)", len(missing), self.cache)
        media, bad = list(self.media), []
        for i, (found, exc) in zip(missing, header_all([self.paths[i] for i in missing], threads)):
            media[i] = found
            if exc is not None:
                bad.append(exc)
        if self.cache:
            entries = read_cache(self.cache)
            for i in missing:
                if media[i] is not None:
                    remember(entries, self.paths[i], media=media[i])
            save_cache(self.cache, entries)
        report_bad(bad, bad_files, "the index")
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
