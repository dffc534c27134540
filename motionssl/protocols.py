"""The evaluation protocols of both papers on the pipelines' evaluation views.

Glue between :mod:`motionssl.pipelines.evaluation` (deterministic multi-clip, multi-crop
views of every video) and :mod:`motionssl.models.evaluation` (per-video averaging, metrics,
probe and fine-tuning loops): the one place where the two libraries meet. ``eval.py`` and
``train.py`` call these; under torchrun every rank calls them, extracts its shard of the
views, and all ranks get the same result.

* :func:`retrieval` — backbone features of every view, averaged per video,
  L2-normalised; each test video queries the train videos; top-k (MoQuad §4.2,
  MCPNet §4.4).
* :func:`linear_probe` — a linear classifier on frozen features of every clip of the
  train videos; test: softmax averaged over the test views.
* :func:`finetune` — the whole network with a new two-layer head, trained on
  clip-consistently augmented clips (the ``clip`` pipeline; MCPNet §4.1); test: softmax
  over the test views.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from motionssl.models.distributed import get_rank, get_world_size
from motionssl.models.evaluation import (
    FineTuneClassifier,
    distinct_views,
    extract_views,
    fine_tune,
    gather_views,
    retrieval_accuracy,
    topk_accuracy,
    train_linear_probe,
    video_features,
    video_probabilities,
)
from motionssl.pipelines import VideoIndex, make_iterator
from motionssl.pipelines.contract import torch_device
from motionssl.pipelines.evaluation import make_eval_iterator
from motionssl.pipelines.errors import UnlabelledError
from motionssl.pipelines.index import class_count
from motionssl.pipelines.ops.config import KINETICS_MEAN, KINETICS_STD


def current_device(device: str) -> torch.device:
    """The torch device of the pipelines' ``device`` (``cpu``, or ``gpu``: the current CUDA device)."""
    return torch_device(device, torch.cuda.current_device() if device == "gpu" else 0)


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


def view_outputs(model, index: VideoIndex, views: Views, device: str = "cpu", desc: str = ""):
    """``model`` (clips (B, C, T, H, W) → (B, D)) over every view of ``index``, gathered from all ranks.

    ``device`` is the pipelines' device (``cpu`` or ``gpu``; the GPU is the current CUDA
    device). Returns ``(outputs (N, D), video (N,), clip_id (N,))`` with padded repeats
    (see ``models.evaluation.average_views``). Each rank reads its shard (``shard_id=rank``).
    """
    torch_dev = current_device(device)
    augment = {"size": list(views.size), "mean": list(views.mean), "std": list(views.std), "antialias": views.antialias}
    clip = {"frames": views.frames, "speeds": [views.stride], "augment": augment}
    loader = make_eval_iterator(index, views.batch_size, config={"clip": clip}, num_clips=views.num_clips,
                                num_crops=views.num_crops, device=device, shard_id=get_rank(),
                                num_shards=get_world_size(), decoder=views.decoder, num_workers=views.num_workers,
                                device_id=torch_dev.index or 0)
    batches = tqdm(loader, desc=desc, disable=get_rank() != 0, leave=False)
    return gather_views(*extract_views(model, batches, torch_dev))


@torch.no_grad()
def encode_videos(backbone, index: VideoIndex, views: Views, device: str = "cpu"):
    """``(features (V, F) averaged over views and L2-normalised, number of distinct views)``."""
    was_training = backbone.training
    backbone.to(current_device(device)).eval()
    try:
        out, video, clip_id = view_outputs(backbone.features, index, views, device, "features")
    finally:
        backbone.train(was_training)
    return video_features(out, video, clip_id, len(index)), len(distinct_views(video, clip_id))


def retrieval(backbone, train_index: VideoIndex, test_index: VideoIndex, views: Views, device: str = "cpu"):
    """``(metrics, counts, query features, gallery features)``: test videos query the train videos."""
    labels_of(train_index, "train")  # before any feature: scores compare labels
    labels_of(test_index, "test")
    gallery, gallery_views = encode_videos(backbone, train_index, views, device)
    queries, query_views = encode_videos(backbone, test_index, views, device)
    metrics = retrieval_accuracy(queries, torch.as_tensor(test_index.labels), gallery,
                                 torch.as_tensor(train_index.labels))
    counts = {"train_videos": len(train_index), "test_videos": len(test_index),
              "train_clips": gallery_views, "test_clips": query_views}
    return metrics, counts, queries, gallery


def run_retrieval(backbone, train_index: VideoIndex, test_index: VideoIndex, frames: int, size: Sequence[int],
                  mean: Sequence[float], std: Sequence[float], device: str = "cpu", batch_size: int = 16,
                  num_clips: int = 10, num_workers: int = 2, stride: int = 1) -> Dict:
    """Nearest-neighbour retrieval with the papers' protocol, as fractions ``top1 .. top50``.

    Also ``num_queries``, ``num_gallery`` and ``clipped_k`` (metrics whose k exceeded the
    gallery). Under torch.distributed call it on every rank.
    """
    views = Views(frames=frames, size=tuple(size), mean=tuple(mean), std=tuple(std), stride=stride,
                  num_clips=num_clips, batch_size=batch_size, num_workers=num_workers)
    return retrieval(backbone, train_index, test_index, views, device)[0]


def labels_of(index: VideoIndex, split: str) -> torch.Tensor:
    """The class ids of ``index``; an error naming ``split`` if any video is unlabelled (−1)."""
    labels = torch.as_tensor(index.labels)
    if labels.min() < 0:
        raise UnlabelledError(f"the {split} videos include unlabelled ones (label -1); retrieval and classification "
                              "score against labels")
    return labels


def num_classes(train_index: VideoIndex, test_index: VideoIndex) -> int:
    """The classifier's width, every label of both checked against it first (``pipelines.index.class_count``)."""
    labels_of(train_index, "train")
    labels_of(test_index, "test")
    return class_count(train_index, test_index)


def classify(model, test_index: VideoIndex, views: Views, device: str) -> Tuple[Dict, int]:
    """Softmax probabilities averaged over each test video's views → top-1/5; also the distinct view count."""
    logits, video, clip_id = view_outputs(model, test_index, views, device, "test")
    probs = video_probabilities(logits, video, clip_id, len(test_index))
    return topk_accuracy(probs, labels_of(test_index, "test")), len(distinct_views(video, clip_id))


def linear_probe(backbone, train_index: VideoIndex, test_index: VideoIndex, views: Views, device: str = "cpu",
                 epochs: int = 100, lr: float = 0.1, batch_size: int = 256, weight_decay: float = 0.0,
                 test_crops: int = 1, seed: int = 0) -> Dict:
    """Linear classifier on frozen features of every train clip; test on softmax averaged over the views."""
    classes = num_classes(train_index, test_index)
    torch_dev = current_device(device)
    backbone.to(torch_dev).eval()
    with torch.no_grad():
        feats, video, clip_id = view_outputs(backbone.features, train_index, views, device, "train features")
    rows = distinct_views(video, clip_id)
    # Every rank holds all features and trains the same probe (same seed): no broadcast needed.
    probe, losses = train_linear_probe(feats[rows], labels_of(train_index, "train")[video[rows]], classes,
                                       epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                                       seed=seed, device=torch_dev)
    with torch.no_grad():
        metrics, test_clips = classify(lambda x: probe(backbone.features(x)), test_index,
                                       replace(views, num_crops=test_crops), device)
    counts = {"train_videos": len(train_index), "test_videos": len(test_index), "train_clips": len(rows),
              "test_clips": test_clips, "num_classes": classes}
    return {"metrics": {**metrics, "final_train_loss": losses[-1]}, "counts": counts}


def finetune(backbone, train_index: VideoIndex, test_index: VideoIndex, views: Views, augment: Dict,
             device: str = "cpu", epochs: int = 10, optimizer: str = "sgd", lr: float = 0.05,
             weight_decay: float = 1e-4, warmup_epochs: float = 0.0, hidden_dim: Optional[int] = None,
             test_crops: int = 3, seed: int = 0) -> Dict:
    """Fine-tune the whole network with a new head on augmented clips; test on the views.

    The training clips are those of the ``clip`` pipeline: one clip per video at a random
    start with ``augment`` applied clip-consistently.
    """
    classes = num_classes(train_index, test_index)
    torch_dev = current_device(device)
    model = FineTuneClassifier(backbone, classes, hidden_dim).to(torch_dev)
    trained = model
    if get_world_size() > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch_dev.index] if device == "gpu" else None)
    clip = {"frames": views.frames, "speeds": [views.stride], "augment": augment}
    loader = make_iterator("clip", train_index, views.batch_size, device=device, seed=seed, shard_id=get_rank(),
                           num_shards=get_world_size(), config={"clip": clip}, decoder=views.decoder,
                           num_workers=views.num_workers, device_id=torch_dev.index or 0)

    def report(epoch, loss):
        if get_rank() == 0:
            print(f"epoch {epoch + 1}/{epochs}  loss {loss:.4f}", flush=True)

    losses = fine_tune(trained, loader, epochs, optimizer, lr, weight_decay, warmup_epochs=warmup_epochs,
                       clip_key="clip", device=torch_dev, on_epoch=report)
    loader.close()
    model.eval()
    with torch.no_grad():
        metrics, test_clips = classify(model, test_index, replace(views, num_crops=test_crops), device)
    counts = {"train_videos": len(train_index), "test_videos": len(test_index),
              "train_clips_per_epoch": len(loader) * views.batch_size * get_world_size(),
              "test_clips": test_clips, "num_classes": classes}
    return {"metrics": {**metrics, "final_train_loss": losses[-1]}, "counts": counts}
