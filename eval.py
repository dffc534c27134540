"""Evaluate a pre-trained backbone: video retrieval, linear probe, fine-tuning.

    python eval.py retrieval --checkpoint runs/moquad-x/checkpoints/ckpt-00000300.pt --show 8
    python eval.py linear    --checkpoint CKPT --train data/ucf101 --split-train train_split1 --split-test test_split1
    python eval.py finetune  --checkpoint CKPT --optimizer lars --lr 0.08 --epochs 100 --stride 2
    python eval.py retrieval --random-init --backbone r3d_18        # the random-initialisation baseline
    torchrun --nproc_per_node 8 eval.py retrieval --checkpoint CKPT --train data/ucf101 ...

Every sub-command sees each video through ``--num-clips`` clips at uniformly spaced starts
(``pipelines/evaluation.py``), with the checkpoint's clip length, frame size and training
normalisation unless ``--frames`` / ``--size`` say otherwise, and averages per video:

* ``retrieval`` — backbone features of 10 centre-cropped clips, averaged, L2-normalised;
  every test video queries the train videos by cosine similarity; top-1/5/10/20/50
  (MoQuad §4.2, MCPNet §4.4). ``--show N`` draws N queries and their top-3 neighbours.
* ``linear`` — frozen backbone; a linear classifier trained on the features of *every*
  clip of the train videos (the same 10 centre-cropped clips, one example each: no
  augmentation, so features are extracted once and the probe trains in seconds, and the
  classifier sees single clips as at test time); test: softmax averaged over 10 clips
  (× 3 crops with ``--test-crops 3``); top-1/5. MoQuad's protocol: ``--frames 32 --stride 2``.
* ``finetune`` — the whole network with a new two-layer head (MCPNet §4.1), trained on
  clip-consistently augmented clips (``view1`` of the SimCLR pipeline with the checkpoint's
  augmentation), SGD or LARS with a cosine schedule; test: 10 clips × 3 crops; top-1/5.

With no data arguments the demo dataset is used (splits train / test). ``--random-init``
evaluates a randomly initialised backbone (the checkpoint's architecture, or ``--backbone``)
as the baseline. Results go to a table and to ``<checkpoint>.<task>.json`` beside the
checkpoint (or into ``--out``). Under torchrun each rank extracts its shard of the views;
rank 0 prints and writes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from models.backbones import BACKBONES, VideoBackbone, create_backbone
from models.distributed import get_rank, get_world_size
from models.evaluation import (FineTuneClassifier, distinct_views, extract_views, fine_tune,
                               gather_views, rank_gallery, retrieval_accuracy, topk_accuracy, train_linear_probe,
                               video_features, video_probabilities)
from models.optim import OPTIMIZERS
from models.training import load_checkpoint
from pipelines import VideoIndex, demo, load_index, make_iterator
from pipelines.augment import KINETICS_MEAN, KINETICS_STD
from pipelines.evaluation import NUM_CROPS, make_eval_iterator
from pipelines.sources import DECODERS
from pipelines.video_io import VideoError, read_window

DEVICES = ("auto", "cpu", "gpu")
TASKS = ("retrieval", "linear", "finetune")


class CheckpointError(ValueError):
    """A checkpoint that cannot give a backbone; the message names the file and the mismatch."""


# --- checkpoint -----------------------------------------------------------------------------------
def _listing(items: Sequence, limit: int = 8) -> str:
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{items[:limit]}{more}"


def read_checkpoint(path: str) -> dict:
    """The checkpoint dict (``path`` is a file or a run's checkpoint folder) with its config checked."""
    try:
        state = load_checkpoint(path)
    except ValueError as exc:  # corrupt file or another format
        raise CheckpointError(str(exc)) from exc
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{state['path']}: no 'config' dict; a motionssl/1 checkpoint stores the run's config")
    missing = [k for k in ("backbone", "backbone_kwargs", "pipeline_config") if k not in config]
    if missing or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{state['path']}: the checkpoint lacks {missing or ['model']} "
                              f"(config keys: {sorted(config)})")
    return state


def build_backbone(name: str, kwargs: Dict, where: str) -> VideoBackbone:
    try:
        return create_backbone(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: cannot build backbone {name!r} with {kwargs}: {exc}") from exc


def backbone_from_state(state: dict) -> VideoBackbone:
    """The checkpoint's backbone with its weights (the ``backbone.*`` entries of ``model``)."""
    path, config = state["path"], state["config"]
    name, kwargs = config["backbone"], dict(config["backbone_kwargs"])
    backbone = build_backbone(name, kwargs, path)
    weights = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
    if not weights:
        raise CheckpointError(f"{path}: the model state holds no 'backbone.*' entries "
                              f"(its keys start {_listing(sorted(state['model']), 5)})")
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = [f"{k}: {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}"
              for k in sorted(set(weights) & set(expected)) if weights[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        problems = [f"{what} {_listing(keys)}" for what, keys in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches (checkpoint vs model)", shapes)) if keys]
        raise CheckpointError(f"{path}: the backbone weights do not match backbone {name!r} with {kwargs}: "
                              + "; ".join(problems))
    backbone.load_state_dict(weights)
    return backbone


def load_backbone(checkpoint_path: str) -> Tuple[VideoBackbone, dict]:
    """``(backbone with the checkpoint's weights, the run's config)``; :class:`CheckpointError` names any mismatch."""
    state = read_checkpoint(checkpoint_path)
    return backbone_from_state(state), state["config"]


# --- views and features -------------------------------------------------------------------------------
@dataclass
class Views:
    """How every video is seen: the arguments of ``pipelines.evaluation.make_eval_iterator``."""

    frames: int = 16
    size: Tuple[int, int] = (112, 112)
    mean: Tuple[float, ...] = KINETICS_MEAN
    std: Tuple[float, ...] = KINETICS_STD
    stride: int = 1
    num_clips: int = 10
    num_crops: int = 1
    batch_size: int = 16
    num_workers: int = 2
    decoder: Optional[str] = None
    antialias: bool = False


def resolve_device(device: str) -> Tuple[str, torch.device]:
    """``auto|cpu|gpu`` → (pipeline device, torch device); the GPU is the current CUDA device."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r}; choose one of {DEVICES}")
    if device == "gpu" and not torch.cuda.is_available():
        raise ValueError("device=gpu but CUDA is not available; use --device cpu")
    if device == "cpu" or not torch.cuda.is_available():
        return "cpu", torch.device("cpu")
    return "gpu", torch.device("cuda", torch.cuda.current_device())


def view_outputs(model, index: VideoIndex, views: Views, device: str = "cpu", desc: str = ""):
    """``model`` (clips (B, C, T, H, W) → (B, D)) over every view of ``index``, gathered from all ranks.

    Returns ``(outputs (N, D), video (N,), clip_id (N,))`` with padded repeats (see
    ``models.evaluation.average_views``). Each rank reads its shard (``shard_id=rank``).
    """
    kind, torch_device = resolve_device(device)
    loader = make_eval_iterator(index, views.frames, views.size, views.mean, views.std, views.num_clips,
                                views.num_crops, views.stride, views.batch_size, kind, get_rank(), get_world_size(),
                                views.decoder, views.num_workers, antialias=views.antialias,
                                device_id=torch_device.index or 0)
    batches = tqdm(loader, desc=desc, disable=get_rank() != 0, leave=False)
    return gather_views(*extract_views(model, batches, torch_device))


@torch.no_grad()
def encode_videos(backbone: VideoBackbone, index: VideoIndex, views: Views, device: str = "cpu"):
    """``(features (V, F) averaged over views and L2-normalised, number of distinct views)``."""
    was_training = backbone.training
    backbone.to(resolve_device(device)[1]).eval()
    try:
        out, video, clip_id = view_outputs(backbone.features, index, views, device, "features")
    finally:
        backbone.train(was_training)
    return video_features(out, video, clip_id, len(index)), len(distinct_views(video, clip_id))


def _retrieval(backbone, train_index: VideoIndex, test_index: VideoIndex, views: Views, device: str):
    gallery, gallery_views = encode_videos(backbone, train_index, views, device)
    queries, query_views = encode_videos(backbone, test_index, views, device)
    metrics = retrieval_accuracy(queries, torch.as_tensor(test_index.labels), gallery,
                                 torch.as_tensor(train_index.labels))
    counts = {"train_videos": len(train_index), "test_videos": len(test_index),
              "train_clips": gallery_views, "test_clips": query_views}
    return metrics, counts, queries, gallery


def run_retrieval(backbone: VideoBackbone, train_index: VideoIndex, test_index: VideoIndex, frames: int,
                  size: Sequence[int], mean: Sequence[float], std: Sequence[float], device: str = "cpu",
                  batch_size: int = 16, num_clips: int = 10, num_workers: int = 2, stride: int = 1) -> Dict:
    """Nearest-neighbour retrieval: test videos query the train videos (the papers' protocol).

    Returns fractions ``top1, top5, top10, top20, top50``, ``num_queries``, ``num_gallery``
    and ``clipped_k`` (metrics whose k exceeded the gallery). Under torch.distributed call it
    on every rank: each extracts its shard of the clips, and all get the same result.
    """
    views = Views(frames=frames, size=tuple(size), mean=tuple(mean), std=tuple(std), stride=stride,
                  num_clips=num_clips, batch_size=batch_size, num_workers=num_workers)
    return _retrieval(backbone, train_index, test_index, views, device)[0]


# --- sub-commands --------------------------------------------------------------------------------
def cmd_retrieval(args, backbone, views: Views, data, out_stem: str) -> Dict:
    train_index, test_index = data
    metrics, counts, queries, gallery = _retrieval(backbone, train_index, test_index, views, args.device)
    result = {"metrics": metrics, "counts": counts}
    if args.show and get_rank() == 0:
        nearest = rank_gallery(queries, gallery, 3)
        result["figure"] = save_neighbours(out_stem + ".retrieval.png", test_index, train_index, nearest, args.show)
    return result


def _labels(index: VideoIndex, split: str) -> torch.Tensor:
    labels = torch.as_tensor(index.labels)
    if labels.min() < 0:
        raise ValueError(f"the {split} videos include unlabelled ones (label -1); classification needs labels")
    return labels


def _num_classes(*indexes: VideoIndex) -> int:
    return max(max(len(i.classes), int(i.labels.max()) + 1) for i in indexes)


def _classify(model, test_index: VideoIndex, views: Views, device: str) -> Tuple[Dict, int]:
    """Softmax probabilities averaged over each test video's views → top-1/5; also the distinct view count."""
    logits, video, clip_id = view_outputs(model, test_index, views, device, "test")
    probs = video_probabilities(logits, video, clip_id, len(test_index))
    return topk_accuracy(probs, _labels(test_index, "test")), len(distinct_views(video, clip_id))


def cmd_linear(args, backbone, views: Views, data) -> Dict:
    train_index, test_index = data
    num_classes = _num_classes(train_index, test_index)
    _, device = resolve_device(args.device)
    backbone.to(device).eval()
    with torch.no_grad():
        feats, video, clip_id = view_outputs(backbone.features, train_index, views, args.device, "train features")
    rows = distinct_views(video, clip_id)
    # Every rank holds all features and trains the same probe (same seed): no broadcast needed.
    probe, losses = train_linear_probe(feats[rows], _labels(train_index, "train")[video[rows]], num_classes,
                                       epochs=args.epochs, lr=args.lr, batch_size=args.probe_batch_size,
                                       weight_decay=args.weight_decay, seed=args.seed, device=device)
    test_views = replace(views, num_crops=args.test_crops)
    with torch.no_grad():
        metrics, test_clips = _classify(lambda x: probe(backbone.features(x)), test_index, test_views, args.device)
    counts = {"train_videos": len(train_index), "test_videos": len(test_index), "train_clips": len(rows),
              "test_clips": test_clips, "num_classes": num_classes}
    return {"metrics": {**metrics, "final_train_loss": losses[-1]}, "counts": counts}


def cmd_finetune(args, backbone, views: Views, data, augment: Dict) -> Dict:
    train_index, test_index = data
    num_classes = _num_classes(train_index, test_index)
    _labels(train_index, "train")
    kind, device = resolve_device(args.device)
    model = FineTuneClassifier(backbone, num_classes, args.hidden_dim).to(device)
    trained = model
    if get_world_size() > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if kind == "gpu" else None)
    # view1 of the SimCLR pipeline: one clip per video at a random start, with the training
    # augmentation applied clip-consistently (view2 is built too and left unused).
    clip = {"frames": views.frames, "speeds": [views.stride], "augment": augment}
    loader = make_iterator("simclr", train_index, views.batch_size, kind, args.seed, get_rank(), get_world_size(),
                           config={"clip": clip}, decoder=views.decoder, num_workers=views.num_workers,
                           device_id=device.index or 0)

    def report(epoch, loss):
        if get_rank() == 0:
            print(f"epoch {epoch + 1}/{args.epochs}  loss {loss:.4f}", flush=True)

    losses = fine_tune(trained, loader, args.epochs, args.optimizer, args.lr, args.weight_decay,
                       warmup_epochs=args.warmup_epochs, clip_key="view1", device=device, on_epoch=report)
    model.eval()
    test_views = replace(views, num_crops=args.test_crops)
    with torch.no_grad():
        metrics, test_clips = _classify(model, test_index, test_views, args.device)
    counts = {"train_videos": len(train_index), "test_videos": len(test_index),
              "train_clips_per_epoch": len(loader) * views.batch_size * get_world_size(),
              "test_clips": test_clips, "num_classes": num_classes}
    return {"metrics": {**metrics, "final_train_loss": losses[-1]}, "counts": counts}


# --- output ------------------------------------------------------------------------------------------
def first_frame(path: str, size: int) -> np.ndarray:
    from PIL import Image

    frame = read_window(path, 0, 1)[0]
    return np.asarray(Image.fromarray(frame).resize((size, size)))


def save_neighbours(path: str, queries: VideoIndex, gallery: VideoIndex, nearest: torch.Tensor, count: int,
                    tile: int = 96) -> str:
    """PNG: ``count`` queries (evenly spread over the test set) and their top-3 neighbours (MCPNet Fig. 3).

    One row per query: its first frame, then its neighbours' first frames framed green when
    they share its class, red otherwise; class names underneath.
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
    canvas.save(path)
    return path


def print_table(task: str, result: Dict) -> None:
    metrics, counts = result["metrics"], result["counts"]
    names = [k for k in metrics if k.startswith("top")]
    clipped = metrics.get("clipped_k", {})
    print(f"\n{task}: {counts['test_videos']} test videos ({counts['test_clips']} clips), "
          f"{counts['train_videos']} train videos")
    print("  ".join(f"{'top-' + k[3:]:>7}" for k in names))
    print("  ".join(f"{100 * metrics[k]:6.1f}{'*' if k in clipped else ' '}" for k in names))
    if clipped:
        print("* k larger than the candidates: " + ", ".join(f"{k} uses k={v}" for k, v in clipped.items()))


# --- command line ----------------------------------------------------------------------------------
def parse_args(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", help="checkpoint file (or a run's checkpoint folder: the newest one)")
    common.add_argument("--random-init", action="store_true",
                        help="evaluate a randomly initialised backbone (the baseline) instead of the weights")
    common.add_argument("--backbone", choices=sorted(BACKBONES),
                        help="with --random-init: the architecture (default: the checkpoint's, else tiny)")
    common.add_argument("--train", help="train videos / gallery: dataset folder, prepared dataset or list "
                                        "(default: the demo data)")
    common.add_argument("--test", help="test videos / queries (default: --train's folder with --split-test)")
    common.add_argument("--split-train", default="train", help="split of a prepared dataset (default: train)")
    common.add_argument("--split-test", default="test", help="split of a prepared dataset (default: test)")
    common.add_argument("--frames", type=int, help="frames per clip (default: the checkpoint's, else 16)")
    common.add_argument("--stride", type=int, default=1, help="frame stride within a clip (default 1)")
    common.add_argument("--size", type=int, nargs="+", help="H [W] of a clip (default: the checkpoint's, else 112)")
    common.add_argument("--num-clips", type=int, default=10, help="clips per video (default 10)")
    common.add_argument("--batch-size", type=int, default=16)
    common.add_argument("--device", default="auto", choices=DEVICES)
    common.add_argument("--decoder", choices=DECODERS, help="default: dali (NVDEC) on GPU, pyav on CPU")
    common.add_argument("--num-workers", type=int, default=2, help="decoding worker processes")
    common.add_argument("--out", help="folder for the JSON (and PNG) (default: the checkpoint's folder, else ./eval)")
    common.add_argument("--seed", type=int, default=0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True, metavar="{" + ",".join(TASKS) + "}")
    retrieval = sub.add_parser("retrieval", parents=[common], help="nearest-neighbour video retrieval")
    retrieval.add_argument("--show", type=int, default=0, metavar="N", help="PNG of N queries and their top-3")
    linear = sub.add_parser("linear", parents=[common], help="linear probe on frozen features")
    linear.add_argument("--epochs", type=int, default=100)
    linear.add_argument("--lr", type=float, default=0.1)
    linear.add_argument("--probe-batch-size", type=int, default=256)
    linear.add_argument("--weight-decay", type=float, default=0.0)
    linear.add_argument("--test-crops", type=int, default=1, choices=NUM_CROPS)
    finetune = sub.add_parser("finetune", parents=[common], help="fine-tune the whole network with a new head")
    finetune.add_argument("--epochs", type=int, default=10, help="default 10 (the papers: 100)")
    finetune.add_argument("--optimizer", default="sgd", choices=sorted(OPTIMIZERS))
    finetune.add_argument("--lr", type=float, default=0.05,
                          help="peak learning rate (default 0.05 for the demo; MCPNet: sgd 0.005, MoQuad: lars 0.08)")
    finetune.add_argument("--weight-decay", type=float, default=1e-4)
    finetune.add_argument("--warmup-epochs", type=float, default=0.0)
    finetune.add_argument("--hidden-dim", type=int, help="width of the head's hidden layer (default: feature_dim)")
    finetune.add_argument("--flip-prob", type=float,
                          help="horizontal flip probability (default: the checkpoint's; 0 on the demo data)")
    finetune.add_argument("--test-crops", type=int, default=3, choices=NUM_CROPS)
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.random_init:
        parser.error("give --checkpoint, or --random-init for the random-initialisation baseline")
    if args.backbone and not args.random_init:
        parser.error("--backbone chooses the architecture of --random-init; a checkpoint names its own")
    if args.size is not None and len(args.size) not in (1, 2):
        parser.error(f"--size takes H or H W, got {args.size}")
    return args


def _clip_config(config: Optional[dict], where: str) -> Tuple[int, Dict]:
    """Frames per clip and the augmentation dict of the checkpoint's pipeline config (contract keys checked)."""
    if config is None:
        return 16, {"size": [112, 112], "mean": list(KINETICS_MEAN), "std": list(KINETICS_STD)}
    clip = config["pipeline_config"].get("clip", {})
    augment = dict(clip.get("augment", {}))
    missing = [k for k in ("frames",) if k not in clip] + [f"augment.{k}" for k in ("size", "mean", "std")
                                                          if k not in augment]
    if missing:
        raise CheckpointError(f"{where}: pipeline_config.clip lacks {missing}; cannot rebuild the training clips")
    return int(clip["frames"]), augment


def load_data(args, rank: int, world: int) -> Tuple[Tuple[VideoIndex, VideoIndex], Dict]:
    """(train index, test index) and a description of where they came from."""
    if args.train is None and args.test is None:
        root = demo.generate() if rank == 0 else None
        if world > 1:  # rank 0 writes the demo data once; the others read it
            dist.barrier()
            root = demo.generate()
        train, test = root, root
    else:
        train, test = args.train or args.test, args.test or args.train
    if train == test and not os.path.exists(os.path.join(train, "classes.txt")):
        raise ValueError(f"{train} is not a prepared dataset with splits; give both --train and --test")

    def load(path, split):
        prepared = os.path.isdir(path) and os.path.exists(os.path.join(path, "classes.txt"))
        return load_index(path, split=split if prepared else None)

    described = {"train": train, "test": test, "split_train": args.split_train, "split_test": args.split_test}
    return (load(train, args.split_train), load(test, args.split_test)), described


def main(argv=None) -> Dict:
    args = parse_args(argv)
    start = time.time()
    world, local = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    gpu = args.device == "gpu" or (args.device == "auto" and torch.cuda.is_available())
    if gpu:
        torch.cuda.set_device(local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    rank = get_rank()
    try:
        result = _run(args, rank, world, start)
    except (CheckpointError, FileNotFoundError, VideoError, ValueError) as exc:
        print(f"eval.py {args.task}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return result


def _run(args, rank: int, world: int, start: float) -> Dict:
    torch.manual_seed(args.seed)
    state = read_checkpoint(args.checkpoint) if args.checkpoint else None
    config = state["config"] if state else None
    if args.random_init:
        name = args.backbone or (config["backbone"] if config else "tiny")
        kwargs = dict(config["backbone_kwargs"]) if config and name == config["backbone"] else {}
        backbone = build_backbone(name, kwargs, "--backbone")
    else:
        backbone = backbone_from_state(state)
        name, kwargs = config["backbone"], config["backbone_kwargs"]
    frames, augment = _clip_config(config, state["path"] if state else "")
    size = args.size or augment["size"]
    size = (size[0], size[-1])
    views = Views(frames=args.frames or frames, size=tuple(size), mean=tuple(augment["mean"]),
                  std=tuple(augment["std"]), stride=args.stride, num_clips=args.num_clips,
                  batch_size=args.batch_size, num_workers=args.num_workers, decoder=args.decoder,
                  antialias=bool(augment.get("antialias", False)))
    data, described = load_data(args, rank, world)

    if state:
        out_dir = args.out or os.path.dirname(os.path.abspath(state["path"]))
        stem = os.path.splitext(os.path.basename(state["path"]))[0] + ("-random-init" if args.random_init else "")
    else:
        out_dir, stem = args.out or "eval", f"random-init-{name}"
    if rank == 0:
        os.makedirs(out_dir, exist_ok=True)
    out_stem = os.path.join(out_dir, stem)

    if args.task == "retrieval":
        result = cmd_retrieval(args, backbone, views, data, out_stem)
    elif args.task == "linear":
        result = cmd_linear(args, backbone, views, data)
    else:
        # The training clips: the checkpoint's augmentation at the evaluation clip size.
        train_augment = {**augment, "size": list(views.size), "mean": list(views.mean), "std": list(views.std)}
        if args.flip_prob is not None:
            train_augment["flip_prob"] = args.flip_prob
        elif args.train is None and args.test is None:
            train_augment["flip_prob"] = 0.0  # demo classes include left vs right: a flip changes the class
        result = cmd_finetune(args, backbone, views, data, train_augment)

    record = {"task": args.task, "checkpoint": state["path"] if state else None, "random_init": args.random_init,
              "backbone": name, "backbone_kwargs": kwargs, "data": described, "views": asdict(views),
              "options": {k: v for k, v in vars(args).items() if k not in ("task", "checkpoint", "train", "test")},
              "world_size": world, "seconds": round(time.time() - start, 1), **result,
              "checkpoint_config": config}
    if rank == 0:
        print_table(args.task, result)
        record["json"] = out_stem + f".{args.task}.json"
        with open(record["json"], "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {record['json']}" + (f" and {result['figure']}" if result.get("figure") else ""))
    return record


if __name__ == "__main__":
    main()
