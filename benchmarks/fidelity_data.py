"""The fidelity benchmark's videos: motion decides the class, appearance carries no label.

Every *scene* (a textured background and one textured object of its own shape, size and
colours) is rendered in **every** motion class, in the train split and in the test split
alike (three videos of each scene and class in train, one in test). A test video's
look-alikes in the train split — its own scene — come in every class, so features of
the scene rank videos of all classes first and score at chance, in retrieval and in a
linear probe, and only motion features score above it. The classes are four pairs of
mirrored motions (up/down, left/right, clockwise/anticlockwise, zoom in/out).

Per video the object's start, angle, size, speed and rate are drawn anew, and sensor
noise is added; the scene fixes everything else. ``--one-speed`` renders every video of a
class at the middle of its speed (or rate) range instead, with every other draw the same: a
variant in which a clip played faster looks like no video of its class. ``--unpaired`` renders
eight classes of which none is another's (or its own) motion reversed, :data:`UNPAIRED`:
translations at 0°, 30°, 60° and 90° (anticlockwise from rightwards; reversed, each points
at least 90° away from every class's direction), clockwise rotation, zooming in, both at once
(``spiral_in``) and a translation at 45° while turning clockwise (``roll_45``); the scenes and
every other draw as in the standard data. The object's size varies in every
class (not only while zooming), so one frame does not tell a zoom from the rest.
Everything is a pure function of ``seed``.

    python -m benchmarks.fidelity_data --out data/fidelity     # 16 scenes × 8 classes × 4 videos

Layout: the prepared-dataset layout (``videos/<class>/…webm``, ``classes.txt``,
``train.txt``, ``test.txt``, ``all.txt``) plus ``scenes.txt`` (``path scene``), so any
result can be broken down by scene.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Optional

import numpy as np

from motionssl.pipelines import demo, environment, files
from motionssl.pipelines.video_io import write_video

log = logging.getLogger(__name__)

# Mirrored pairs side by side: class 2k and 2k + 1 are the same motion, reversed.
CLASSES = ("move_up", "move_down", "move_left", "move_right",
           "rotate_clockwise", "rotate_anticlockwise", "zoom_in", "zoom_out")


def _heading(degrees: float) -> tuple:
    """The (row, column) step of a translation ``degrees`` anticlockwise from rightwards, as the frame shows it."""
    r = np.radians(degrees)
    return round(float(-np.sin(r)), 12) + 0.0, round(float(np.cos(r)), 12) + 0.0


# What each class does: (translation as a (row, column) step per unit of speed, or None; turn: +1 clockwise,
# -1 anticlockwise, 0 none; zoom: +1 in, -1 out, 0 none). A clip played backwards moves as its class's
# entry negated: in the standard classes that is the partner's entry, in UNPAIRED no class's.
MOTIONS = {"move_up": ((-1, 0), 0, 0), "move_down": ((1, 0), 0, 0), "move_left": ((0, -1), 0, 0),
           "move_right": ((0, 1), 0, 0), "rotate_clockwise": (None, 1, 0), "rotate_anticlockwise": (None, -1, 0),
           "zoom_in": (None, 0, 1), "zoom_out": (None, 0, -1),
           **{f"move_{d}": (_heading(d), 0, 0) for d in (0, 30, 60, 90)},
           "spiral_in": (None, 1, 1), "roll_45": (_heading(45), 1, 0)}
UNPAIRED = ("move_0", "move_30", "move_60", "move_90", "rotate_clockwise", "zoom_in", "spiral_in", "roll_45")


def classes(unpaired: bool = False) -> tuple:
    """The eight classes of the standard data, or of the ``--unpaired`` variant."""
    return UNPAIRED if unpaired else CLASSES


VERSION = 4  # bump when the output changes, so cached copies are rebuilt
MARKER = "fidelity.json"  # what wrote a fidelity folder (generator version and parameters)
SHAPES = ("bar", "ellipse", "cross", "triangle", "ring")


def default_root(seed: int = 0, scenes: int = 16, per_class: int = 4, size: int = 48, num_frames: int = 32,
                 one_speed: bool = False, unpaired: bool = False) -> str:
    """In the cache folder (:func:`~motionssl.pipelines.environment.cache_dir`), named by every setting of the data."""
    name = (f"fidelity-v{VERSION}-seed{seed}-{scenes}x{per_class}-{size}px-{num_frames}f" + ("-onespeed" * one_speed)
            + ("-unpaired" * unpaired))
    return os.path.join(environment.cache_dir(), name)


def in_train(copy: int) -> bool:
    """Whether video ``copy`` of a scene and class is a training video (copies 0, 1, 3, …) or a test video (2, 5, …).

    Every scene and class has videos in both splits: with four copies, three train and one test.
    """
    return copy % 3 != 2


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A colour texture ``(h, w, 3)`` float32 in [0, 255] from one of five families.

    Stripes, checks, blobs, a radial pattern or band-limited noise, with 2–3 random
    colours, random scale and orientation: scenes differ in colour *and* structure.
    """
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    colours = rng.uniform(0, 255, (3, 3)).astype(np.float32)
    kind = rng.integers(5)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 12)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    elif kind == 1:
        cy, cx = rng.integers(2, 8, size=2)
        t = ((x // cx + y // cy) % 2).astype(np.float32)
    elif kind == 2:
        t = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(4, 10))):
            py, px, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 10)
            t += np.exp(-((y - py) ** 2 + (x - px) ** 2) / (2 * r * r))
        t = np.clip(t / max(float(t.max()), 1e-6), 0, 1)
    elif kind == 3:
        py, px, period = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 10)
        t = 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(y - py, x - px) / period)
    else:
        noise = rng.normal(size=(h // 4 + 2, w // 4 + 2)).astype(np.float32)
        up = np.kron(noise, np.ones((4, 4), np.float32))[:h, :w]
        t = 1 / (1 + np.exp(-2 * up))
    second = t[..., None] * colours[0] + (1 - t[..., None]) * colours[1]
    # A third colour in a smooth diagonal gradient: not every scene is two-tone.
    g = ((x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) / max(h, w))[..., None]
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    return second * (1 - 0.4 * g) + colours[2] * 0.4 * g


def _inside(shape: str, u: np.ndarray, v: np.ndarray, half: float, aspect: float) -> np.ndarray:
    """Object mask in object coordinates (u along the long axis)."""
    a, b = half, half * aspect
    if shape == "bar":
        return (np.abs(u) < a) & (np.abs(v) < b)
    if shape == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2 < 1
    if shape == "cross":
        return ((np.abs(u) < a) & (np.abs(v) < b * 0.6)) | ((np.abs(v) < a * 0.7) & (np.abs(u) < b * 0.6))
    if shape == "triangle":  # points along +u: its orientation is visible
        return (u > -a) & (u < a) & (np.abs(v) < b * 1.5 * (a - u) / (2 * a))
    r = np.hypot(u / a, v / (b * 1.6))  # ring with a notch, so its rotation shows
    return (r < 1) & (r > 0.55) & ~((u > 0) & (np.abs(v) < b * 0.35))


def scene_spec(seed: int, scene: int, size: int) -> dict:
    """The appearance of ``scene``: background, object shape, size, aspect, texture."""
    rng = np.random.default_rng([seed, 7, scene])
    return {"background": texture(rng, size, size), "object": texture(rng, size, size),
            "shape": SHAPES[int(rng.integers(len(SHAPES)))], "half": float(rng.uniform(0.22, 0.34)) * size,
            "aspect": float(rng.uniform(0.3, 0.55)), "contrast": float(rng.uniform(0.7, 1.0))}


def _speed(rng: np.random.Generator, low: float, high: float, one_speed: bool) -> float:
    """A speed drawn from ``[low, high]``, or its middle (the draw is made either way: the later draws stay)."""
    drawn = rng.uniform(low, high)
    return (low + high) / 2 if one_speed else drawn


def trajectory(name: str, rng: np.random.Generator, size: int, num_frames: int, one_speed: bool = False) -> tuple:
    """Where the object of a video of class ``name`` is, how it is turned and how big it is, frame by frame:
    ``(position (T, 2) rows and columns, angle (T,), scale (T,))``, the video's first draws from ``rng``."""
    step, turn, zoom = MOTIONS[name]
    t = np.arange(num_frames, dtype=np.float32)
    t = t - t.mean()
    # Anywhere on the torus and of any size, in every class: where the object is and how big
    # it looks in one frame says nothing of how it moves.
    centre = rng.uniform(0.0, 1.0, 2) * size
    angle = np.full_like(t, rng.uniform(0, 2 * np.pi))
    scale = np.full_like(t, np.exp(rng.uniform(np.log(0.4), np.log(2.2))))
    shift = np.zeros((num_frames, 2), np.float32)
    # Speeds are drawn in this order (translation, turn, zoom), one per part of the class's motion.
    if step is not None:
        speed = _speed(rng, 0.025, 0.05, one_speed) * size  # per frame; the object wraps around the edges
        shift = np.outer(t, step) * speed
    if turn:
        angle = angle + _speed(rng, 0.1, 0.2, one_speed) * turn * t
    if zoom:
        rate = _speed(rng, 0.015, 0.025, one_speed) * zoom
        scale = scale * np.exp(rate * t)
    return centre + shift, angle, scale


def render(spec: dict, label: int, rng: np.random.Generator, size: int, num_frames: int,
           one_speed: bool = False, unpaired: bool = False) -> np.ndarray:
    """Frames ``(T, size, size, 3)`` uint8 of the scene ``spec`` moving as ``classes(unpaired)[label]``
    (``one_speed``: at the middle of the class's speed range)."""
    position, angle, scale = trajectory(classes(unpaired)[label], rng, size, num_frames, one_speed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background, tex = spec["background"], spec["object"]
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        u, v = demo.object_coords(yy, xx, position[i], angle[i], scale[i], size)
        inside = _inside(spec["shape"], u, v, spec["half"], spec["aspect"])
        ty = np.clip(v + size / 2, 0, size - 1).astype(int)  # the texture moves with the object
        tx = np.clip(u + size / 2, 0, size - 1).astype(int)
        image = np.where(inside[..., None], tex[ty, tx], background * spec["contrast"])
        frames[i] = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    return frames


def _write(job) -> tuple:
    root, seed, scene, label, copy, size, num_frames, one_speed, unpaired = job
    spec = scene_spec(seed, scene, size)
    frames = render(spec, label, np.random.default_rng([seed, scene, label, copy]), size, num_frames, one_speed,
                    unpaired)
    name = classes(unpaired)[label]
    rel = os.path.join("videos", name, f"s{scene:02d}_{name}_{copy}.webm")
    write_video(os.path.join(root, rel), frames, fps=25, codec="vp9", gop=8, crf=30)
    return rel, label, len(frames), scene


def generate(root: Optional[str] = None, seed: int = 0, scenes: int = 16, per_class: int = 4, size: int = 48,
             num_frames: int = 32, workers: Optional[int] = None, one_speed: bool = False,
             unpaired: bool = False) -> str:
    """Write the benchmark into ``root`` (default: the cache) unless it is already complete; return ``root``.

    ``scenes × 8 classes × per_class`` videos, three in four of them train. Written into a temporary
    folder and renamed, so an interrupted run never leaves a half dataset that looks finished.
    """
    root = os.path.abspath(root or default_root(seed, scenes, per_class, size, num_frames, one_speed, unpaired))
    if scenes < 1 or per_class < 3 or size < 32 or num_frames < 8:
        raise ValueError(f"need scenes >= 1, per_class >= 3 (videos in both splits), size >= 32 and num_frames >= 8; "
                         f"got {scenes}, {per_class}, {size}, {num_frames}")
    description = {"dataset": "motionssl fidelity", "version": VERSION, "seed": seed, "scenes": scenes,
                   "per_class": per_class, "size": size, "frames": num_frames}
    # Only when set: the default data's record, and so its cached copies, stay as they were.
    if one_speed:
        description["one_speed"] = True
    if unpaired:
        description["unpaired"] = True
    names = classes(unpaired)
    start = time.time()

    def build(tmp):
        jobs = [(tmp, seed, s, c, k, size, num_frames, one_speed, unpaired) for s in range(scenes)
                for c in range(len(names)) for k in range(per_class)]
        rows = demo.run_jobs(_write, jobs, workers)
        files.write_text(os.path.join(tmp, "scenes.txt"), "".join(f"{rel} {scene}\n" for rel, _, _, scene in rows))
        log.info("wrote %d fidelity videos to %s in %.1f s", len(rows), root, time.time() - start)
        return {"train": [r for r, job in zip(rows, jobs) if in_train(job[4])],
                "test": [r for r, job in zip(rows, jobs) if not in_train(job[4])], "all": rows}

    return demo.write_dataset(root, names, MARKER, description, build)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Write the fidelity benchmark's videos (VP9 .webm).")
    p.add_argument("--out", help="folder to write (default: the cache folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", type=int, default=16)
    p.add_argument("--per-class", type=int, default=4, help="videos per scene and class")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--workers", type=int)
    p.add_argument("--one-speed", action="store_true", help="every video of a class at one speed (module doc)")
    p.add_argument("--unpaired", action="store_true",
                   help="eight classes of which none is another's motion reversed (module doc)")
    args = p.parse_args(argv)
    start = time.time()
    root = generate(args.out, args.seed, args.scenes, args.per_class, args.size, args.frames, args.workers,
                    args.one_speed, args.unpaired)
    print(f"fidelity dataset in {root} ({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
