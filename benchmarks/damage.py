"""How often is a damaged video file caught? Random overwrites, decoded with the toolkit's checks.

    python -m benchmarks.damage --trials 200            # H.264, VP9 and MPEG-4, about 2 min

Each trial copies a clean video (demo-like textured motion, 128×128, 48 frames, GOP 16),
overwrites 1–64 random bytes at a random offset — a bad sector, a truncated download
patched up, a flipped cable bit — and decodes every frame twice:

* **log only**: FFmpeg's decoder-error log with ``err_detect=crccheck+bitstream+buffer``
  (what the toolkit did before frames were checked one by one);
* **full check**: :func:`pipelines.video_io.check_decoding` — the per-codec error checks,
  the log, each frame's corrupt flag, the frame count against the stream's and the
  timestamps.

A trial counts as *harmless* when the file still decodes to exactly the clean frames
(bytes in padding or unused header fields), *detected* when the check raises, and
*silent* when it decodes into other pixels (or other frame counts) without a word. The
rate printed is detected / (detected + silent).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Dict, List

import numpy as np

from motionssl.pipelines import demo
from motionssl.pipelines.decoders.pyav import to_rgb
from motionssl.pipelines.video_io import VideoError, check_decoding, decoder_errors, open_video, write_video

CODECS = {"h264": ".mp4", "vp9": ".webm", "mpeg4": ".avi"}


def decode_all(path: str, log_only: bool):
    """``(frames, detected)``: every frame as RGB, and whether the chosen check raised or logged."""
    frames: List[np.ndarray] = []
    if not log_only:
        try:
            check_decoding(path)
            detected = False
        except VideoError:
            detected = True
    with decoder_errors() as errors:
        try:
            container = open_video(path)
            stream = container.streams.video[0]
            if log_only:
                stream.codec_context.options = {"err_detect": "crccheck+bitstream+buffer"}
            stream.codec_context.thread_count = 1
            for frame in container.decode(stream):
                frames.append(to_rgb(frame))
            container.close()
        except Exception:  # an exception is a detection in both modes
            errors.append("raised")
    if log_only:
        detected = bool([e for e in errors if "marked the frame" not in e])
    return frames, detected or "raised" in errors


def run(trials: int, seed: int) -> Dict[str, Dict[str, int]]:
    rng = np.random.default_rng(seed)
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for codec, ext in CODECS.items():
            clean_paths = []
            for v in range(4):
                path = os.path.join(tmp, f"clean{v}{ext}")
                frames = demo.render(v, np.random.default_rng([seed, v]), size=128, num_frames=48)
                write_video(path, frames, codec=codec, gop=16, crf=23)
                clean_paths.append((path, decode_all(path, log_only=True)[0]))
            counts = {f"{mode} {kind}": 0 for mode in ("log only", "full check") for kind in ("detected", "silent")}
            counts["harmless"] = 0
            bad = os.path.join(tmp, f"bad{ext}")
            for trial in range(trials):
                path, clean = clean_paths[trial % len(clean_paths)]
                data = bytearray(open(path, "rb").read())
                n = int(rng.integers(1, 65))
                offset = int(rng.integers(0, len(data) - n))
                data[offset:offset + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                with open(bad, "wb") as f:
                    f.write(bytes(data))
                frames, _ = decode_all(bad, log_only=True)
                same = len(frames) == len(clean) and all(np.array_equal(a, b) for a, b in zip(frames, clean))
                for mode in ("log only", "full check"):
                    _, detected = decode_all(bad, log_only=mode == "log only")
                    if detected:
                        counts[f"{mode} detected"] += 1
                    elif not same:
                        counts[f"{mode} silent"] += 1
                counts["harmless"] += same and not decode_all(bad, log_only=False)[1]
            table[codec] = counts
    return table


def main(argv=None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="overwrites per codec")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.time()
    table = run(args.trials, args.seed)
    print(f"random overwrites of 1-64 bytes, {args.trials} per codec (seed {args.seed}), "
          f"{time.time() - start:.0f} s\n")
    print("| codec | harmless | log only: detected / silent | rate | full check: detected / silent | rate |")
    print("|---|---:|---:|---:|---:|---:|")
    for codec, c in table.items():
        rates = []
        for mode in ("log only", "full check"):
            d, s = c[f"{mode} detected"], c[f"{mode} silent"]
            rates.append(f"{d} / {s} | {100 * d / max(1, d + s):.1f} %")
        print(f"| {codec} | {c['harmless']} | {rates[0]} | {rates[1]} |")
    return table


if __name__ == "__main__":
    main()
