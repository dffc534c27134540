"""The torchcodec window decoder (``decoder="torchcodec"``): optional, only when asked for.

torchcodec (PyTorch's video decoding library) seeks and decodes in C++ with the system's
FFmpeg and converts to RGB there, which costs less CPU per window than PyAV's decode
plus the toolkit's accurate conversion (docs/design.md, "Decoders"). It is optional: the
project neither installs nor imports it unless ``decoder="torchcodec"`` is asked for, and
:func:`torchcodec_available` says why it cannot be used (the package may be installed
without the FFmpeg shared libraries it loads).

**Frame-exact.** Frame ``i`` is the frame whose pts is the ``i``-th smallest, as for
every decoder of the toolkit (:func:`..video_io.frame_timestamps`). The window source
caches those timestamps and the time base per file, so the window is asked for by time and
the file is not demuxed a second time: ``seek_mode="approximate"`` (no scan when the
decoder opens) and ``get_frame_played_at`` once per frame, which matches a decoded frame by
its own pts and duration. The time asked for is a quarter tick past the pts: the pts itself,
in floating point, can land a hair before torchcodec's own conversion of it, and then the
previous frame, which ends exactly there, matches. torchcodec's batched calls in that mode
(``get_frames_played_at``, ``get_frames_in_range``) map times to indices and back with the
average frame rate, right only where frames are evenly spaced at that rate: on the test
videos ``get_frames_in_range`` returned neighbouring frames of a variable-rate stream, and
``get_frames_played_at`` asked at the exact pts returned neighbours for a stream whose
first pts is not 0 and, by rounding, at frame 29 of a 25 fps stream; they are not used.
Every frame's pts is compared with the one asked for; frame durations that mislead the
match (none, or one overlapping the next frame, as Matroska's single default duration
does when frames are closer together) send the window to ``seek_mode="exact"``, where
torchcodec scans the file and looks the times up in its table of pts; a mismatch there too
is a :class:`VideoError`.

**Colour** is torchcodec's, not the toolkit's: FFmpeg's default conversion (libswscale
when the width is a multiple of 32, else a filter graph) in the colourspace the stream
declares, where :func:`.pyav.to_rgb` converts as DALI's decoders do. The difference is
a few grey levels on average (docs/design.md, "Decoders").

**Rotation**: torchcodec turns frames by the display matrix itself (a phone's −90°);
the toolkit's rule (quarter turns applied, mirror images left as stored) is read with
PyAV once per file, and what torchcodec did otherwise is undone or named
(:func:`_left_to_turn`), so the frames equal PyAV's in orientation.

**Damaged data** is not detected as with PyAV. torchcodec sets FFmpeg's log to quiet and
has no error checks to turn on, so a damaged frame payload that the decoder conceals
(H.264, HEVC, MPEG-4) decodes into wrong pixels without an error, where
:class:`.pyav.PyAVDecoder` names the file (damaged VP9 goes unseen by both). A file
that cannot be opened, is empty or is truncated before the window's frames still raises a
:class:`VideoError` naming it. Check data with ``motionssl-prepare`` (a full
decode with the error checks) before training with this decoder.
"""
from __future__ import annotations

import re
from fractions import Fraction
from typing import Optional

import numpy as np

from ..video_io import VideoError, check_file, rotation, time_base, upright
from . import Decoder

INSTALL = "`pip install torchcodec` and `apt-get install ffmpeg` (FFmpeg's shared libraries, which torchcodec loads)"

_UNREADABLE = "re-download or re-encode it, or remove it from the list"
_TRUNCATED = "the file is probably truncated or corrupt; re-encode it or remove it from the list"


def torchcodec_available() -> Optional[str]:
    """``None`` if torchcodec can decode here, else one line saying why and how to install it.

    Importing torchcodec loads FFmpeg's shared libraries. Older releases raise then (not
    only ``ImportError``) when the libraries are missing or of an unsupported version; any
    failure is caught. Newer ones (0.17) import without them, leave
    ``torchcodec.ffmpeg_major_version`` at ``None`` and fail at the first decode, so that
    is checked too. The import happens in the calling process only when this is called.
    """
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"torchcodec cannot be used ({type(exc).__name__}: {first}); install: {INSTALL}"
    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:
        return f"torchcodec is installed but could not load FFmpeg's shared libraries; install: {INSTALL}"
    return None


_usable = False  # torchcodec_available() said None in this process


def _video_decoder():
    """torchcodec's ``VideoDecoder`` class, or a ``RuntimeError`` saying why it cannot be used (checked once)."""
    global _usable
    if not _usable:
        reason = torchcodec_available()
        if reason:
            raise RuntimeError(f"decoder='torchcodec': {reason}")
        _usable = True
    from torchcodec.decoders import VideoDecoder

    return VideoDecoder


def _reason(exc: BaseException) -> str:
    """torchcodec's error in one line, without the C++ source location it starts with."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^\w+, \S+\.(?:cpp|h):\d+, ", "", text)[:300]


class _WrongFrame(Exception):
    """torchcodec returned a frame other than the one whose pts was asked for."""


def _played_at(decoder, wanted: np.ndarray, tick: Fraction, exact: bool) -> list:
    """Frames whose pts are ``wanted``; :class:`_WrongFrame` if torchcodec returns any other frame."""
    seconds = [float((int(pts) + Fraction(1, 4)) * tick) for pts in wanted]
    if exact:  # the scan's pts table maps each time to its frame; one batched call
        batch = decoder.get_frames_played_at(seconds)
        data, got = list(batch.data), batch.pts_seconds.tolist()
    else:  # approximate mode: only the single-frame call matches frames by their own pts
        frames = [decoder.get_frame_played_at(s) for s in seconds]
        data, got = [f.data for f in frames], [f.pts_seconds for f in frames]
    step = float(tick)
    for pts, returned in zip(wanted, got):
        if round(returned / step) != int(pts):
            raise _WrongFrame(f"asked for the frame at pts {int(pts)}, got pts {round(returned / step)}")
    return data


def _left_to_turn(decoder, path: str, facts=None) -> int:
    """What is left to turn (degrees counter-clockwise) after torchcodec's own rotation.

    torchcodec (0.7 and later) turns frames by the display matrix's angle rounded to a
    quarter turn and reports the angle (``None`` without a matrix); earlier releases turn
    nothing and report nothing. The toolkit applies quarter turns only
    (:func:`..video_io.display_rotation`, read with PyAV, from ``facts`` once per file): a
    mirroring matrix, which torchcodec turns half round, is turned back, and another angle —
    which torchcodec rounds — is a :class:`VideoError`. A video without a matrix costs nothing.
    """
    angle = getattr(decoder.metadata, "rotation", 0.0)
    if angle is None:
        return 0
    turns = round(angle / 90)
    if abs(angle - 90 * turns) >= 0.5:
        raise VideoError(path, f"its display matrix turns the picture by {angle:g} degrees, which torchcodec rounds "
                               "to a quarter turn where the other decoders leave the frames as stored",
                         "decode it with decoder='pyav', or re-encode it upright")
    wanted = facts.rotation(path) if facts is not None else rotation(path)
    return (wanted - 90 * turns) % 360


class TorchcodecDecoder(Decoder):
    """Decodes windows in the source's workers with torchcodec (see module doc); optional."""

    name = "torchcodec"
    keeps = True
    doc = "torchcodec in the decoding workers: less CPU per window, FFmpeg's colours, damage not detected (optional)"

    def unavailable(self) -> Optional[str]:
        return torchcodec_available()

    def frames(self, path: str, wanted: np.ndarray, where: str = "", threads: int = 1, facts=None,
               stream_time_base=None, device: str = "cpu", keep: Optional[np.ndarray] = None, **unused) -> list:
        """The frames whose pts are ``wanted`` (sorted): ``(H, W, 3)`` uint8 tensors (on the GPU for ``device="cuda"``).

        ``threads`` is torchcodec's ``num_ffmpeg_threads``: 1 when one process per core
        decodes, 0 lets FFmpeg choose. The stream's time base comes from ``stream_time_base``,
        else the worker's per-file ``facts`` (:class:`~.facts.FileFacts`), else a probe.
        How frames are found and what damaged data does: the module doc. Frames come upright,
        turned as every decoder turns them (:func:`_left_to_turn`). Raises
        ``RuntimeError`` (not a :class:`VideoError`, which would skip every file under
        ``bad_files="skip"``) when torchcodec cannot be used. ``device="cuda"`` decodes with
        torchcodec's CUDA decoder (NVDEC); it must run in a process that may use CUDA, not in
        a forked worker. ``keep`` (positions in ``wanted``): only those frames, found by their pts.
        """
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        VideoDecoder = _video_decoder()
        check_file(path)  # missing or empty: the same words as every decoder
        if stream_time_base is not None:
            tick = Fraction(stream_time_base)
        else:
            tick = facts.time_base(path) if facts is not None else time_base(path)
        wanted = np.asarray(wanted, dtype=np.int64)
        if keep is not None:
            wanted = wanted[np.asarray(keep, dtype=np.int64)]
        failure: Optional[BaseException] = None
        for mode in ("approximate", "exact"):
            try:
                decoder = VideoDecoder(path, num_ffmpeg_threads=threads, dimension_order="NHWC", seek_mode=mode,
                                       device=device)
            except Exception as exc:  # torchcodec raises RuntimeError or ValueError for unreadable input
                raise VideoError(path, f"not a readable video container (torchcodec: {_reason(exc)})",
                                 _UNREADABLE) from exc
            left = _left_to_turn(decoder, path, facts)
            try:
                frames = _played_at(decoder, wanted, tick, exact=mode == "exact")
                break
            except Exception as exc:  # misleading durations, a header that understates the length, truncation
                failure = exc
        else:
            if isinstance(failure, _WrongFrame):
                raise VideoError(path, f"torchcodec cannot find {where or 'the frames'} by their timestamps ({failure})",
                                 "decode it with decoder='pyav'") from failure
            raise VideoError(path, f"decoding {where or 'the window'} failed (torchcodec: {_reason(failure)})",
                             _TRUNCATED) from failure
        if left:
            frames = [upright(f, left) for f in frames]
        return frames if device != "cpu" else [f.numpy() for f in frames]
