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

from pipelines.video_io import write_video

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
