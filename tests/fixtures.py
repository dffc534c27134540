"""Tiny videos whose pixels encode their own frame index and video id.

Every frame is flat grey at level 4·frame, written as lossless VP9: grey survives the
RGB → YUV 4:2:0 → RGB round trip to within ±1 (colours do not: chroma is quantised), so
:func:`decode_ids` rounds the level back to the frame index and every index computation
(window start, speed, residual gap) is checked exactly. The video of a sample is known
from the batch's ``index`` output.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np

from motionssl.pipelines.video_io import write_video

MAX_FRAMES = 64  # 4·63 = 252 still fits a uint8


def id_frames(num_frames: int, height: int = 32, width: int = 48) -> np.ndarray:
    if num_frames > MAX_FRAMES:
        raise ValueError(f"at most {MAX_FRAMES} frames can carry their index")
    levels = (4 * np.arange(num_frames)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()


def write_id_videos(folder: str, lengths: Sequence[int], height: int = 32, width: int = 48,
                    codec: str = "vp9", classes: int = 2) -> str:
    """Write ``len(lengths)`` id videos under ``folder/videos`` and a list ``folder/list.txt``.

    Returns the list path; video ``v`` has label ``v % classes``.
    """
    ext = {"vp9": ".webm", "h264": ".mp4", "mpeg4": ".avi", "mjpeg": ".mkv"}[codec]
    os.makedirs(os.path.join(folder, "videos"), exist_ok=True)
    lines: List[str] = []
    for v, n in enumerate(lengths):
        name = os.path.join("videos", f"v{v:03d}{ext}")
        write_video(os.path.join(folder, name), id_frames(n, height, width), codec=codec,
                    lossless=codec in ("vp9", "h264"), gop=8)
        lines.append(f"{name} {v % classes}")
    path = os.path.join(folder, "list.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def decode_ids(frames: np.ndarray) -> np.ndarray:
    """``(F, H, W, 3)`` frames (uint8 or float, ``FHWC``) → the frame index of each frame."""
    levels = np.asarray(frames, dtype=np.float64).mean(axis=(1, 2, 3))
    return np.rint(levels / 4).astype(int)


# --- files a user's dataset may hold: odd, damaged, or no video at all -----------------------------
def textured_frames(num_frames: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Coloured, moving sine texture: every frame and every channel differs."""
    y, x = np.mgrid[0:height, 0:width]
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        for c in range(3):
            out[i, ..., c] = np.clip(127 + 100 * np.sin(0.2 * x + 0.13 * y * (c + 1) + 0.3 * i + seed), 0, 255)
    return out


def write_raw(path: str, frames: np.ndarray, codec: str, fmt: str, pix_fmt: str = "yuv420p",
              pts: Sequence[int] = None, rate: int = 25, gop: int = 12, options: dict = None,
              display: tuple = None) -> str:
    """Write frames with any PyAV encoder and pixel format; ``pts`` (in 1/rate units) makes the rate variable;
    ``display`` = ``(degrees counter-clockwise, mirrored)`` writes a display matrix."""
    from fractions import Fraction

    import av

    with av.open(path, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.codec_context.gop_size = gop
        if display:
            stream.set_display_rotation(display[0], hflip=display[1])
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_turned(path: str, frames: np.ndarray, rotation: int, codec: str = "h264") -> str:
    """Upright ``frames`` stored as a phone stores them: turned back, with a display matrix that turns them
    ``rotation`` degrees counter-clockwise (0, 90, 180 or 270; a phone held upright writes 270, "−90")."""
    stored = np.ascontiguousarray(np.rot90(frames, -(rotation // 90), axes=(1, 2)))
    encoder, fmt, options = {"h264": ("libx264", "mp4", {"crf": "10", "preset": "veryfast"}),
                             "vp9": ("libvpx-vp9", "webm", {"crf": "10", "b": "0", "deadline": "realtime",
                                                            "cpu-used": "8"})}[codec]
    return write_raw(path, stored, encoder, fmt, gop=8, options=options, display=(rotation, False) if rotation else None)


def write_audio_only(path: str) -> str:
    """A Matroska file with one second of silence and no video stream."""
    import av

    with av.open(path, "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def damage_packet(path: str, packet: int, out: str, length: int = 40) -> str:
    """Flip ``length`` bytes a third into the payload of video packet ``packet``; writes ``out``."""
    import av

    with av.open(path) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[packet]
    data = bytearray(open(path, "rb").read())
    for k in range(pos + size // 3, min(pos + size // 3 + length, pos + size)):
        data[k] ^= 0xA5
    with open(out, "wb") as f:
        f.write(bytes(data))
    return out


def damage_box(path: str, box: bytes, at: int, out: str, length: int = 1) -> str:
    """Flip ``length`` bytes from byte ``at`` of the first MP4 box of type ``box`` (``b"ctts"``; 0 is
    its header's first byte); writes ``out``."""
    data = bytearray(open(path, "rb").read())

    def find(start: int, end: int) -> int:
        while start + 8 <= end:
            size, kind = int.from_bytes(data[start:start + 4], "big"), bytes(data[start + 4:start + 8])
            if kind == box:
                return start
            if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
                inner = find(start + 8, start + size)
                if inner >= 0:
                    return inner
            start += max(size, 8)
        return -1

    where = find(0, len(data))
    if where < 0:
        raise ValueError(f"{path} holds no {box!r} box")
    for k in range(where + at, where + at + length):
        data[k] ^= 0xFF
    with open(out, "wb") as f:
        f.write(bytes(data))
    return out


# --- coloured frames that still carry their index: what a GPU can get wrong shows --------------------
STEP = 6  # grey level per frame index in the band: survives lossy coding and NVDEC's conversion
BAND = 3  # half-height of the index band, in rows
KINETICS_SHAPES = ((256, 456), (256, 342))  # (H, W) prepare --short-side 256 writes for 16:9 and 4:3 sources


def coloured_id_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Coloured, textured, asymmetric ``(T, H, W, 3)`` frames whose middle rows carry the frame index.

    * Red varies along x, green along y and blue along the diagonal, with other periods,
      and the texture moves with the frame index: a wrong frame, crop window, flip, height
      and width swapped or a channel order shows everywhere.
    * Four corner patches of distinct colours (red top-left, green top-right, blue
      bottom-left, yellow bottom-right): no flip or transpose maps the picture onto itself.
    * A band of ``2·BAND`` rows across the middle is flat grey at ``STEP·frame`` (R = G =
      B): the index survives chroma subsampling and lossy coding (:func:`band_ids`).
    """
    if STEP * (num_frames - 1) > 255:
        raise ValueError(f"at most {255 // STEP + 1} frames can carry their index")
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((num_frames, height, width, 3), np.uint8)
    patch = max(4, min(height, width) // 6)
    corners = {(0, 0): (230, 30, 30), (0, 1): (30, 200, 40), (1, 0): (40, 40, 220), (1, 1): (235, 220, 30)}
    for i in range(num_frames):
        frame = np.stack([128 + 90 * np.sin(2 * np.pi * (x + 3 * i + seed) / 37),
                          128 + 90 * np.sin(2 * np.pi * (y + 2 * i) / 23 + seed),
                          128 + 90 * np.sin(2 * np.pi * (x + y - 4 * i) / 51)], -1)
        for (bottom, right), colour in corners.items():
            rows = slice(height - patch, height) if bottom else slice(0, patch)
            cols = slice(width - patch, width) if right else slice(0, patch)
            frame[rows, cols] = colour
        frame[height // 2 - BAND:height // 2 + BAND] = STEP * i
        out[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def band_ids(frames) -> np.ndarray:
    """``(F, H, W, 3)`` decoded frames (uint8 or float) → the frame index each one carries in its band."""
    frames = np.asarray(frames, dtype=np.float64)
    h = frames.shape[1]
    band = frames[:, h // 2 - BAND + 1:h // 2 + BAND - 1]  # inner rows: chroma of the neighbours bleeds in
    return np.rint(np.median(band, axis=(1, 2, 3)) / STEP).astype(int)


def write_coloured_videos(folder: str, shapes: Sequence, num_frames=40, codec: str = "vp9",
                          bframes: bool = False) -> str:
    """One coloured id video per ``(H, W)`` of ``shapes`` under ``folder``, and ``folder/list.txt``; its path.

    ``num_frames``: one length for all, or one per video. ``bframes`` (H.264) writes B-frames and checks
    that the file holds them.
    """
    os.makedirs(folder, exist_ok=True)
    ext = {"vp9": ".webm", "h264": ".mp4"}[codec]
    lengths = [num_frames] * len(shapes) if np.isscalar(num_frames) else list(num_frames)
    lines = []
    for v, ((height, width), n) in enumerate(zip(shapes, lengths)):
        name = f"c{v:02d}_{width}x{height}{ext}"
        path = os.path.join(folder, name)
        frames = coloured_id_frames(n, height, width, seed=v)
        if codec == "h264" and bframes:
            write_raw(path, frames, "libx264", "mp4", gop=12,
                      options={"preset": "medium", "crf": "12", "x264-params": "bframes=3:b-adapt=0:b-pyramid=normal"})
            if count_bframes(path) == 0:
                raise AssertionError(f"{path} holds no B-frames: it cannot test their order")
        else:
            write_video(path, frames, codec=codec, gop=12, crf=10)
        lines.append(f"{name} {v % 2}")
    list_path = os.path.join(folder, "list.txt")
    with open(list_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return list_path


def count_bframes(path: str) -> int:
    """How many frames of ``path`` the decoder reports as B-frames."""
    import av
    from av.video.frame import PictureType

    with av.open(path) as container:
        return sum(frame.pict_type == PictureType.B for frame in container.decode(video=0))
