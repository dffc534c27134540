"""DALI's own video decoder (``decoder="dali"``): NVDEC on the GPU, libavcodec on the CPU.

The window source only reads each file's bytes; ``fn.decoders.video`` decodes the batch
inside the graph — on ``"mixed"`` (NVDEC) in parallel for the whole batch. The default on
the GPU. Not every file suits it: its CPU variant reads only VP8, VP9 and MJPEG; NVDEC
refuses frames below a per-codec minimum and some chroma formats and bit depths
(:func:`nvdec_problem`), and a given GPU may refuse more (:func:`probe_problems` asks it).
:meth:`DaliDecoder.check` finds all of that before the first batch.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import MotionSSLError
from ..index import VideoIndex
from ..video_io import Media
from . import Decoder

log = logging.getLogger(__name__)

# Codecs that DALI 2.4's CPU video decoder reads.
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
# What fn.decoders.video on "mixed" (NVDEC) reads in DALI 2.4.0, read from its source and
# not yet measured on a GPU here (docs/design.md, "GPU facts"). Its GPU variant refuses
# MJPEG although its CPU variant reads it. DALI asks the driver for each codec's limits
# and refuses frames below the minimum ("Video is too small in at least one dimension");
# the minimum coded sizes (width, height) below are the figures NVIDIA publishes for its
# decoders — `python -m benchmarks.gpu_check` measures them on the GPU at hand.
NVDEC_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "mpeg4", "av1"})
NVDEC_MIN_SIZE: Dict[str, Tuple[int, int]] = {
    "h264": (48, 16), "hevc": (144, 144), "vp8": (48, 16), "vp9": (128, 128), "mpeg4": (48, 16), "av1": (128, 128),
}
# DALI creates every NVDEC session with 8-bit 4:2:0 (NV12) output: other chroma formats
# and bit depths either fail to open or come out wrong, so only these are accepted.
NVDEC_PIX_FMTS = frozenset({"yuv420p", "yuvj420p", "nv12"})


def nvdec_problem(media: Media) -> Optional[str]:
    """Why NVDEC (through DALI) cannot decode a file with this header, or ``None`` if it can."""
    if media.codec not in NVDEC_CODECS:
        return f"codec {media.codec} is not decoded by NVDEC (reads {sorted(NVDEC_CODECS)})"
    min_w, min_h = NVDEC_MIN_SIZE.get(media.codec, (0, 0))
    height, width = media.coded_size  # NVDEC decodes the frames as stored, before any rotation
    if width < min_w or height < min_h:
        return f"{width}x{height} frames are below NVDEC's {min_w}x{min_h} minimum for {media.codec}"
    if media.pix_fmt and media.pix_fmt not in NVDEC_PIX_FMTS:
        return (f"pixel format {media.pix_fmt} is not 8-bit 4:2:0, the only format DALI's NVDEC decoder "
                f"outputs")
    return None


def dali_cpu_problem(media: Media) -> Optional[str]:
    """Why DALI's CPU decoder cannot decode a file with this header, or ``None`` if it can."""
    if media.codec not in DALI_CPU_CODECS:
        return f"codec {media.codec} is not read by DALI's CPU decoder (reads {sorted(DALI_CPU_CODECS)})"
    return None


def decoder_problems(index: VideoIndex, device: str) -> List[Tuple[str, str]]:
    """``(path, reason)`` for every video of ``index`` that DALI's decoder on ``device`` cannot read."""
    check = nvdec_problem if device == "gpu" else dali_cpu_problem
    found = []
    for path, media in zip(index.paths, index.media):
        reason = check(media)
        if reason:
            found.append((path, reason))
    return found


class ProbeError(MotionSSLError, RuntimeError):
    """The NVDEC probe failed for a reason that says nothing about the video (out of memory, a GPU
    in exclusive-process mode, a driver error): falling back to PyAV would hide it."""


# DALI's own words when NVDEC cannot take a kind of video (frames_decoder_gpu.cc, DALI 2.4):
# the codec, chroma format or bit depth ("Codec configuration not supported on this GPU"),
# the frame size ("Video is too small/large in at least one dimension", "too many
# macroblocks"), or no parser for the codec. Only these make the dataset fall back.
UNSUPPORTED = re.compile(r"not supported|too small|too large|unsupported codec|bit stream filter", re.IGNORECASE)


def nvdec_probe(path: str, device_id: int = 0) -> Optional[str]:
    """``None`` if NVDEC on GPU ``device_id``, through DALI's mixed video decoder, decodes the first
    frames of ``path``; the reason (one line) if it refuses this kind of video.

    Any other failure raises :class:`ProbeError`. Builds a one-sample GPU pipeline on the
    process's own GPU: only on a GPU machine.
    """
    import numpy as np
    from nvidia.dali import fn, pipeline_def

    data = np.fromfile(path, dtype=np.uint8)

    @pipeline_def(batch_size=1, num_threads=1, device_id=device_id)
    def probe():
        encoded = fn.external_source(source=lambda: [data], batch=True)
        return fn.decoders.video(encoded, device="mixed", sequence_length=2, pad_mode="edge")

    try:
        pipe = probe()
        pipe.build()
        pipe.run()
        return None
    except Exception as exc:  # DALI raises RuntimeError with the driver's or FFmpeg's reason
        lines = [line.strip() for line in str(exc).split("encountered:", 1)[-1].splitlines() if line.strip()]
        reason = (lines[0] if lines else type(exc).__name__)[:300]
        if UNSUPPORTED.search(str(exc)):
            return reason
        raise ProbeError(f"decoding {path} with NVDEC on GPU {device_id} failed: {reason} — not a property of the "
                         "video, so the dataset is not moved to PyAV decoding; fix the GPU's state or pass "
                         "decoder='pyav'") from exc


_probed: Dict[Tuple[int, str, int, int], Optional[str]] = {}  # (GPU, path, size, mtime) → reason, per process


def probe_problems(index: VideoIndex, probe: Callable[[str], Optional[str]] = None,
                   device_id: int = 0) -> List[Tuple[str, str]]:
    """``(path, reason)`` for the videos whose kind the GPU at hand refuses, found by decoding a few.

    The table in :func:`nvdec_problem` is what NVIDIA publishes; what a given GPU and driver
    accept (AV1 only on recent chips, maximum sizes) is known only by asking. Videos are
    grouped by codec and pixel format, and the smallest and the largest of each group are
    decoded on GPU ``device_id``; if either fails, the whole group is reported. Answers are
    kept for the process, so the second loader of a run (MoQuad's warm-up and quadruple
    graphs) asks nothing again.
    """
    def ask(path: str) -> Optional[str]:
        if probe is not None:
            return probe(path)
        st = os.stat(path)
        key = (device_id, os.path.abspath(path), st.st_size, int(st.st_mtime))
        if key not in _probed:
            _probed[key] = nvdec_probe(path, device_id)
        return _probed[key]

    groups: Dict[Tuple[str, str], List[int]] = {}
    for i, media in enumerate(index.media):
        groups.setdefault((media.codec, media.pix_fmt), []).append(i)
    found = []
    for members in groups.values():
        by_area = sorted(members, key=lambda i: index.media[i].height * index.media[i].width)
        extremes = {(index.media[i].height, index.media[i].width): i for i in (by_area[-1], by_area[0])}
        reason = next((r for r in (ask(index.paths[i]) for i in extremes.values()) if r), None)
        if reason:
            found += [(index.paths[i], f"NVDEC refused a video of this kind on this GPU: {reason}") for i in members]
    return found


def _agree(problems: List[Tuple[str, str]], failure: Optional[str]):
    """``(count, first problem, where, failure)`` over every rank under ``torch.distributed``, else this process's.

    Every rank calls this at the same point (the same index, the same decoder asked for),
    so the collective is matched; ``where`` names the rank whose GPU refused, ``failure`` is
    the first rank's probe that failed for another reason (every rank then raises it).
    """
    import torch.distributed as dist

    first = problems[0] if problems else None
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return len(problems), first, "", failure
    gathered: List[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (len(problems), first, failure))
    failure = next((f"rank {rank}: {f}" for rank, (_, _, f) in enumerate(gathered) if f), None)
    for rank, (count, first, _) in enumerate(gathered):
        if count:
            return count, first, f" (on every rank: rank {rank}'s GPU refused a kind of video)", failure
    return 0, None, "", failure




class DaliDecoder(Decoder):
    """``fn.decoders.video`` inside the graph: the workers hand it each file's bytes and the window start."""

    name = "dali"
    in_graph = True
    doc = "DALI's decoder in the graph: NVDEC on the GPU (the default there), libavcodec on the CPU (VP8, VP9, MJPEG)"

    def check(self, index: VideoIndex, device: str, device_id: int = 0, bad_files: str = "skip"):
        """``(index with headers, count, first (path, reason), where)`` of the videos this decoder cannot read.

        Headers first (no decoding); on a GPU, when they pass, a probe decode of each kind
        of video on this process's GPU, the ranks agreeing (:func:`_agree`).
        """
        index = index.with_media(bad_files=bad_files)
        problems = decoder_problems(index, device)
        if problems or device != "gpu":
            return index, len(problems), (problems[0] if problems else None), ""
        try:
            local, failure = probe_problems(index, device_id=device_id), None
        except ProbeError as exc:  # raised on every rank below, not on this one alone (the others would wait)
            local, failure = [], str(exc)
        count, first, where, failure = _agree(local, failure)
        if failure:
            raise ProbeError(failure)
        return index, count, first, where

    def graph(self, encoded, start, length: int, device: str, rotation=None):
        """Graph op: ``(length, H, W, 3)`` uint8 frames from the encoded file, from frame ``start``.

        ``pad_mode="edge"`` repeats the last frame for short videos, as the frame decoders pad.
        Neither of DALI's decoders applies the display matrix: where ``rotation`` is given
        (some video of the dataset has one) ``fn.rotate`` turns each window by its video's
        quarter turn — exact, nearest-neighbour, height and width swapped for 90 and 270 —
        on the device the frames are on; a dataset without rotated videos has no such step.
        """
        from nvidia.dali import fn, types

        frames = fn.decoders.video(encoded, device="mixed" if device == "gpu" else "cpu", start_frame=start,
                                   sequence_length=length, pad_mode="edge")
        if rotation is None:
            return frames
        return fn.rotate(frames, angle=rotation, keep_size=False, interp_type=types.INTERP_NN)
