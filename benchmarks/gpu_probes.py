"""The GPU check's measurements of NVDEC (:mod:`benchmarks.gpu_check`), each run in a stage's child process.

:func:`probe_sizes` (``nvdec_sizes``) and :func:`decode_rate` (``nvdec_rate``) write one JSON
line per measurement as they go, so a child that crashes or runs out of time leaves what it
measured; :func:`size_verdict` reads the size probe's lines.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import List

# How the size probe writes each codec: write_video's codec, or a PyAV encoder of its own (write_video has
# none for HEVC and AV1), and the file's extension.
ENCODERS = {"h264": ("h264", ".mkv"), "vp9": ("vp9", ".webm"), "vp8": ("vp8", ".webm"), "mpeg4": ("mpeg4", ".mkv"),
            "hevc": ("libx265", ".mkv"), "av1": ("libsvtav1", ".mkv")}


def encode(path: str, frames, codec: str) -> None:
    """Write ``(T, H, W, 3)`` uint8 frames as ``codec`` (see ``ENCODERS``)."""
    import av

    from motionssl.pipelines.video_io import write_video

    name = ENCODERS[codec][0]
    if name == codec:
        write_video(path, frames, codec=codec, gop=4)
        return
    with av.open(path, mode="w", format="matroska") as container:
        stream = container.add_stream(name, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def probe_sizes(out_path: str) -> None:
    """In a child process: one JSON line per (codec, size) — whether NVDEC decodes it (``nvdec_sizes``).

    ``outcome``: ``decoded``; ``refused`` (NVDEC's own refusal, ``nvdec`` says why); ``error`` (a failure that
    says nothing about the size: out of memory, a driver error); ``not measured`` (no encoder here)."""
    import numpy as np

    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE, nvdec_probe

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for codec, (min_w, min_h) in sorted(NVDEC_MIN_SIZE.items()):
            for label, (w, h) in (("at the minimum", (min_w, min_h)),
                                  ("below it", (max(2, (min_w // 2) & ~1), max(2, (min_h // 2) & ~1)))):
                row = {"codec": codec, "case": label, "size": [w, h]}
                path = os.path.join(tmp, f"{codec}-{w}x{h}{ENCODERS.get(codec, ('', '.mkv'))[1]}")
                try:
                    encode(path, rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8), codec)
                except Exception as exc:
                    row.update(outcome="not measured", nvdec=f"no encoder here ({type(exc).__name__}: {exc})"[:300])
                else:
                    try:
                        refused = nvdec_probe(path)
                        row.update(outcome="refused" if refused else "decoded", nvdec=refused or "ok")
                    except Exception as exc:
                        row.update(outcome="error", nvdec=f"{type(exc).__name__}: {str(exc)[:200]}")
                with open(out_path, "a") as f:
                    f.write(json.dumps(row) + "\n")


def size_verdict(rows: List[dict]) -> tuple:
    """``(mismatches, figure)`` of the size probe's rows: a codec holds only where both of its rows were measured
    and NVDEC decoded the minimum and refused (itself, not by an error) the size below it."""
    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE

    mismatches, held, unmeasured = [], [], []
    for codec in sorted(NVDEC_MIN_SIZE):
        cases = {r["case"]: r for r in rows if r["codec"] == codec}
        at, below = cases.get("at the minimum"), cases.get("below it")
        if at is None or below is None or "not measured" in (at["outcome"], below["outcome"]):
            unmeasured.append(codec)
            continue
        wrong = []
        if at["outcome"] != "decoded":
            wrong.append(f"NVDEC {'refused' if at['outcome'] == 'refused' else 'failed on'} {at['size']} "
                         f"({at['nvdec']})")
        if below["outcome"] == "decoded":
            wrong.append(f"NVDEC decoded {below['size']}, below the assumed minimum")
        elif below["outcome"] == "error":
            wrong.append(f"the probe of {below['size']} failed ({below['nvdec']}), which says nothing about size")
        mismatches += [f"{codec}: {w}" for w in wrong]
        if not wrong:
            held.append(codec)
    figure = "; ".join(mismatches) if mismatches else (
        f"the assumed minimum sizes hold for {', '.join(held)}" if held else "no codec measured")
    if unmeasured:
        figure += f"; not measured: {', '.join(unmeasured)}"
    return mismatches, figure


def decode_rate(list_path: str, out_path: str, seconds: float, device: str = "gpu", decoder: str = "dali",
                batch_size: int = 8, block: int = 4) -> None:
    """In a child process: decode ``list_path``'s videos (16-frame windows, nothing else: the decode-only
    pipeline) for about ``seconds`` after the first batch, and write one JSON line per ``block`` batches as it
    goes (``nvdec_rate``: ``device="gpu"``, ``decoder="dali"`` is NVDEC)."""
    from benchmarks.common import close, replicate, synchronizer
    from benchmarks.decode_only import build_iterator
    from motionssl.pipelines.index import load_index

    index = replicate(load_index(list_path), batch_size * 4096)  # one epoch outlasts the measurement
    it = build_iterator("decode", index, batch_size, device, 0, {"window": 16}, decoder=decoder,
                        num_workers=0 if decoder == "dali" else 2)
    sync = synchronizer(device)
    batches = iter(it)
    next(batches)  # the build and the first batch: not timed
    frames = batch_size * it.planner.window
    end = time.perf_counter() + seconds
    while True:
        sync()
        start = time.perf_counter()
        for _ in range(block):
            next(batches)
        sync()
        took = time.perf_counter() - start
        with open(out_path, "a") as f:
            f.write(json.dumps({"frames": block * frames, "seconds": took, "frames_per_s": block * frames / took}) + "\n")
        if time.perf_counter() >= end:
            break
    batches.close()
    close(it)
