"""Look at what a pipeline feeds: ``python -m motionssl.show --pipeline moquad --out batch.png``.

Writes a picture of the first samples of one batch (:func:`motionssl.pipelines.show.batch_picture`:
one row per clip of a sample, one column per frame). With no data argument it uses the demo
dataset, with the demo configuration's pipeline settings at full frame size.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from motionssl.pipelines import demo, environment
from motionssl.pipelines.files import FolderError
from motionssl.pipelines.iterators import PIPELINES, make_iterator
from motionssl.pipelines.show import batch_picture, picture_type, save_picture
from motionssl.pipelines.sources import PipelineError
from motionssl.pipelines.video_io import VideoError

PROG = "motionssl.show"

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


def main(argv: Optional[list] = None) -> str:
    parser = argparse.ArgumentParser(description="Pictures of what the pipelines feed and what a model retrieves.")
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
    data, split = args.data, args.split
    config = None
    if data is None:
        data, split, config = demo.generate(), split or "train", demo_config(args.pipeline)
    it = make_iterator(args.pipeline, data, args.batch_size, device=args.device, seed=args.seed, split=split,
                       config=config, num_workers=0)
    batch = next(iter(it))
    names = [n for n in it.planner.outputs if batch[n].ndim == 5]
    values = [k for k in it.planner.outputs if batch[k].ndim == 1]
    augment = it.config.clip.augment
    image = batch_picture(batch, names, values, augment.mean, augment.std, args.samples)
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
