"""Cost of the toolkit's YUV → RGB conversion against PyAV's default, on the same decoded frames.

    python -m benchmarks.colour                 # the generated VP9 benchmark data (made if missing)

The PyAV workers convert every decoded frame as DALI's decoders do
(``pipelines.decoders.pyav.to_rgb``: BT.601, bilinear chroma at full resolution, accurate
rounding) instead of libswscale's fast path, which PyAV's ``to_ndarray(format="rgb24")``
takes at even frame sizes. This prints, per frame and measured in the same run, the time
to decode, to convert the toolkit's way and to convert PyAV's way, their ratio, and how far
apart the two conversions are in grey levels.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import default_data  # noqa: E402
from motionssl.pipelines.decoders.pyav import to_rgb  # noqa: E402
from motionssl.pipelines.index import load_index  # noqa: E402


def frames_of(path: str, count: int):
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        out = []
        start = time.perf_counter()
        for frame in container.decode(stream):
            out.append(frame)
            if len(out) == count:
                break
        return out, (time.perf_counter() - start) / max(len(out), 1)


def per_frame(convert, frames, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for frame in frames:
            convert(frame)
        times.append((time.perf_counter() - start) / len(frames))
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a `path label` list (default: benchmarks/data/vp9/list.txt)")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    index = load_index(args.data or default_data("cpu"))
    decode, ours, default, diff = [], [], [], []
    for path in index.paths[:args.videos]:
        frames, seconds = frames_of(path, args.frames)
        decode.append(seconds)
        ours.append(per_frame(to_rgb, frames, args.repeats))
        default.append(per_frame(lambda f: f.to_ndarray(format="rgb24"), frames, args.repeats))
        diff.append(float(np.mean([np.abs(to_rgb(f).astype(int) - f.to_ndarray(format="rgb24")).mean()
                                   for f in frames[:8]])))
    media = index.with_media().media[0]
    result = {"size": [media.width, media.height], "codec": media.codec, "decode_ms": 1e3 * statistics.median(decode),
              "toolkit_ms": 1e3 * statistics.median(ours), "pyav_default_ms": 1e3 * statistics.median(default),
              "mean_level_difference": statistics.median(diff)}
    result["ratio"] = result["toolkit_ms"] / result["pyav_default_ms"]
    result["share_of_decode_and_convert"] = (result["toolkit_ms"] - result["pyav_default_ms"]) / (
        result["decode_ms"] + result["pyav_default_ms"])
    print(f"{media.width}x{media.height} {media.codec}, one thread, ms per frame: decode {result['decode_ms']:.2f}, "
          f"convert (toolkit, as DALI) {result['toolkit_ms']:.2f}, convert (PyAV default) "
          f"{result['pyav_default_ms']:.2f} -> {result['ratio']:.1f}x the conversion, "
          f"+{100 * result['share_of_decode_and_convert']:.0f} % of decode + convert; the two conversions differ by "
          f"{result['mean_level_difference']:.1f} grey levels on average")
    return result


if __name__ == "__main__":
    main()
