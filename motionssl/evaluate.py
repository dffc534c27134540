"""Evaluate a pre-trained backbone: video retrieval, linear probe, fine-tuning (``motionssl-eval``, ``python eval.py``).

    python eval.py retrieval --checkpoint runs/moquad-x --show 8     # the run's data and splits
    python eval.py linear    --checkpoint CKPT --data data/ucf101 --split train_split1 --test-split test_split1
    python eval.py finetune  --checkpoint CKPT --optimizer lars --lr 0.08 --epochs 100 --stride 2
    python eval.py retrieval --random-init --checkpoint runs/moquad-x   # the baseline, with the run's clips
    torchrun --nproc_per_node 8 eval.py retrieval --checkpoint CKPT --data data/ucf101 ...

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
  clip-consistently augmented clips (the ``clip`` pipeline, with the checkpoint's
  augmentation; without a checkpoint ``--config``'s, on the demo data the demo
  configuration's, else the papers' crop and flip without colour jitter), SGD or LARS with
  a cosine schedule; test: 10 clips × 3 crops; top-1/5. ``--augment papers`` trains with the
  papers' crop and flip without colour jitter or grayscale instead, at the same clip size and
  normalisation; its results are ``<name>-papersaug.finetune.json``.

``linear`` and ``finetune`` take ``--labels FRACTION``: the classifier trains on that share of
the training videos — the same share of every class (at least one video each), a fixed subset
per ``--seed`` — as the papers' label-scarce fine-tuning does; the test videos stay all.
Their results are ``<name>-labels<FRACTION>.<task>.json``.

Data are named as ``train.py`` names them: ``--data`` and ``--split`` are the training
videos (the gallery of retrieval), ``--test-split`` (or ``--test-data``) the test videos
(the queries). Without them the checkpoint's own data and splits are used, and the demo
data only for a demo checkpoint or no checkpoint at all; the first line printed says which.
``--random-init`` evaluates a randomly initialised backbone (the checkpoint's architecture,
or ``--backbone``) as the baseline, with the clip settings of the checkpoint, of ``--config``
or of the data (the demo configuration's for the demo data).
Results go to a table and to ``<checkpoint name>.<task>.json`` in ``--out``, by default
``runs/eval-<run>/`` in the current folder (``runs/eval-random-init-<backbone>/`` without a
checkpoint): evaluation never writes into the run it reads, and replaces only results of its
own. Every option is checked before any work. Under torchrun each rank extracts its shard of
the views; rank 0 prints and writes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, fields
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from motionssl import protocols, runtime
from motionssl.console import console_script
from motionssl.data import DataChoice, resolve_data
from motionssl.models.backbones import BACKBONES
from motionssl.models.evaluation import rank_gallery
from motionssl.models.optim import OPTIMIZERS
from motionssl.pipelines import VideoIndex, demo, environment, files
from motionssl.pipelines.config import ConfigError, build, shown
from motionssl.pipelines.decoders import DECODERS
from motionssl.pipelines.evaluation import NUM_CROPS
from motionssl.pipelines.errors import MotionSSLError
from motionssl.pipelines.files import FolderError
from motionssl.pipelines.index import load_pair
from motionssl.pipelines.ops.config import KINETICS_MEAN, KINETICS_STD, AugmentConfig, ClipConfig
from motionssl.pipelines.show import save_neighbours
from motionssl.pipelines.sources import PipelineError
from motionssl.pipelines.video_io import VideoError
from motionssl.protocols import Views
from motionssl.training import (
    MOVED_TO_METHOD,
    CheckpointError,
    TrainConfig,
    backbone_from_state,
    build_backbone,
    clip_settings,
    read_checkpoint,
    read_config_file,
)

TASKS = ("retrieval", "linear", "finetune")
AUGMENTS = ("checkpoint", "papers")  # finetune --augment
# A network without a checkpoint or --config takes the clip settings of its data: the demo
# configurations' for the demo data (they share them; a test checks), and otherwise the
# fine-tuning augmentation of both papers — random crop and flip, no colour jitter — on
# 16-frame 112² clips with Kinetics' normalisation.
DEMO_CONFIG = "demo/simclr.yaml"
FINETUNE_AUGMENT = {"size": [112, 112], "mean": list(KINETICS_MEAN), "std": list(KINETICS_STD),
                    "jitter_prob": 0.0, "grayscale_prob": 0.0}


def own_clip_settings(path: str) -> Tuple[int, Dict]:
    """``(frames, augmentation dict)`` of the training config ``path`` (a file or a shipped name): its
    ``pipeline_config.clip``, which every method's pipeline reads alike (the file need not name its method)."""
    values = read_config_file(path)
    unknown = sorted(set(values) - {f.name for f in fields(TrainConfig)} - set(MOVED_TO_METHOD))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {path}; a training config's keys are those of "
                          "TrainConfig (motionssl/training.py)")
    section = values.get("pipeline_config") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"pipeline_config must be a mapping, got {shown(section)} (from {path})")
    clip = build(ClipConfig, section.get("clip"), "pipeline_config.clip", origin=path)
    return clip.frames, asdict(clip.augment)


def data_clip_settings(choice: DataChoice) -> Tuple[int, Dict, str]:
    """``(frames, augmentation dict, where from)`` for a network without a checkpoint or --config."""
    if choice.demo:
        frames, augment = own_clip_settings(DEMO_CONFIG)
        return frames, augment, f"the demo configuration (configs/{DEMO_CONFIG})"
    return 16, asdict(build(AugmentConfig, FINETUNE_AUGMENT, "augment")), "crop and flip, no colour jitter"


# What fine-tuning's training clips take from the network's own augmentation under --augment papers: the clips'
# shape and pixel values as the network was trained on them.
NETWORK_CLIP_KEYS = ("size", "mean", "std", "residual_std", "antialias")


def papers_augment(augment: Dict) -> Dict:
    """The papers' fine-tuning augmentation (AugmentConfig's crop and flip, no colour jitter, no grayscale) with
    ``augment``'s clip size, normalisation and resizing."""
    papers = asdict(build(AugmentConfig, FINETUNE_AUGMENT, "augment"))
    return {**papers, **{k: augment[k] for k in NETWORK_CLIP_KEYS if k in augment}}


# --- sub-commands --------------------------------------------------------------------------------
def cmd_retrieval(args, backbone, views: Views, data, out_stem: str, rt) -> Dict:
    train_index, test_index = data
    metrics, counts, queries, gallery = protocols.retrieval(backbone, train_index, test_index, views, rt.kind)
    result = {"metrics": metrics, "counts": counts}
    if args.show and rt.main:
        nearest = rank_gallery(queries, gallery, 3)
        result["figure"] = save_neighbours(out_stem + ".retrieval.png", test_index, train_index, nearest, args.show)
    return result


def cmd_linear(args, backbone, views: Views, data, kind: str) -> Dict:
    return protocols.linear_probe(backbone, *data, views, kind, epochs=args.epochs, lr=args.lr,
                                  batch_size=args.probe_batch_size, weight_decay=args.weight_decay,
                                  test_crops=args.test_crops, seed=args.seed)


def cmd_finetune(args, backbone, views: Views, data, augment: Dict, kind: str) -> Dict:
    return protocols.finetune(backbone, *data, views, augment, kind, epochs=args.epochs, optimizer=args.optimizer,
                              lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                              hidden_dim=args.hidden_dim, test_crops=args.test_crops, seed=args.seed)


def finetune_augment(args, augment: Dict, views: Views, demo_data: bool) -> Dict:
    """The training clips' augmentation: ``augment`` (or the papers' with ``--augment papers``) at the evaluation
    clips' size and normalisation, with ``--flip-prob``'s flip."""
    chosen = papers_augment(augment) if args.augment == "papers" else augment
    train_augment = {**chosen, "size": list(views.size), "mean": list(views.mean), "std": list(views.std)}
    if args.flip_prob is not None:
        train_augment["flip_prob"] = args.flip_prob
    elif demo_data:
        train_augment["flip_prob"] = 0.0  # demo classes include left vs right: a flip changes the class
    return train_augment


def with_labels(args, data: Tuple[VideoIndex, VideoIndex], described: Dict, main: bool):
    """``(train, test)`` with the training videos cut to ``--labels``' share (all of them without it)."""
    fraction = getattr(args, "labels", 1.0)
    if fraction >= 1.0:
        return data
    train = labelled_share(data[0], fraction, args.seed)
    described["labelled_videos"] = len(train)
    if main:
        print(f"labels: {len(train)} of {len(data[0])} training videos ({fraction:g} of each class, "
              f"seed {args.seed})", flush=True)
    return train, data[1]


def labelled_share(index: VideoIndex, fraction: float, seed: int) -> VideoIndex:
    """The training videos whose labels a label-scarce evaluation keeps: ``fraction`` of every class (at least
    one video each, rounded), chosen by ``seed`` and the same for every run with that seed."""
    rng = np.random.default_rng([seed, 1021])  # its own stream: the training's draws stay as they are
    keep = []
    for label in np.unique(index.labels):
        videos = np.flatnonzero(index.labels == label)
        keep += sorted(rng.permutation(videos)[:max(1, round(fraction * len(videos)))].tolist())
    return index.subset(sorted(keep))


# --- output ------------------------------------------------------------------------------------------
def results_stem(args, state: Optional[Dict], backbone: str) -> str:
    """``<folder>/<name>``: the results are ``<name>.<task>.json`` (and ``.png``), checked before any work.

    The folder is ``--out``, by default ``runs/eval-<run>/`` in the current folder: a run is
    read, never written (its folder is the one holding ``checkpoints/``, else the
    checkpoint's). A file already there is replaced only if it is a result of this task.
    """
    if state:
        checkpoint = os.path.abspath(state["path"])
        name = os.path.splitext(os.path.basename(checkpoint))[0]
        run = os.path.dirname(os.path.dirname(checkpoint))  # <run>/checkpoints/<name>.pt
        in_run = os.path.basename(os.path.dirname(checkpoint)) == "checkpoints"
        folder = args.out or os.path.join("runs", f"eval-{os.path.basename(run) if in_run else name}")
        if not args.out and in_run and os.path.realpath(folder).startswith(os.path.join(os.path.realpath(run), "")):
            raise ValueError(f"the default results folder {folder} lies inside the run {run}, which evaluation only "
                             "reads: give --out, or run eval.py from another folder")
        name += "-random-init" if args.random_init else ""
    else:
        name = f"random-init-{backbone}"
        folder = args.out or os.path.join("runs", f"eval-{name}")
    if getattr(args, "labels", 1.0) < 1.0:  # results on a share of the labels never replace those on all of them
        name += f"-labels{args.labels:g}"
    if getattr(args, "augment", "checkpoint") != "checkpoint":  # nor do those of another training augmentation
        name += f"-{args.augment}aug"
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--out {folder} is a file, not a folder")
    stem = os.path.join(folder, name)
    record = _own_record(stem + f".{args.task}.json", args.task)
    if args.task == "retrieval" and args.show:
        figure = stem + ".retrieval.png"
        if os.path.lexists(figure) and os.path.basename((record or {}).get("figure") or "") != os.path.basename(figure):
            raise ValueError(f"{figure} exists and is not a figure of eval.py {args.task}: move it, or choose "
                             "another --out")
    return stem


def _own_record(path: str, task: str) -> Optional[Dict]:
    """The result eval.py ``task`` wrote to ``path`` before (None if none); another file there is an error."""
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("task") != task or "views" not in record:
        raise ValueError(f"{path} exists and is not a result of eval.py {task}: move it, or choose another --out")
    return record


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


def in_option_words(error: BaseException) -> str:
    """An error's message in eval.py's words: the views' ``decoder='pyav'`` is ``--decoder pyav``, load_pair's
    ``test_split=`` is ``--test-split``."""
    return re.sub(r"(?<![\w.-])(decoder|num_workers|test_split|test_data)=(['\"]?)([^'\"\s;,)]*)\2",
                  lambda m: f"--{m.group(1).replace('_', '-')} {m.group(3)}".rstrip(), str(error))


# --- command line ----------------------------------------------------------------------------------
def number(kind, low, high=None, above=False):
    """An argparse type: a finite ``kind`` (int or float) >= ``low`` (> with ``above``), <= ``high`` if given."""
    bound = (f"> {low}" if above else f">= {low}") + (f" and <= {high}" if high is not None else "")
    what = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: need {what} {bound}")
        return value

    return parse


COUNT, NONNEGATIVE, RATE = number(int, 1), number(int, 0), number(float, 0, above=True)
DECAY = number(float, 0)


def common_options() -> argparse.ArgumentParser:
    """The options of every task (a parent parser): the network, the data, the views, the device and the output."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", help="checkpoint file (or a run's checkpoint folder: the newest one)")
    common.add_argument("--random-init", action="store_true",
                        help="evaluate a randomly initialised backbone (the baseline) instead of the weights")
    common.add_argument("--backbone", choices=sorted(BACKBONES),
                        help="with --random-init: the architecture (default: the checkpoint's, else tiny)")
    common.add_argument("--data", "--train", dest="data",
                        help="training videos (retrieval: the gallery): prepared dataset folder, class folder or list "
                             "(default: the checkpoint's data; the demo data for a demo checkpoint); every evaluation "
                             "needs labelled videos")
    common.add_argument("--split", "--split-train", dest="split",
                        help="their split of a prepared dataset, e.g. train_split1 (default: the checkpoint's)")
    common.add_argument("--test-data", "--test", dest="test_data",
                        help="test videos (retrieval: the queries) when they are not a split of --data")
    common.add_argument("--test-split", "--split-test", dest="test_split",
                        help="their split of a prepared dataset, e.g. test_split1 (default: the checkpoint's)")
    common.add_argument("--config", help="with --random-init and no checkpoint: a training config whose clip length, "
                                         "size and normalisation to use")
    common.add_argument("--frames", type=COUNT,
                        help="frames per clip (default: the checkpoint's or --config's; the demo data: 8; else 16)")
    common.add_argument("--stride", type=COUNT, default=1, help="frame stride within a clip (default 1)")
    common.add_argument("--size", type=COUNT, nargs="+",
                        help="H [W] of a clip (default: the checkpoint's or --config's; the demo data: 56; else 112)")
    common.add_argument("--num-clips", type=COUNT, default=10, help="clips per video (default 10)")
    common.add_argument("--batch-size", type=COUNT, default=16)
    common.add_argument("--device", default="auto", choices=runtime.DEVICE_CHOICES)
    common.add_argument("--decoder", choices=DECODERS, help="default: dali (NVDEC) on GPU, pyav on CPU")
    common.add_argument("--num-workers", type=NONNEGATIVE, default=2, help="decoding worker processes")
    common.add_argument("--out", help="folder for the results, <checkpoint name>.<task>.json (and .png) (default: "
                                      "runs/eval-<run>/ in the current folder, never the run's own folder; "
                                      "without a checkpoint runs/eval-random-init-<backbone>/)")
    common.add_argument("--seed", type=number(int, 0, 2 ** 63 - 1), default=0)
    return common


def parse_args(argv=None):
    common = common_options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True, metavar="{" + ",".join(TASKS) + "}")
    retrieval = sub.add_parser("retrieval", parents=[common], help="nearest-neighbour video retrieval")
    retrieval.add_argument("--show", type=NONNEGATIVE, default=0, metavar="N", help="PNG of N queries and their top-3")
    linear = sub.add_parser("linear", parents=[common], help="linear probe on frozen features")
    linear.add_argument("--epochs", type=COUNT, default=100)
    linear.add_argument("--lr", type=RATE, default=0.1)
    linear.add_argument("--probe-batch-size", type=COUNT, default=256)
    linear.add_argument("--weight-decay", type=DECAY, default=0.0)
    linear.add_argument("--test-crops", type=int, default=1, choices=NUM_CROPS)
    finetune = sub.add_parser("finetune", parents=[common], help="fine-tune the whole network with a new head")
    finetune.add_argument("--epochs", type=COUNT, default=10, help="default 10 (the papers: 100)")
    finetune.add_argument("--optimizer", default="sgd", choices=sorted(OPTIMIZERS))
    finetune.add_argument("--lr", type=RATE, default=0.05,
                          help="peak learning rate (default 0.05 for the demo; MCPNet: sgd 0.005, MoQuad: lars 0.08)")
    finetune.add_argument("--weight-decay", type=DECAY, default=1e-4)
    finetune.add_argument("--warmup-epochs", type=DECAY, default=0.0, help="at most --epochs")
    finetune.add_argument("--hidden-dim", type=COUNT, help="width of the head's hidden layer (default: feature_dim)")
    finetune.add_argument("--flip-prob", type=number(float, 0, 1),
                          help="horizontal flip probability (default: the checkpoint's, with --augment papers "
                               "0.5; 0 on the demo data)")
    finetune.add_argument("--augment", default="checkpoint", choices=AUGMENTS,
                          help="the training clips' augmentation: 'checkpoint' (default) the checkpoint's (without "
                               "a checkpoint: --config's, else the data's); 'papers' the papers' crop and flip "
                               "without colour jitter or grayscale, at the same clip size and normalisation (results: "
                               "<name>-papersaug.finetune.json)")
    finetune.add_argument("--test-crops", type=int, default=3, choices=NUM_CROPS)
    for task in (linear, finetune):
        task.add_argument("--labels", type=number(float, 0, 1, above=True), default=1.0, metavar="FRACTION",
                          help="train on this fraction of the training videos' labels: the same share of every "
                               "class, a fixed subset per --seed (default 1: all)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.random_init:
        parser.error("give --checkpoint, or --random-init for the random-initialisation baseline")
    if args.backbone and not args.random_init:
        parser.error("--backbone chooses the architecture of --random-init; a checkpoint names its own")
    if args.size is not None and len(args.size) not in (1, 2):
        parser.error(f"--size takes H or H W, got {args.size}")
    if args.task == "finetune" and args.warmup_epochs > args.epochs:
        parser.error(f"--warmup-epochs {args.warmup_epochs:g} is longer than --epochs {args.epochs}")
    return args


def load_data(choice: DataChoice, rt) -> Tuple[Tuple[VideoIndex, VideoIndex], Dict]:
    """(train index, test index) of ``choice`` and a description of where they came from."""
    data = runtime.rank_zero_first(rt, demo.generate) if choice.demo else choice.data
    split, test_data, test_split = choice.split, choice.test_data, choice.test_split
    # A first run demuxes every video: once per machine; the machine's other ranks read its index cache.
    train, test, describe = runtime.local_rank_zero_first(rt, lambda: load_pair(data, split, test_data, test_split))
    if rt.main:
        print(f"data ({choice.source}): {describe}", flush=True)
    described = {"data": data, "split": split, "test_data": test_data or data, "test_split": test_split,
                 "from": choice.source}
    return (train, test), described


def main(argv=None) -> Dict:
    args = parse_args(argv)
    start = time.time()
    try:
        rt = runtime.start(args.device)
    except ValueError as exc:
        print(f"eval.py {args.task}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        return _run(args, rt, start)
    except (MotionSSLError, CheckpointError, FileNotFoundError, VideoError, ValueError, PipelineError, FolderError,
            OSError) as exc:
        if environment.debug():
            raise
        print(f"eval.py {args.task}: error: {in_option_words(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"eval.py {args.task}: interrupted; nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        runtime.stop(rt)


def _run(args, rt, start: float) -> Dict:
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
    out_stem = results_stem(args, state, name)
    choice = resolve_data(args.data, args.split, args.test_data, args.test_split, saved=config, need_test=True)
    if config is None and args.config:  # a training config: its clip shape, augmentation and normalisation
        frames, augment = own_clip_settings(args.config)
        clip_from = args.config
    elif config is None:
        frames, augment, clip_from = data_clip_settings(choice)
    else:
        frames, augment = clip_settings(config, state["path"])
        clip_from = "the checkpoint"
    if rt.main:
        shown_from = (f"the papers' fine-tuning (crop and flip, no colour jitter or grayscale), size and "
                      f"normalisation of {clip_from}" if getattr(args, "augment", None) == "papers" else clip_from)
        print(f"clips: {args.frames or frames} frames, augmentation of {shown_from}", flush=True)
    size = args.size or augment["size"]
    size = (size[0], size[-1])
    views = Views(frames=args.frames or frames, size=tuple(size), mean=tuple(augment["mean"]),
                  std=tuple(augment["std"]), stride=args.stride, num_clips=args.num_clips,
                  batch_size=args.batch_size, num_workers=args.num_workers, decoder=args.decoder,
                  antialias=bool(augment.get("antialias", False)))
    data, described = load_data(choice, rt)
    described["clips_from"] = clip_from
    data = with_labels(args, data, described, rt.main)
    if rt.main:
        os.makedirs(os.path.dirname(out_stem), exist_ok=True)

    if args.task == "retrieval":
        result = cmd_retrieval(args, backbone, views, data, out_stem, rt)
    elif args.task == "linear":
        result = cmd_linear(args, backbone, views, data, rt.kind)
    else:
        train_augment = finetune_augment(args, augment, views, demo_data=described["from"] == "the demo data")
        result = {**cmd_finetune(args, backbone, views, data, train_augment, rt.kind), "train_augment": train_augment}

    record = {"task": args.task, "checkpoint": state["path"] if state else None, "random_init": args.random_init,
              "backbone": name, "backbone_kwargs": kwargs, "data": described, "views": asdict(views),
              "options": {k: v for k, v in vars(args).items() if k not in ("task", "checkpoint", "data", "test_data")},
              "world_size": rt.world, "seconds": round(time.time() - start, 1), **result,
              "checkpoint_config": config}
    if rt.main:
        print_table(args.task, result)
        record["json"] = out_stem + f".{args.task}.json"
        files.write_text(record["json"], json.dumps(record, indent=2))
        print(f"wrote {record['json']}" + (f" and {result['figure']}" if result.get("figure") else ""))
    return record


cli = console_script(__name__)  # ``motionssl-eval``


if __name__ == "__main__":
    main()
