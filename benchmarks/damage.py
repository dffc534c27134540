"""How often is a damaged video file caught? Random overwrites by size, decoded with the toolkit's checks.

    python -m benchmarks.damage --trials 40             # 4 codecs × 7 sizes, about a minute on 2 cores
    python -m benchmarks.damage --sizes 1 2 4 --codecs h264 --trials 100

Each trial copies a clean video (demo-like textured motion, 128×128, 48 frames, GOP 16),
overwrites ``n`` random bytes at a random offset — a bad sector, a truncated download
patched up, a flipped cable bit — for every ``n`` of ``--sizes`` (1 to 128 bytes), and
decodes it:

* **log only**: FFmpeg's decoder-error log with ``err_detect=crccheck+bitstream+buffer``
  (what the toolkit did before frames were checked one by one);
* **full check**: :func:`pipelines.video_io.check_decoding` — the per-codec error checks,
  the log, each frame's corrupt flag, the frame count, the decoded frames' timestamps
  against the stream's, and gaps in a constant-rate stream.

A trial is *harmless* when the file still decodes to exactly the clean frames in the
order of their timestamps (the order every decoder of the toolkit reads them in), and the
full check passes it; *detected* when the check raises; *silent* when it decodes into other
frames (other pixels, another count or another order) without a word. The rate is
detected / (detected + silent). For the silent trials the table gives how many frames were
wrong and by how many grey levels at most (the worst trial).

Codecs: ``h264`` is :func:`~pipelines.video_io.write_video`'s (CAVLC, ``tune=fastdecode``),
``h264-cabac`` libx264's defaults at preset medium (CABAC, B-frames: most H.264 files),
``vp9`` and ``mpeg4`` (xvid-like, in AVI).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np

from motionssl.pipelines import demo
from motionssl.pipelines.decoders.pyav import to_rgb
from motionssl.pipelines.video_io import VideoError, check_decoding, decoder_errors, open_video, write_video

CODECS = {"h264": ".mp4", "h264-cabac": ".mp4", "vp9": ".webm", "mpeg4": ".avi"}
SIZES = (1, 2, 4, 8, 16, 64, 128)


def write_clean(path: str, frames: np.ndarray, codec: str) -> None:
    """A clean file of ``codec`` (a key of :data:`CODECS`) with GOP 16."""
    if codec != "h264-cabac":
        write_video(path, frames, codec=codec, gop=16, crf=23)
        return
    from fractions import Fraction

    import av

    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "medium", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.gop_size = 16
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def decode_log_only(path: str) -> Tuple[List[np.ndarray], bool]:
    """``(frames in timestamp order, detected)``: every frame as RGB, and whether the log (or an exception) spoke."""
    frames: List[Tuple[int, int, np.ndarray]] = []
    raised = False
    with decoder_errors() as errors:
        try:
            container = open_video(path)
            stream = container.streams.video[0]
            stream.codec_context.options = {"err_detect": "crccheck+bitstream+buffer"}
            stream.codec_context.thread_count = 1
            for k, frame in enumerate(container.decode(stream)):
                frames.append((frame.pts if frame.pts is not None else k, k, to_rgb(frame)))
            container.close()
        except Exception:  # an exception is a detection
            raised = True
    frames.sort(key=lambda f: f[:2])  # stable: frames without timestamps keep the decoder's order
    return [f[2] for f in frames], raised or bool(errors)


def full_check(path: str) -> bool:
    try:
        check_decoding(path)
        return False
    except VideoError:
        return True


def run(trials: int, seed: int, sizes=SIZES, codecs=tuple(CODECS)) -> Dict[str, Dict[int, Dict[str, object]]]:
    rng = np.random.default_rng(seed)
    table: Dict[str, Dict[int, Dict[str, object]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for codec in codecs:
            ext = CODECS[codec]
            clean_files = []
            for v in range(4):
                path = os.path.join(tmp, f"clean{v}{ext}")
                write_clean(path, demo.render(v, np.random.default_rng([seed, v]), size=128, num_frames=48), codec)
                frames, detected = decode_log_only(path)
                if detected or full_check(path):
                    raise RuntimeError(f"the clean {codec} file {path} does not pass the checks")
                clean_files.append((open(path, "rb").read(), frames))
            bad = os.path.join(tmp, f"bad{ext}")
            table[codec] = {}
            for n in sizes:
                counts: Dict[str, object] = {"harmless": 0, "detected": 0, "silent": 0, "log only detected": 0,
                                             "log only silent": 0, "wrong frames": 0, "grey levels": 0}
                for trial in range(trials):
                    data, clean = clean_files[trial % len(clean_files)]
                    data = bytearray(data)
                    offset = int(rng.integers(0, len(data) - n))
                    data[offset:offset + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                    with open(bad, "wb") as f:
                        f.write(bytes(data))
                    frames, logged = decode_log_only(bad)
                    same = len(frames) == len(clean) and all(np.array_equal(a, b) for a, b in zip(frames, clean))
                    if logged:
                        counts["log only detected"] += 1
                    elif not same:
                        counts["log only silent"] += 1
                    if full_check(bad):
                        counts["detected"] += 1
                    elif same:
                        counts["harmless"] += 1
                    else:
                        counts["silent"] += 1
                        wrong = [int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(frames, clean)
                                 if not np.array_equal(a, b)] + [255] * abs(len(frames) - len(clean))
                        counts["wrong frames"] = max(counts["wrong frames"], len(wrong))
                        counts["grey levels"] = max(counts["grey levels"], max(wrong, default=0))
                table[codec][n] = counts
    return table


def main(argv=None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="overwrites per codec and damage size")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="bytes overwritten per trial")
    parser.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.time()
    table = run(args.trials, args.seed, args.sizes, args.codecs)
    print(f"random overwrites, {args.trials} per codec and size (seed {args.seed}), {time.time() - start:.0f} s\n")
    print("| codec | bytes | harmless | detected | silent | rate | log only: detected / silent | "
          "worst silent: frames, grey levels |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for codec, by_size in table.items():
        for n, c in by_size.items():
            d, s = c["detected"], c["silent"]
            worst = f"{c['wrong frames']}, {c['grey levels']}" if s else "–"
            print(f"| {codec} | {n} | {c['harmless']} | {d} | {s} | {100 * d / max(1, d + s):.0f} % | "
                  f"{c['log only detected']} / {c['log only silent']} | {worst} |")
    return table


if __name__ == "__main__":
    main()
