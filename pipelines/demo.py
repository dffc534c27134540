"""The embedded demo dataset: short VP9 videos whose class is the *motion*, not the look.

Each video shows one textured bar over a textured background. The class says how the
bar moves — up, down, left, right, clockwise or anticlockwise rotation, zooming in or
out — at a speed drawn per video; the bar's texture, its starting place and angle, and
the background are drawn independently of the class, so appearance does not give the
class away and a model must look at motion. Backgrounds and bar textures come from small
shared pools (``APPEARANCES`` each) and every bar has the same shape and size, so a
quarter of the videos share each look: telling two videos apart — the contrastive task —
then needs their motion, as the background bias that MoQuad and MCPNet address would
otherwise let a model skip it. (With a shape and size drawn per video, measured on
version 5 of this data, MoQuad's instance discrimination latched onto them and its
retrieval barely beat a random network: 53.8 against 45.0 % top-1.)

Horizontal flip maps left onto right and clockwise onto anticlockwise, so the demo
configuration turns flip off (``augment.flip_prob: 0``).

Everything is a pure function of ``seed``: the same seed writes the same frames. The
default (8 classes × 40 videos, 30 for training and 10 for testing, 64×64 px, 32 frames)
is written in well under a minute on two cores and cached; ``python -m motionssl.demo
--out DIR`` writes it anywhere.

Layout (the prepared-dataset layout of ``motionssl-prepare``)::

    root/videos/<class>/<class>_<n>.webm
    root/classes.txt            one class per line, label = line number
    root/train.txt test.txt all.txt   lines `path label num_frames`
    root/demo.json              the generator version and parameters that wrote it
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Optional

import numpy as np

from . import environment, files
from .video_io import write_video
from .workers import pool as worker_pool

log = logging.getLogger(__name__)

CLASSES = ("move_up", "move_down", "move_left", "move_right",
           "rotate_clockwise", "rotate_anticlockwise", "zoom_in", "zoom_out")
VERSION = 6  # bump when the generator's output changes, so caches are rebuilt
APPEARANCES = 2  # backgrounds in the pool, and bar textures in the pool
BAR = (0.3, 0.09)  # the bar's half-length and half-width, as fractions of the frame size
MARKER = "demo.json"  # what wrote a demo folder (generator version and parameters)
# The least value of each setting of :func:`generate`, and why.
LEAST = {"seed": (0, "seeds are non-negative"),
         "per_class": (2, "one test and one training video per class"),
         "test_per_class": (1, "the test split would be empty"),
         "size": (16, "a smaller frame cannot show the bar's motion"),
         "num_frames": (1, "a video needs a frame"),
         "workers": (1, "")}


def default_root(seed: int = 0) -> str:
    """Cache folder of the demo data (in :func:`.environment.cache_dir`)."""
    return os.path.join(environment.cache_dir(), f"demo-v{VERSION}-seed{seed}")


def check_settings(settings: dict, names: Optional[dict] = None) -> None:
    """A ``ValueError`` for the first of :func:`generate`'s ``settings`` out of range, named as its
    parameter or as ``names`` calls it (a command's options)."""
    def name(key: str) -> str:
        return (names or {}).get(key, key)

    for key, value in settings.items():
        least, why = LEAST[key]
        if value is not None and value < least:
            raise ValueError(f"{name(key)} must be at least {least}, got {value}" + (f" ({why})" if why else ""))
    if settings["test_per_class"] >= settings["per_class"]:
        raise ValueError(f"{name('test_per_class')} ({settings['test_per_class']}) must be smaller than "
                         f"{name('per_class')} ({settings['per_class']}): the rest of a class are its training videos")


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random colour texture: stripes, checks or smooth blobs, ``(h, w, 3)`` float in [0, 255]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 14)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    elif kind == 1:
        cell = rng.integers(3, 9)
        t = ((x // cell + y // cell) % 2).astype(np.float32)
    else:
        t = np.zeros((h, w), np.float32)
        for _ in range(6):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 16)
            t += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
        t = t / max(t.max(), 1e-6)
    return t[..., None] * c1 + (1 - t[..., None]) * c2


def object_coords(yy: np.ndarray, xx: np.ndarray, centre, angle: float, scale: float, size: int):
    """Object coordinates ``(u, v)`` of every pixel: translation undone on a torus (a fast object
    wraps around instead of leaving), then rotation (clockwise on screen) and scale."""
    dy = (yy - centre[0] + size / 2) % size - size / 2
    dx = (xx - centre[1] + size / 2) % size - size / 2
    ca, sa = np.cos(angle), np.sin(angle)
    return (ca * dx + sa * dy) / scale, (-sa * dx + ca * dy) / scale


def render(label: int, rng: np.random.Generator, size: int = 64, num_frames: int = 32,
           pool_seed: int = 0) -> np.ndarray:
    """Frames ``(T, size, size, 3)`` uint8 of one video of class ``CLASSES[label]``."""
    background = _texture(np.random.default_rng([pool_seed, 1, rng.integers(APPEARANCES)]), size, size)
    tex = _texture(np.random.default_rng([pool_seed, 2, rng.integers(APPEARANCES)]), size, size)
    half_length, half_width = BAR[0] * size, BAR[1] * size  # a bar: its rotation is visible
    name = CLASSES[label]
    t = np.arange(num_frames, dtype=np.float32)
    centre = np.array([rng.uniform(0.35, 0.65) * size, rng.uniform(0.35, 0.65) * size])
    angle0, scale = rng.uniform(0, 2 * np.pi), np.ones_like(t)
    angle = np.full_like(t, angle0)
    shift = np.zeros((num_frames, 2), np.float32)
    if name.startswith("move"):
        speed = rng.uniform(1.5, 3.0)  # px per frame; the object wraps around the frame edges
        direction = {"move_up": (-1, 0), "move_down": (1, 0), "move_left": (0, -1), "move_right": (0, 1)}[name]
        shift = np.outer(t - t.mean(), direction) * speed
    elif name.startswith("rotate"):
        omega = rng.uniform(0.12, 0.25) * (1 if name == "rotate_clockwise" else -1)  # rad per frame
        angle = angle0 + omega * t
    else:
        rate = rng.uniform(0.035, 0.05) * (1 if name == "zoom_in" else -1)
        scale = np.exp(rate * (t - t.mean()))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        u, v = object_coords(yy, xx, centre + shift[i], angle[i], scale[i], size)
        inside = (np.abs(u) < half_length) & (np.abs(v) < half_width)
        ty = np.clip(v + size / 2, 0, size - 1).astype(int)
        tx = np.clip(u + size / 2, 0, size - 1).astype(int)
        image = np.where(inside[..., None], tex[ty, tx], background)
        frames[i] = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    return frames


def _write_one(job) -> tuple:
    root, seed, video, label, size, num_frames = job
    rng = np.random.default_rng([seed, video])
    frames = render(label, rng, size, num_frames, pool_seed=seed)
    rel = os.path.join("videos", CLASSES[label], f"{CLASSES[label]}_{video:04d}.webm")
    write_video(os.path.join(root, rel), frames, fps=25, codec="vp9", gop=8, crf=30)
    return rel, label, len(frames)


def start_folder(root: str, classes) -> str:
    """A new temporary folder beside ``root``, marked as this process's, with ``videos/<class>/`` made."""
    tmp = files.temp_folder(root)
    for name in classes:
        os.makedirs(os.path.join(tmp, "videos", name), exist_ok=True)
    return tmp


def run_jobs(fn, jobs, workers: Optional[int] = None) -> list:
    """``[fn(job) for job in jobs]``, over up to ``workers`` processes (default: up to 4).

    The workers are deaf to Ctrl-C (:mod:`.workers`); on any failure or interruption of the
    caller they are terminated at once, so one line reaches the user, not a traceback per
    worker.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1:
        return [fn(job) for job in jobs]
    pool = worker_pool(workers)
    try:
        result = pool.map(fn, jobs, chunksize=8)
        pool.close()
        return result
    finally:
        pool.terminate()
        pool.join()


def check_target(root: str, marker: str, description: dict, classes=CLASSES) -> bool:
    """Whether ``root`` already holds this very dataset (True), or may be written (False).

    A dataset folder of the toolkit holds ``marker``, a JSON record of what wrote it. A
    folder with the same record is complete; one with another record, or with files and no
    record, is not ours to replace: a :class:`~.files.FolderError` says so.
    """
    found = files.entries(root)
    if not found:
        return False
    if legacy_dataset(root, marker, classes):
        return True
    record_path = os.path.join(root, marker)
    if os.path.exists(record_path) and os.path.exists(os.path.join(root, "all.txt")):
        try:
            with open(record_path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = None
        if record == description:
            return True
        raise files.FolderError(f"{root} holds a dataset written with other settings ({marker}: {record}, asked "
                                f"for {description}); nothing was written or deleted there — choose another folder")
    files.refuse_foreign(root, f"a dataset written by this command ({marker} is missing)")
    return False


def legacy_dataset(root: str, marker: str, classes) -> bool:
    """A complete generated folder written before folders carried their record: ``all.txt`` and these classes."""
    if os.path.exists(os.path.join(root, marker)) or not os.path.exists(os.path.join(root, "all.txt")):
        return False
    try:
        with open(os.path.join(root, "classes.txt")) as f:
            return tuple(line.strip() for line in f if line.strip()) == tuple(classes)
    except OSError:
        return False


def finish_folder(tmp: str, root: str, classes, splits: dict, marker: str, description: dict) -> str:
    """Write ``classes.txt``, one ``<split>.txt`` per split (rows ``(rel, label, frames, ...)``) and the
    ``marker`` record into ``tmp``, then rename it to ``root`` — unless another process finished
    ``root`` first (then ``tmp`` goes). ``root`` holding anything else is a :class:`~.files.FolderError`."""
    files.write_text(os.path.join(tmp, "classes.txt"), "\n".join(classes) + "\n")
    for split, split_rows in splits.items():
        files.write_text(os.path.join(tmp, f"{split}.txt"), "".join(f"{r[0]} {r[1]} {r[2]}\n" for r in split_rows))
    files.write_text(os.path.join(tmp, marker), json.dumps(description) + "\n")
    if not files.publish_folder(tmp, root, marker):
        files.remove_temp_folder(tmp)
        if not check_target(root, marker, description, classes):
            files.refuse_foreign(root, "this dataset")
    return root


def write_dataset(root: str, classes, marker: str, description: dict, build) -> str:
    """Write a generated dataset into ``root`` once: ``build(tmp)`` fills a temporary folder and
    returns its splits; the folder is renamed into place when complete.

    ``root`` that already holds this dataset is returned as it is; one that holds anything
    else raises before any work. The temporary folder is removed on any failure or Ctrl-C.
    """
    if check_target(root, marker, description, classes):
        return root
    tmp = start_folder(root, classes)
    try:
        splits = build(tmp)
        return finish_folder(tmp, root, classes, splits, marker, description)
    finally:
        files.remove_temp_folder(tmp)


def generate(root: Optional[str] = None, seed: int = 0, per_class: int = 40, test_per_class: int = 10,
             size: int = 64, num_frames: int = 32, workers: Optional[int] = None) -> str:
    """Write the demo dataset into ``root`` (default: the cache) unless it is already there.

    Returns ``root``. Written into a temporary folder and renamed, so an interrupted run
    never leaves a half dataset that looks finished; a ``root`` that holds other files is
    refused (:class:`~.files.FolderError`), never emptied.
    """
    check_settings(dict(seed=seed, per_class=per_class, test_per_class=test_per_class, size=size,
                        num_frames=num_frames, workers=workers))
    root = os.path.abspath(root or default_root(seed))
    description = {"dataset": "motionssl demo", "version": VERSION, "seed": seed, "per_class": per_class,
                   "test_per_class": test_per_class, "size": size, "frames": num_frames}
    start = time.time()

    def build(tmp):
        # Class-interleaved ids keep every class balanced and make each id's class obvious.
        jobs = [(tmp, seed, v, v % len(CLASSES), size, num_frames) for v in range(per_class * len(CLASSES))]
        rows = run_jobs(_write_one, jobs, workers)
        test_ids = {v for v in range(len(rows)) if v // len(CLASSES) >= per_class - test_per_class}
        log.info("wrote %d demo videos to %s in %.1f s", len(rows), root, time.time() - start)
        return {"train": [r for v, r in enumerate(rows) if v not in test_ids],
                "test": [r for v, r in enumerate(rows) if v in test_ids], "all": rows}

    return write_dataset(root, CLASSES, MARKER, description, build)


if __name__ == "__main__":  # the command is the application's now
    import sys

    print("motionssl.pipelines.demo is a library module; its command is `python -m motionssl.demo`", file=sys.stderr)
    sys.exit(2)
