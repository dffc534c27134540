"""What a decoding worker process learns about each file once and keeps: frame timestamps, time base, rotation.

The window source (:class:`~..sources.WindowSource`) holds one :class:`FileFacts`, which
each of its worker processes fills for itself; the frame decoders read it through
:func:`~.read_window`'s ``facts`` option (:mod:`.torchcodec` asks for the time base and the
rotation).
"""
from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction
from typing import Dict, Tuple

import numpy as np

from ..video_io import even_timing, frame_timestamps, rotation, time_base


class _Cache(OrderedDict):
    """A small LRU for per-file facts inside a worker process."""

    def __init__(self, capacity: int = 4096):
        super().__init__()
        self.capacity = capacity

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make(key)
        self[key] = value
        if len(self) > self.capacity:
            self.popitem(last=False)
        return value


class FileFacts:
    """What a worker process knows about each file: frame timestamps (demuxed at most once per file), time base.

    Demuxing a whole file for its timestamps costs about a fifth of decoding a 16-frame
    window (benchmarks/RESULTS.md), so it must not happen per sample; where the index read
    them already (:attr:`..video_io.Media.timing`) the source does not ask at all. Evenly spaced
    timestamps (constant frame rate, as prepared data is) are kept as three numbers, so
    every file of a Kinetics-sized dataset stays cached; irregular ones (variable rate,
    millisecond-rounded rates) go to an LRU of full arrays. The torchcodec decoder also
    needs each file's time base, probed once (a container open, about 4 ms: a fifth of its window),
    and its rotation (one first frame decoded, once).
    """

    def __init__(self, capacity: int = 16384):
        self.regular: Dict[str, Tuple[int, int, int]] = {}
        self.irregular = _Cache(capacity)
        self.time_bases: Dict[str, Fraction] = {}  # torchcodec only; the few distinct values are shared
        self._distinct: Dict[Fraction, Fraction] = {}
        self.rotations: Dict[str, int] = {}  # torchcodec only

    def rotation(self, path: str) -> int:
        """The file's display rotation (:func:`..video_io.display_rotation`), probed once per file."""
        if path not in self.rotations:
            self.rotations[path] = rotation(path)
        return self.rotations[path]

    def time_base(self, path: str) -> Fraction:
        """The stream's time base (torchcodec asks for frames by time), probed once per file."""
        if path not in self.time_bases:
            value = time_base(path)
            self.time_bases[path] = self._distinct.setdefault(value, value)
        return self.time_bases[path]

    def get(self, path: str) -> np.ndarray:
        """The file's frame timestamps (:func:`..video_io.frame_timestamps`), demuxed at most once per file."""
        if path in self.regular:
            first, step, n = self.regular[path]
            return first + step * np.arange(n, dtype=np.int64)
        if path in self.irregular:
            return self.irregular.get_or(path, frame_timestamps)
        stamps = frame_timestamps(path)
        timing = even_timing(stamps)
        if timing is not None:
            self.regular[path] = timing
        else:
            self.irregular.get_or(path, lambda _: stamps)
        return stamps
