"""Pictures of what the pipelines feed and what a model retrieves.

``python -m motionssl.pipelines.show --pipeline moquad --out batch.png`` writes a grid for the first
samples of one batch: one row per clip of a sample (anchor, positive, negatives — or rgb
and residuals), one column per frame, samples stacked with a gap. Clips are
un-normalised for display; residual clips are scaled to their maximum so small motion
stays visible. With no data argument it uses the demo dataset.

:func:`save_neighbours` draws retrieval queries with their nearest train videos
(``eval.py retrieval --show N``).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional

import numpy as np

from . import demo, environment
from .decoders import read_window
from .files import FolderError
from .index import VideoIndex
from .iterators import PIPELINES, make_iterator
from .ops.config import AugmentConfig
from .sources import PipelineError
from .video_io import VideoError

PROG = "motionssl.pipelines.show"

DEMO_CLIP = {"frames": 8, "augment": {"size": [64, 64], "flip_prob": 0.0}}


def demo_config(pipeline: str) -> dict:
    """The pipeline settings of the demo's configuration of ``pipeline`` (``configs/demo/<name>.yaml``), drawn
    at full frame size: what the demo run trains on, large enough to look at."""
    import yaml

    from motionssl import configs

    path = configs.resolve(f"demo/{pipeline}.yaml")
    shipped = {}
    if os.path.exists(path):
        with open(path) as f:
            shipped = (yaml.safe_load(f) or {}).get("pipeline_config", {})
    clip = dict(shipped.get("clip", {}))
    clip["frames"] = clip.get("frames", DEMO_CLIP["frames"])
    clip["augment"] = {**clip.get("augment", {}), **DEMO_CLIP["augment"]}
    return {**shipped, "clip": clip}


def to_images(clip: np.ndarray, mean, std, residual: bool) -> np.ndarray:
    """``(C, T, H, W)`` normalised clip → ``(T, H, W, 3)`` uint8 for display."""
    x = clip.astype(np.float32).transpose(1, 2, 3, 0)
    if residual:
        x = x / max(float(x.max()), 1e-6)
    else:
        x = x * np.asarray(std) + np.asarray(mean)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def grid(batch: Dict, names, mean, std, samples: int = 2, gap: int = 4) -> np.ndarray:
    """One picture of ``samples`` samples × ``names`` rows × frames columns."""
    blocks = []
    for s in range(min(samples, len(batch["index"]))):
        rows = [np.concatenate(list(to_images(batch[n][s].float().cpu().numpy(), mean, std, n.startswith("res"))),
                               axis=1) for n in names]
        block = np.concatenate(rows, axis=0)
        blocks.append(np.pad(block, ((0, gap), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(blocks, axis=0)


def first_frame(path: str, size: int) -> np.ndarray:
    """The first frame of a video as a ``size × size`` RGB picture."""
    from PIL import Image

    frame = read_window(path, 0, 1)[0]
    return np.asarray(Image.fromarray(frame).resize((size, size)))


def save_neighbours(path: str, queries: VideoIndex, gallery: VideoIndex, nearest, count: int,
                    tile: int = 96) -> str:
    """PNG: ``count`` queries (evenly spread over the test set) and their nearest neighbours (MCPNet Fig. 3).

    ``nearest`` is ``(queries, k)`` gallery rows, nearest first. One row per query: its
    first frame, then its neighbours' first frames framed green when they share its class,
    red otherwise; class names underneath.
    """
    from PIL import Image, ImageDraw

    rows = np.unique(np.linspace(0, len(queries) - 1, min(count, len(queries))).round().astype(int))
    pad, text, gap = 4, 14, 16
    width = (tile + 2 * pad) * (1 + nearest.shape[1]) + gap
    canvas = Image.new("RGB", (width, len(rows) * (tile + 2 * pad + text)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, q in enumerate(rows):
        y = r * (tile + 2 * pad + text)
        cells = [(queries, q, "black")] + [(gallery, int(g), "green" if gallery.labels[g] == queries.labels[q]
                                            else "red") for g in nearest[q]]
        for c, (index, i, colour) in enumerate(cells):
            x = c * (tile + 2 * pad) + (gap if c else 0)
            draw.rectangle([x, y, x + tile + 2 * pad - 1, y + tile + 2 * pad - 1], fill=colour)
            canvas.paste(Image.fromarray(first_frame(index.paths[i], tile)), (x + pad, y + pad))
            label = int(index.labels[i])
            draw.text((x + pad, y + tile + 2 * pad), (index.classes[label] if index.classes else str(label))[:18],
                      fill="black")
    save_picture(canvas, path)
    return path


def picture_type(path: str) -> str:
    """The picture format Pillow writes for ``path``'s extension; a ``ValueError`` for one it cannot write."""
    from PIL import Image

    extension = os.path.splitext(path)[1].lower()
    kind = Image.registered_extensions().get(extension)
    if kind not in Image.SAVE:
        raise ValueError(f"{path}: cannot write pictures of type {extension or '(no extension)'}; end it with .png "
                         "or .jpg")
    return kind


def save_picture(image, path: str) -> None:
    """Write a PIL ``image`` to ``path`` through a temporary file beside it, renamed when complete: a failed write
    (a full disk) leaves no half picture and any earlier one as it was. An ``OSError`` names ``path``."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        image.save(tmp, format=picture_type(path))
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: Optional[list] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="moquad", choices=sorted(PIPELINES))
    parser.add_argument("--data", default=None, help="index, folder or list (default: the demo data)")
    parser.add_argument("--split", default=None, help="split of a prepared dataset (default: train for the demo)")
    parser.add_argument("--out", default="batch.png")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        _check_options(args)
        return _show(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    except (ValueError, OSError, FolderError, VideoError, PipelineError) as exc:
        if environment.debug():
            raise
        raise SystemExit(f"{PROG}: error: {exc}") from None


def _check_options(args) -> None:
    """A ``ValueError`` naming the first option out of range, or an ``--out`` that cannot be written, before any work."""
    for option, value, least in (("--samples", args.samples, 1), ("--batch-size", args.batch_size, 1),
                                 ("--seed", args.seed, 0)):
        if value < least:
            raise ValueError(f"{option} must be at least {least}, got {value}")
    try:
        picture_type(args.out)
    except ValueError as exc:
        raise ValueError(f"--out {exc}") from None
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        what = "is a file" if os.path.lexists(folder) else "does not exist"
        raise ValueError(f"cannot write --out {args.out}: {folder} {what}; choose a picture path in an existing folder")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write --out {args.out}: {folder} is read-only to you; choose a folder you can write")


def _show(args) -> str:
    """The picture of one batch (see :func:`main`)."""
    from PIL import Image, ImageDraw

    data, split = args.data, args.split
    config = None
    if data is None:
        data, split, config = demo.generate(), split or "train", demo_config(args.pipeline)
    it = make_iterator(args.pipeline, data, args.batch_size, device=args.device, seed=args.seed, split=split,
                       config=config, num_workers=0)
    batch = next(iter(it))
    names = [n for n in it.planner.outputs if batch[n].ndim == 5]
    aug: AugmentConfig = it.config.clip.augment
    picture = grid(batch, names, aug.mean, aug.std, args.samples)
    scale = max(1, 640 // picture.shape[1])
    label_w = 110
    image = Image.new("RGB", (picture.shape[1] * scale + label_w, picture.shape[0] * scale), "white")
    image.paste(Image.fromarray(picture).resize((picture.shape[1] * scale, picture.shape[0] * scale),
                                                Image.NEAREST), (label_w, 0))
    draw = ImageDraw.Draw(image)
    row_h = aug.size[0] * scale
    block_h = (len(names) * aug.size[0] + 4) * scale
    extras = [k for k in it.planner.outputs if batch[k].ndim == 1]
    for s in range(min(args.samples, len(batch["index"]))):
        info = " ".join(f"{k}={int(batch[k][s])}" for k in extras)
        for r, name in enumerate(names):
            y = s * block_h + r * row_h
            draw.text((4, y + 4), name, fill="black")
            if r == 0:
                draw.text((4, y + 18), f"video {int(batch['index'][s])}", fill="gray")
                draw.text((4, y + 32), info[:18], fill="gray")
                draw.text((4, y + 46), info[18:36], fill="gray")
    try:
        save_picture(image, args.out)
    except OSError as exc:
        raise SystemExit(f"{PROG}: error: cannot write --out {args.out} ({exc.strerror or exc}); choose a folder you "
                         "can write, with room for the picture") from None
    print(f"wrote {args.out}: {args.pipeline}, rows {names}, {len(batch['index'])} videos, "
          f"{batch[names[0]].shape[2]} frames each")
    return args.out


if __name__ == "__main__":
    main()
