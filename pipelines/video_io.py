"""Video files with PyAV: open, probe, check for damage, write.

What every decoder and the index need to know about a file before decoding a window of
it — its frame count, frame timestamps, size, codec and pixel format (:func:`probe`,
:func:`scan`, :func:`frame_timestamps`; the index caches them) — the checks that name a
damaged file (:func:`decoder_errors`, :func:`checked_frames`, :func:`check_decoding`;
docs/design.md, "Damaged files"), and the writer of the lossless or short-GOP files that
the demo data, the tests and dataset preparation produce (:func:`write_video`). Decoding
windows is the decoders' (:mod:`.decoders`).

Every failure is a :class:`VideoError` that names the file, says what went wrong and
what to do about it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Iterator, List, Optional, Tuple

import numpy as np

from .errors import MotionSSLError

log = logging.getLogger(__name__)

CONVERT_HINT = (
    "convert it with `motionssl-prepare folder --src DIR --out DIR --codec vp9` "
    "(or: ffmpeg -i IN -an -c:v libvpx-vp9 -g 16 OUT.webm)"
)


class VideoError(MotionSSLError, RuntimeError):
    """A video file that cannot be used; the message names the file and the remedy."""

    def __init__(self, path: str, reason: str, hint: str = ""):
        self.path = str(path)
        self.reason = reason
        message = f"{path}: {reason}"
        if hint:
            message += f" — {hint}"
        super().__init__(message)


@dataclass(frozen=True)
class Media:
    """What a decoder needs to know before it opens a file: frame size, codec, pixel format, rotation, timestamps.

    ``pix_fmt`` is FFmpeg's name (``yuv420p``, ``yuv444p``, ``yuv420p10le``...): it carries
    the chroma subsampling and the bit depth, which decide whether NVDEC can decode a file.
    ``rotation`` is the counter-clockwise turn (0, 90, 180 or 270 degrees) that the file's
    display matrix asks for (:func:`display_rotation`); ``height`` and ``width`` are the size
    as displayed, after it — what every decoder returns. :attr:`coded_size` is the size stored.
    ``timing`` is ``(first pts, step, frames)`` when the frame timestamps are evenly spaced
    (:func:`even_timing`: a constant frame rate, as prepared data is), so the decoding
    workers need not demux the file for them; ``None`` when they are not, or not read yet
    (:func:`header` reads no timestamps; :func:`scan` and :func:`probe` do).
    """

    height: int
    width: int
    codec: str
    pix_fmt: str
    rotation: int = 0
    timing: Optional[Tuple[int, int, int]] = field(default=None, compare=False)  # read or not, the same file

    @property
    def coded_size(self) -> Tuple[int, int]:
        """``(height, width)`` of the frames as stored, before the rotation."""
        return (self.width, self.height) if self.rotation in (90, 270) else (self.height, self.width)


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    width: int
    height: int
    fps: float
    codec: str
    pix_fmt: str = ""
    gap: Optional[str] = None  # irregular timestamps: frames missing, or stamped alike (probe)
    rotation: int = 0  # display_rotation; width and height are the displayed size
    timing: Optional[Tuple[int, int, int]] = None  # Media.timing

    @property
    def media(self) -> Media:
        return Media(self.height, self.width, self.codec, self.pix_fmt, self.rotation, self.timing)


def check_file(path: str) -> None:
    """A :class:`VideoError` if ``path`` is missing or empty (the same words for every decoder)."""
    if not os.path.exists(path):
        raise VideoError(path, "file not found", "check the path in your file list or dataset folder")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "file is empty (0 bytes)", "re-download or re-encode it, or remove it from the list")


def open_video(path: str):
    import av

    check_file(path)
    try:
        container = av.open(path)
    except Exception as exc:  # PyAV raises several error types for unreadable input
        raise VideoError(path, f"not a readable video container ({exc.__class__.__name__}: {exc})",
                         "re-download or re-encode it, or remove it from the list") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(path, "contains no video stream", "remove it from the list")
    # Check what the format allows (CRCs, bitstream conformance, buffer overruns): a damaged
    # file then fails or logs an error instead of decoding into wrong pixels without a word.
    ctx = container.streams.video[0].codec_context
    if ctx is None:  # FFmpeg knows no decoder for the codec the header names
        container.close()
        raise VideoError(path, "its video stream is of a codec FFmpeg cannot decode (or its header is damaged)",
                         "re-download or re-encode it, or remove it from the list")
    ctx.options = {"err_detect": ERROR_CHECKS.get(ctx.name, ERROR_CHECKS[None])}
    return container


# FFmpeg's error checks (``err_detect``) per codec. "aggressive" makes the H.264 decoder treat
# slice data left over after a slice's last macroblock as an error, which payload damage
# usually leaves and conforming encoders never do: over 200 random overwrites of H.264 files
# it flagged 14 of the 15 damaged frames that decoded silently without it, and none of 60
# clean files from libx264 in 11 configurations (B-frames, pyramids, slices, CAVLC, 4:4:4).
# It stays off for other codecs, whose real-world files (xvid AVI) were not measured.
ERROR_CHECKS = {None: "crccheck+bitstream+buffer", "h264": "crccheck+bitstream+buffer+aggressive"}


def checked_frames(frames, errors: List[str]):
    """The decoded frames, each one flagged corrupt by the decoder recorded in ``errors``.

    A frame the decoder concealed damage in carries ``AV_FRAME_FLAG_CORRUPT`` or
    ``decode_error_flags`` (PyAV's ``is_corrupt``), also when nothing reached the log.
    """
    for frame in frames:
        if frame.is_corrupt:
            errors.append(f"the decoder marked the frame at pts {frame.pts} corrupt")
        yield frame


# --- rotation: the display matrix a phone writes ----------------------------------------------------
_warned_rotation: set = set()  # files whose display matrix was not applied, warned about once per process


def display_rotation(frame, path: str = "") -> int:
    """The counter-clockwise turn (0, 90, 180 or 270 degrees) that shows a decoded PyAV frame upright.

    A phone stores frames as its sensor delivers them and writes a display matrix that turns
    them for display (−90°, a quarter turn clockwise, for a phone held upright); FFmpeg
    attaches the stream's matrix to every decoded frame. Quarter turns are applied by every
    decoder of the toolkit (:func:`upright`). Any other matrix — another angle, or one that
    mirrors the picture — is not: the frames are used as stored, with one warning per file.
    """
    matrix = frame.side_data.get("DISPLAYMATRIX")
    if matrix is None:
        return 0
    m = np.frombuffer(bytes(matrix), dtype=np.int32).astype(np.float64)
    a, b, c, d = m[0], m[1], m[3], m[4]
    if a * d - b * c > 0:  # a rotation (times a scale); FFmpeg's av_display_rotation_get
        angle = -math.degrees(math.atan2(b / math.hypot(b, d), a / math.hypot(a, c)))
        turns = round(angle / 90)
        if abs(angle - 90 * turns) < 0.5:
            return 90 * turns % 360
        what = f"turns the picture by {angle:.0f} degrees, not a quarter turn"
    else:
        what = "mirrors the picture" if a * d - b * c < 0 else "is degenerate"
    if path not in _warned_rotation:
        _warned_rotation.add(path)
        log.warning("%s: its display matrix %s; its frames are used as stored, not turned", path, what)
    return 0


def upright(image, rotation: int):
    """An ``(H, W, C)`` frame (NumPy or torch) turned ``rotation`` degrees counter-clockwise (:func:`display_rotation`).

    A NumPy frame is returned as a view (no copy; the window's stack copies it once); an
    unrotated frame is returned as it is.
    """
    if not rotation:
        return image
    if isinstance(image, np.ndarray):
        return np.rot90(image, rotation // 90)
    import torch

    return torch.rot90(image, rotation // 90, dims=(0, 1))


def _first_frame(container, path: str):
    """The first decoded frame of the container's video stream; a :class:`VideoError` if there is none."""
    stream = container.streams.video[0]
    try:
        return next(container.decode(stream))
    except StopIteration:
        raise VideoError(path, "video stream has no decodable frame", "re-encode it or remove it") from None
    except Exception as exc:
        raise VideoError(path, f"cannot decode ({stream.codec_context.name}): {exc}", "re-encode it or remove it") \
            from exc


def _media(stream, first, path: str) -> Media:
    """The :class:`Media` of a stream whose first decoded frame is ``first``: the displayed size and the rotation."""
    turn = display_rotation(first, path)
    height, width = (first.width, first.height) if turn in (90, 270) else (first.height, first.width)
    return Media(int(height), int(width), stream.codec_context.name,
                 stream.codec_context.pix_fmt or first.format.name, turn)


def rotation(path: str) -> int:
    """The rotation of ``path``'s display matrix (:func:`display_rotation`); decodes the first frame."""
    container = open_video(path)
    try:
        return display_rotation(_first_frame(container, path), path)
    finally:
        container.close()


def header(path: str) -> Media:
    """Frame size as displayed, codec, pixel format and rotation (the header and the first frame)."""
    container = open_video(path)
    try:
        return _media(container.streams.video[0], _first_frame(container, path), path)
    finally:
        container.close()


def scan(path: str) -> Tuple[int, Media]:
    """``(frames, header)`` of ``path`` from one demux pass that decodes only the first frame: what
    :func:`frame_timestamps` counts, and what :func:`header` reads with :attr:`Media.timing`."""
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        first, stamps = None, []
        for packet in container.demux(stream):
            if first is None:  # its display matrix and size
                first = next(iter(stream.decode(packet)), None)
            if packet.size > 0 and packet.pts is not None:
                stamps.append(packet.pts)
        frames = len(stamps)
        if first is None and frames:  # a decoder that holds frames back gives them up when flushed
            first = next(iter(stream.decode(None)), None)
    except Exception as exc:
        raise VideoError(path, f"demuxing failed ({exc})", "the file is probably truncated; re-encode it") from exc
    finally:
        container.close()
    if frames == 0:
        raise VideoError(path, "video stream has no frames", "re-encode it or remove it")
    if first is None:
        raise VideoError(path, "video stream has no decodable frame", "re-encode it or remove it")
    return frames, replace(_media(stream, first, path), timing=even_timing(np.sort(stamps)))


@contextlib.contextmanager
def decoder_errors() -> Iterator[List[str]]:
    """Collect the errors FFmpeg's demuxers and decoders report (log level ERROR) inside the block.

    Damaged H.264, HEVC and MPEG-4 streams decode "successfully" with concealed errors and
    only say so in FFmpeg's log; with ``err_detect`` set (:func:`open_video`) some raise instead.
    The log goes to this list rather than to stderr; it is captured process-wide. Decode
    *single-threaded* inside this block (``thread_count = 1``, no ``thread_type``): the
    capture is a Python callback, and an FFmpeg worker thread that logs while the calling
    thread closes the decoder waits for the interpreter lock that the closing thread holds
    while it waits for the worker — a deadlock (seen in ``avcodec_free_context``). A VP9
    stream carries no checksum: a
    damaged frame payload can decode into wrong pixels without any error (damage that
    drops a frame shows as a gap in the timestamps, :func:`timestamp_gap`).
    """
    import av.logging

    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    if level is None or level > av.logging.ERROR:
        av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # a repeat of the previous file's last error must still be seen
    errors: List[str] = []
    try:
        with av.logging.Capture(local=False) as captured:
            yield errors
    finally:
        av.logging.set_skip_repeated(skip)
        av.logging.set_level(level)
    # The log first: it names what is wrong; frames flagged corrupt (checked_frames) only say where.
    errors[:0] = [f"{name}: {message.strip()}" for lvl, name, message in captured if lvl <= av.logging.ERROR]


MAX_GAPS = 2  # jumps in the timestamps beyond which a stream is taken for a variable-rate one


def even_timing(stamps: np.ndarray) -> Optional[Tuple[int, int, int]]:
    """``(first, step, count)`` of sorted timestamps spaced evenly (one frame: step 1), else ``None``."""
    stamps = np.asarray(stamps, dtype=np.int64)
    if len(stamps) == 0:
        return None
    steps = np.diff(stamps)
    step = int(steps[0]) if len(steps) else 1
    if step <= 0 or np.any(steps != step):
        return None
    return int(stamps[0]), step, len(stamps)


def timestamp_gap(stamps: np.ndarray) -> Optional[str]:
    """A description of missing frames in a constant-rate stream, or ``None``.

    When every step between the (sorted) frame timestamps is one step ``s`` except at most
    :data:`MAX_GAPS` steps that are whole multiples of it, frames are missing there (a
    damaged block the demuxer skipped: one jump per damaged place). A stream whose rate
    changes at more places is a variable-rate one — a recorder that leaves out repeated
    frames writes such steps all along — and is not flagged; nor is one with other steps
    too. A frame stamped with its neighbour's time (:func:`duplicate_timestamps`) is not
    missing: it fills one frame of a gap.
    """
    diffs = np.diff(np.asarray(stamps, dtype=np.int64))
    frame = np.flatnonzero(diffs > 0)  # the frame before each step between distinct timestamps
    steps = diffs[frame]
    if len(steps) < 2:
        return None
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    gaps = np.flatnonzero(steps != step)
    if np.any(steps % step) or not len(gaps) or len(gaps) > MAX_GAPS:
        return None
    missing = int(sum(steps[gaps] // step - 1)) - int(np.sum(diffs == 0))
    if missing <= 0:
        return None
    return f"{missing} frame(s) missing: the timestamps jump after frame {int(frame[gaps[0]])}"


def duplicate_timestamps(stamps: np.ndarray) -> Optional[str]:
    """A description of frames that share their timestamp with another, or ``None``.

    A muxer that rounds or miscounts can stamp two frames alike. The index counts both, and
    frame ``i`` is still the ``i``-th in timestamp order, ties in the order stored, as the
    PyAV decoder reads them; torchcodec finds frames by time and reads the first of the two
    twice.
    """
    same = np.flatnonzero(np.diff(np.asarray(stamps, dtype=np.int64)) == 0)
    if not len(same):
        return None
    return (f"duplicate timestamps: {len(same)} frame(s) share the timestamp of the frame before (first: frame "
            f"{int(same[0]) + 1}); each is kept as a frame of its own (decoder='torchcodec', which finds frames "
            "by time, reads the first of them twice)")


def check_decoding(path: str) -> int:
    """Decode every frame of ``path``; a :class:`VideoError` if the decoder reports errors or frames are missing.

    Returns the number of frames decoded. Costs a full decode: dataset preparation runs
    it; the index only checks the timestamps and the first frame (:func:`probe`).

    Besides the decoder's word (:func:`decoder_errors`, :func:`checked_frames`), the frames
    must come out of the decoder in the order of the stream's timestamps — the order every
    decoder of the toolkit reads them in — one per timestamp: damage to an MP4's timing
    tables decodes every frame without an error, but out of that order. Damage inside a
    frame's payload that still obeys the codec's syntax cannot be seen at all (docs/design.md,
    "Damaged files").
    """
    pts: List[Optional[int]] = []
    with decoder_errors() as errors:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # single-threaded under decoder_errors (see there)
            pts.extend(frame.pts for frame in checked_frames(container.decode(stream), errors))
        except Exception as exc:
            errors.insert(0, f"{exc.__class__.__name__}: {exc}")
        finally:
            container.close()
    hint = "re-download or re-encode it, or remove it from the list"
    if errors:
        raise VideoError(path, f"the decoder reported damaged data ({'; '.join(errors[:3])})", hint)
    if not pts:
        raise VideoError(path, "no frame could be decoded", hint)
    stamps = frame_timestamps(path)
    gap = timestamp_gap(stamps)
    if gap:
        raise VideoError(path, f"damaged: {gap}", hint)
    if len(pts) != len(stamps):  # frames the decoder dropped without a word
        raise VideoError(path, f"damaged: {len(pts)} frames decoded of the {len(stamps)} the stream holds", hint)
    moved = [k for k, (got, want) in enumerate(zip(pts, stamps)) if got is not None and got != want]
    if moved:
        k = moved[0]
        raise VideoError(path, f"damaged timestamps: the decoder returns frame {k} with pts {pts[k]}, where the "
                               f"{k}-th smallest timestamp is {stamps[k]} ({len(moved)} frames out of order)", hint)
    return len(pts)


def frame_timestamps(path: str) -> np.ndarray:
    """Presentation timestamps of every frame in display order (demux only, no decoding).

    Frame ``i`` of the video is the frame whose pts is the ``i``-th smallest; seeking by
    these values is exact for variable frame rates and B-frames alike.
    """
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.size > 0 and p.pts is not None]
    except Exception as exc:
        raise VideoError(path, f"demuxing failed ({exc})", "the file is probably truncated; re-encode it") from exc
    finally:
        container.close()
    return np.sort(np.asarray(pts, dtype=np.int64))


def time_base(path: str) -> Fraction:
    """The video stream's time base: a pts of :func:`frame_timestamps` times it is seconds.

    Opening the container costs about 4 ms of CPU on a 320×240 WebM (the demuxer reads
    ahead to find the stream's parameters), so callers that need it per window cache it.
    """
    container = open_video(path)
    try:
        base = container.streams.video[0].time_base
    finally:
        container.close()
    if not base:
        raise VideoError(path, "the video stream declares no time base", "re-encode it or remove it from the list")
    return Fraction(base)


def probe(path: str) -> VideoInfo:
    """Frame count, size (as displayed), rate, codec and rotation of ``path``; decodes the first frame to prove it reads.

    ``gap`` describes irregular timestamps: frames missing from a constant-rate stream
    (:func:`timestamp_gap`: damage, or frames dropped at the source) and frames stamped alike
    (:func:`duplicate_timestamps`); the index warns about them. A full decode with
    the decoder's error checks is :func:`check_decoding`.
    """
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        media = _media(stream, _first_frame(container, path), path)
    finally:
        container.close()
    stamps = frame_timestamps(path)
    num_frames = len(stamps)
    if num_frames == 0:
        raise VideoError(path, "video stream has no frames", "re-encode it or remove it")
    return VideoInfo(num_frames=num_frames, width=media.width, height=media.height, fps=fps, codec=media.codec,
                     pix_fmt=media.pix_fmt, rotation=media.rotation, timing=even_timing(stamps),
                     gap="; ".join(filter(None, (timestamp_gap(stamps), duplicate_timestamps(stamps)))) or None)


def write_video(path: str, frames: np.ndarray, fps: int = 25, codec: str = "vp9", gop: int = 16,
                lossless: bool = False, crf: int = 32) -> None:
    """Write ``(T, H, W, 3)`` uint8 RGB frames with no audio stream.

    ``codec`` is ``"vp9"`` (``.webm``; DALI reads it on CPU and GPU), ``"h264"``
    (``.mp4``/``.mkv``; GPU decoder only; needs even width and height), ``"mpeg4"`` (xvid-
    like, for tests of the conversion path) or ``"mjpeg"``. ``lossless`` keeps exact pixel
    values (VP9/H.264), which the tests use to encode frame indices in the pixels.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    names = {"vp9": "libvpx-vp9", "h264": "libx264", "mpeg4": "mpeg4", "mjpeg": "mjpeg", "vp8": "libvpx"}
    if codec not in names:
        raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(names)}")
    if codec in ("h264", "mpeg4") and (h % 2 or w % 2):
        raise ValueError(f"{codec} needs even width and height, got {w}x{h}")
    options = {}
    pix_fmt = "yuv420p"
    if codec == "vp9":
        options = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        options.update({"lossless": "1"} if lossless else {"crf": str(crf), "b": "0"})
    elif codec == "vp8":
        options = {"deadline": "realtime", "cpu-used": "8", "crf": str(max(crf, 4)), "b": "1M"}
    elif codec == "h264":
        options = {"preset": "veryfast", "tune": "fastdecode"}
        options.update({"qp": "0"} if lossless else {"crf": str(min(crf, 51))})
        if lossless:
            pix_fmt = "yuv444p"
    elif codec == "mpeg4":
        options = {"qscale": "3"}
    elif codec == "mjpeg":
        pix_fmt = "yuvj420p"
    tmp = f"{path}.part{os.getpid()}"
    fmt = {"vp9": "webm", "vp8": "webm"}.get(codec)
    if fmt is None:
        ext = os.path.splitext(path)[1].lower()
        fmt = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}.get(ext, "matroska")
    try:
        with av.open(tmp, mode="w", format=fmt) as container:
            stream = container.add_stream(names[codec], rate=Fraction(fps).limit_denominator(1001), options=options)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            stream.codec_context.gop_size = gop
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
