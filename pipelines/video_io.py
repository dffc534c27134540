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
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, List, Optional, Tuple

import numpy as np

CONVERT_HINT = (
    "convert it with `motionssl-prepare folder --src DIR --out DIR --codec vp9` "
    "(or: ffmpeg -i IN -an -c:v libvpx-vp9 -g 16 OUT.webm)"
)


class VideoError(RuntimeError):
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
    """What a decoder needs to know before it opens a file: frame size, codec and pixel format.

    ``pix_fmt`` is FFmpeg's name (``yuv420p``, ``yuv444p``, ``yuv420p10le``...): it carries
    the chroma subsampling and the bit depth, which decide whether NVDEC can decode a file.
    """

    height: int
    width: int
    codec: str
    pix_fmt: str


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    width: int
    height: int
    fps: float
    codec: str
    pix_fmt: str = ""
    gap: Optional[str] = None  # frames missing from a constant-rate stream (timestamp_gap)

    @property
    def media(self) -> Media:
        return Media(self.height, self.width, self.codec, self.pix_fmt)


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


def header(path: str) -> Media:
    """Frame size, codec and pixel format from the container header (no decoding)."""
    container = open_video(path)
    try:
        ctx = container.streams.video[0].codec_context
        return Media(int(ctx.height), int(ctx.width), ctx.name, ctx.pix_fmt or "")
    finally:
        container.close()


def scan(path: str) -> Tuple[int, Media]:
    """``(frames, header)`` of ``path`` from one demux pass (no decoding): what :func:`frame_timestamps`
    counts, and what :func:`header` reads."""
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        media = Media(int(ctx.height), int(ctx.width), ctx.name, ctx.pix_fmt or "")
        frames = sum(1 for p in container.demux(stream) if p.size > 0 and p.pts is not None)
    except Exception as exc:
        raise VideoError(path, f"demuxing failed ({exc})", "the file is probably truncated; re-encode it") from exc
    finally:
        container.close()
    if frames == 0:
        raise VideoError(path, "video stream has no frames", "re-encode it or remove it")
    return frames, media


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


def timestamp_gap(stamps: np.ndarray) -> Optional[str]:
    """A description of missing frames in a constant-rate stream, or ``None``.

    When every step between frame timestamps is one step ``s`` except steps that are whole
    multiples of it, frames are missing there (a damaged block the demuxer skipped). A
    variable-rate stream has other steps too and is never flagged.
    """
    if len(stamps) < 3:
        return None
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    if step <= 0 or np.any(steps % step) or np.all(steps == step):
        return None
    gaps = np.flatnonzero(steps != step)
    missing = int(sum(steps[g] // step - 1 for g in gaps))
    return f"{missing} frame(s) missing: the timestamps jump after frame {int(gaps[0])}"


def check_decoding(path: str) -> int:
    """Decode every frame of ``path``; a :class:`VideoError` if the decoder reports errors or frames are missing.

    Returns the number of frames decoded. Costs a full decode: dataset preparation runs
    it; the index only checks the timestamps and the first frame (:func:`probe`).
    """
    count = 0
    with decoder_errors() as errors:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # single-threaded under decoder_errors (see there)
            for _ in checked_frames(container.decode(stream), errors):
                count += 1
        except Exception as exc:
            errors.insert(0, f"{exc.__class__.__name__}: {exc}")
        finally:
            container.close()
    if errors:
        raise VideoError(path, f"the decoder reported damaged data ({'; '.join(errors[:3])})",
                         "re-download or re-encode it, or remove it from the list")
    stamps = frame_timestamps(path)
    gap = timestamp_gap(stamps)
    if gap:
        raise VideoError(path, f"damaged: {gap}", "re-download or re-encode it, or remove it from the list")
    if count != len(stamps):  # frames the decoder dropped without a word
        raise VideoError(path, f"damaged: {count} frames decoded of the {len(stamps)} the stream holds",
                         "re-download or re-encode it, or remove it from the list")
    return count


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
    """Frame count, size, rate and codec of ``path``; decodes the first frame to prove it reads.

    ``gap`` describes frames missing from a constant-rate stream (:func:`timestamp_gap`):
    damage, or a frame dropped at the source; the index warns about it. A full decode with
    the decoder's error checks is :func:`check_decoding`.
    """
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt or ""
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        try:
            first = next(container.decode(stream))
        except StopIteration:
            raise VideoError(path, "video stream has no decodable frame", "re-encode it or remove it") from None
        except Exception as exc:
            raise VideoError(path, f"cannot decode ({codec}): {exc}", "re-encode it or remove it") from exc
        width, height = first.width, first.height
        pix_fmt = pix_fmt or first.format.name
    finally:
        container.close()
    stamps = frame_timestamps(path)
    num_frames = len(stamps)
    if num_frames == 0:
        raise VideoError(path, "video stream has no frames", "re-encode it or remove it")
    return VideoInfo(num_frames=num_frames, width=width, height=height, fps=fps, codec=codec, pix_fmt=pix_fmt,
                     gap=timestamp_gap(stamps))


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
