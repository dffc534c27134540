"""Pictures of what the pipelines feed and what a model retrieves.

:func:`batch_picture` draws the first samples of one batch: one row per clip of a sample
(anchor, positive, negatives — or rgb and residuals), one column per frame, samples stacked
with a gap, each labelled with its clip names, video and per-sample values. Clips are
un-normalised for display; residual clips are scaled to their maximum so small motion stays
visible. ``python -m motionssl.show`` is its command.

:func:`save_neighbours` draws retrieval queries with their nearest train videos
(``eval.py retrieval --show N``).
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

from .decoders import read_window
from .index import VideoIndex


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


def batch_picture(batch: Dict, names: Sequence[str], values: Sequence[str], mean, std, samples: int = 2):
    """A PIL image of the first ``samples`` samples of ``batch``: the clips ``names`` (each ``(B, C, T, H, W)``,
    normalised with ``mean`` and ``std``) as rows of frames, labelled with the clip's name, the video and the
    per-sample ``values`` (``(B,)`` entries); scaled up to at least 640 pixels of frames across."""
    from PIL import Image, ImageDraw

    picture = grid(batch, names, mean, std, samples)
    scale = max(1, 640 // picture.shape[1])
    label_w = 110
    image = Image.new("RGB", (picture.shape[1] * scale + label_w, picture.shape[0] * scale), "white")
    image.paste(Image.fromarray(picture).resize((picture.shape[1] * scale, picture.shape[0] * scale),
                                                Image.NEAREST), (label_w, 0))
    draw = ImageDraw.Draw(image)
    height = batch[names[0]].shape[-2]
    row_h = height * scale
    block_h = (len(names) * height + 4) * scale
    for s in range(min(samples, len(batch["index"]))):
        info = " ".join(f"{k}={int(batch[k][s])}" for k in values)
        for r, name in enumerate(names):
            y = s * block_h + r * row_h
            draw.text((4, y + 4), name, fill="black")
            if r == 0:
                draw.text((4, y + 18), f"video {int(batch['index'][s])}", fill="gray")
                draw.text((4, y + 32), info[:18], fill="gray")
                draw.text((4, y + 46), info[18:36], fill="gray")
    return image


if __name__ == "__main__":  # the command is the application's now
    import sys

    print("motionssl.pipelines.show is a library module; its command is `python -m motionssl.show`", file=sys.stderr)
    sys.exit(2)
