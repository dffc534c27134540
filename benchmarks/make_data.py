"""Benchmark videos at a realistic size, written by a script (never committed).

Each video is a textured background panned by a moving camera, two textured objects
moving across it and fresh per-frame sensor noise — so the encoder (and hence the
decoder) does real work: flat or static frames decode several times faster than natural
video and would flatter every loader. The defaults match UCF-101 after preparation:
320×240, 10 s at 25 fps, GOP 16, no audio stream (docs/design.md, "DALI facts").

Two codecs, one folder each, with the same content:

* ``vp9``  (``.webm``) — read by DALI's CPU decoder and by PyAV: the CPU benchmarks;
* ``h264`` (``.mp4``)  — read by NVDEC and PyAV, not by DALI on CPU: the GPU benchmarks.

Layout (``--out``, default ``benchmarks/data``, git-ignored)::

    <out>/<codec>/videos/v0000.webm ...
    <out>/<codec>/list.txt          `path label` per line (paths relative to the list)
    <out>/<codec>/manifest.json     the parameters; a rerun with the same ones is a no-op

    python -m benchmarks.make_data                    # 64 videos per codec, ~2 min on 2 cores
    python -m benchmarks.make_data --small --out /tmp/bench   # 4 tiny videos (tests)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Sequence

import numpy as np

from motionssl.pipelines import files
from motionssl.pipelines.video_io import write_video

EXTENSIONS = {"vp9": ".webm", "h264": ".mp4"}
# Quality per codec: visually fine at 320×240, well above the "flat" regime.
CRF = {"vp9": 32, "h264": 23}
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SMALL = {"videos": 4, "width": 64, "height": 48, "seconds": 1.6, "fps": 25}


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``(h, w, 3)`` float32 in [0, 255]: 1/f noise (natural-image statistics) in two colours, plus a grating.

    A random-phase spectrum with amplitude ``1/f`` has the power law of natural images —
    detail at every scale, so the encoder spends bits the way it does on real footage.
    """
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** 1.1
    spectrum[0, 0] = 0.0
    t = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    t = (t - t.mean()) / max(float(t.std()), 1e-6)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 30)
    t += 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    t = np.clip(0.5 + t / 5, 0, 1)
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    return t[..., None] * c1 + (1 - t[..., None]) * c2


def render(rng: np.random.Generator, height: int, width: int, num_frames: int, noise: float = 4.0) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8: panned background, two moving objects, sensor noise."""
    pan = max(4, min(height, width) // 6)  # camera excursion in pixels
    background = _texture(rng, height + 2 * pan, width + 2 * pan)
    t = np.arange(num_frames, dtype=np.float32)
    period, phase = rng.uniform(40, 120, 2), rng.uniform(0, 2 * np.pi, 2)
    oy = np.rint(pan + (pan - 1) * np.sin(2 * np.pi * t / period[0] + phase[0])).astype(int)
    ox = np.rint(pan + (pan - 1) * np.sin(2 * np.pi * t / period[1] + phase[1])).astype(int)
    objects = []
    for _ in range(2):
        radius = rng.uniform(0.12, 0.25) * min(height, width)
        start = rng.uniform([0, 0], [height, width])
        velocity = rng.uniform(-2.5, 2.5, 2)  # px per frame, bounced at the borders below
        objects.append((radius, start, velocity, _texture(rng, height, width), bool(rng.integers(2))))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        image = background[oy[i]:oy[i] + height, ox[i]:ox[i] + width].copy()
        for radius, start, velocity, tex, disc in objects:
            # Reflect the straight path at the borders: a triangle wave in each coordinate.
            pos = start + velocity * i
            cy, cx = (np.abs((pos + [height, width]) % (2 * np.array([height, width])) - [height, width]))
            dy, dx = yy - cy, xx - cx
            inside = (dy * dy + dx * dx < radius * radius) if disc else (np.maximum(abs(dy), abs(dx)) < radius)
            shifted = np.roll(tex, (int(cy), int(cx)), axis=(0, 1))  # the texture moves with the object
            image[inside] = shifted[inside]
        image += noise * rng.standard_normal(image.shape, dtype=np.float32)
        frames[i] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def _write_one(job) -> str:
    """Render video ``video`` once and encode it for every folder in ``targets``; returns its stem."""
    targets, video, seed, height, width, num_frames, fps, gop = job
    stem = os.path.join("videos", f"v{video:04d}")
    frames = None
    for folder, codec in targets:
        path = os.path.join(folder, stem + EXTENSIONS[codec])
        if os.path.exists(path):  # resumable: an interrupted run keeps its finished files
            continue
        if frames is None:  # rendering costs more than encoding: once for all codecs
            frames = render(np.random.default_rng([seed, video]), height, width, num_frames)
        write_video(path, frames, fps=fps, codec=codec, gop=gop, crf=CRF[codec])
    return stem


def generate(out: str = DEFAULT_OUT, codecs: Sequence[str] = ("vp9", "h264"), videos: int = 64,
             width: int = 320, height: int = 240, seconds: float = 10.0, fps: int = 25, gop: int = 16,
             classes: int = 10, seed: int = 0, jobs: int = 0, force: bool = False) -> Dict[str, str]:
    """Write ``videos`` videos per codec under ``out/<codec>``; returns ``{codec: list path}``.

    A folder whose manifest matches the parameters is kept as it is (unless ``force``);
    one with other parameters is rewritten. Video ``v`` has label ``v % classes``; the
    codecs hold the same frames.
    """
    unknown = sorted(set(codecs) - set(EXTENSIONS))
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {sorted(EXTENSIONS)}")
    if width % 2 or height % 2:
        raise ValueError(f"H.264 needs even width and height, got {width}x{height}")
    num_frames = int(round(seconds * fps))
    lists, todo = {}, []
    for codec in codecs:
        folder = os.path.join(out, codec)
        manifest = {"codec": codec, "videos": videos, "width": width, "height": height, "frames": num_frames,
                    "fps": fps, "gop": gop, "crf": CRF[codec], "classes": classes, "seed": seed, "version": 1}
        lists[codec] = os.path.join(folder, "list.txt")
        manifest_path = os.path.join(folder, "manifest.json")
        recorded = None
        if os.path.exists(manifest_path):
            with open(manifest_path) as f:
                recorded = json.load(f)
        if recorded == manifest and os.path.exists(lists[codec]) and not force:
            continue  # complete (the list is written last)
        if recorded is not None and (recorded != manifest or force):
            shutil.rmtree(folder)  # ours, with other parameters: stale files must not mix in
        elif recorded is None:
            files.refuse_foreign(folder, f"benchmark videos written by this command ({manifest_path} is missing)")
        os.makedirs(os.path.join(folder, "videos"), exist_ok=True)
        with open(manifest_path, "w") as f:  # first: the folder is ours, and an interrupted run resumes
            json.dump(manifest, f, indent=1)
        todo.append((folder, codec, manifest))
    if not todo:
        return lists
    targets = tuple((folder, codec) for folder, codec, _ in todo)
    work = [(targets, v, seed, height, width, num_frames, fps, gop) for v in range(videos)]
    jobs = jobs or os.cpu_count() or 1
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            stems: List[str] = list(pool.map(_write_one, work))
    else:
        stems = [_write_one(job) for job in work]
    for folder, codec, manifest in todo:  # the list is written last: it means "complete"
        files.write_text(lists[codec], "".join(f"{stem}{EXTENSIONS[codec]} {v % classes}\n"
                                               for v, stem in enumerate(stems)))
    return lists


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (one sub-folder per codec)")
    parser.add_argument("--codecs", nargs="+", default=["vp9", "h264"], choices=sorted(EXTENSIONS))
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--gop", type=int, default=16, help="keyframe interval: a seek decodes up to this many "
                                                           "extra frames")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=0, help="encoding processes (0: one per CPU)")
    parser.add_argument("--force", action="store_true", help="rewrite even when the manifest matches")
    parser.add_argument("--small", action="store_true",
                        help=f"tiny data for tests: {SMALL['videos']} videos, {SMALL['width']}x{SMALL['height']}, "
                             f"{SMALL['seconds']} s (overrides --videos/--width/--height/--seconds)")
    args = parser.parse_args(argv)
    size = dict(videos=args.videos, width=args.width, height=args.height, seconds=args.seconds, fps=args.fps)
    if args.small:
        size.update(SMALL)
    start = time.time()
    lists = generate(args.out, args.codecs, gop=args.gop, classes=args.classes, seed=args.seed, jobs=args.jobs,
                     force=args.force, **size)
    for codec, path in lists.items():
        print(f"{codec}: {path}")
    print(f"{size['videos']} videos per codec, {size['width']}x{size['height']}, "
          f"{int(round(size['seconds'] * size['fps']))} frames each ({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
