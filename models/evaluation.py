"""Downstream evaluation of a backbone: retrieval, linear probe, fine-tuning (pure PyTorch).

The evaluation pipelines (``pipelines/evaluation.py``) show every video through several
*views* (clips × crops); each batch row carries the video's ``index`` and the view's
``clip_id``, and padding repeats some rows. Everything here works on such rows:

* :func:`extract_views` runs a model over the batches; :func:`gather_views` collects the
  rows of every rank under ``torchrun``;
* :func:`average_views` drops repeated ``(video, view)`` rows and averages per video —
  features for retrieval (:func:`video_features`, then L2-normalised), softmax
  probabilities for classification (:func:`video_probabilities`);
* :func:`retrieval_accuracy` — each query (test video) ranks the gallery (train videos)
  by cosine similarity; top-k is a hit when any of the k nearest has the query's class
  (MoQuad §4.2, MCPNet §4.4: k = 1, 5, 10, 20, 50);
* :func:`topk_accuracy` — classification top-1 / top-5;
* :func:`train_linear_probe` (frozen features) and :func:`fine_tune` (whole network with a
  new two-layer head, MCPNet §4.1), both SGD (or LARS) with a half-period cosine decay.

Ties are broken by position (the earlier gallery video, the lower class id) so that
results do not depend on the sorting kernel.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from motionssl.models.distributed import is_distributed
from motionssl.models.optim import build_optimizer, cosine_schedule

RETRIEVAL_KS = (1, 5, 10, 20, 50)
CLASSIFICATION_KS = (1, 5)


# --- views → videos ----------------------------------------------------------------------------
@torch.no_grad()
def extract_views(model: Callable[[Tensor], Tensor], batches: Iterable[Mapping[str, Tensor]],
                  device: torch.device | str = "cpu") -> Tuple[Tensor, Tensor, Tensor]:
    """Run ``model`` over every batch's ``clips`` (B, C, T, H, W).

    Returns ``(outputs (N, D) float32, index (N,), clip_id (N,))`` on the CPU, one row per
    view, padded repeats included (see :func:`average_views`). Clips are cast to float32:
    GPU pipelines deliver float16 and the backbone's weights are float32.
    """
    outputs, index, clip_id = [], [], []
    for batch in batches:
        out = model(batch["clips"].to(device, non_blocking=True).float())
        outputs.append(out.float().cpu())
        index.append(batch["index"].cpu())
        clip_id.append(batch["clip_id"].cpu())
    if not outputs:
        raise ValueError("no batches to evaluate")
    return torch.cat(outputs), torch.cat(index), torch.cat(clip_id)


def gather_views(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """Concatenate each tensor (N_r, ...) over all ranks; the tensors themselves in one process.

    Uses ``all_gather_object`` (pickled CPU tensors): rows per rank may differ, and a few
    thousand feature rows are cheap to ship this way.
    """
    if not is_distributed():
        return tensors
    gathered: List[Optional[Tuple[Tensor, ...]]] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, tuple(t.cpu() for t in tensors))
    return tuple(torch.cat([g[i] for g in gathered]) for i in range(len(tensors)))


def distinct_views(video: Tensor, view: Tensor) -> Tensor:
    """Row numbers of the first occurrence of every ``(video, view)`` pair, in order (drops padding)."""
    if len(video) == 0 or len(video) != len(view):
        raise ValueError(f"need as many video ids as view ids, and at least one, got {len(video)} and {len(view)}")
    video, view = video.long(), view.long()
    key = video * (int(view.max()) + 1) + view
    unique, inverse = torch.unique(key, return_inverse=True)
    rows = torch.arange(len(key))
    return torch.full((len(unique),), len(key)).scatter_reduce(0, inverse, rows, reduce="amin").sort().values


def average_views(values: Tensor, video: Tensor, view: Tensor, num_videos: int) -> Tuple[Tensor, Tensor]:
    """Mean of ``values`` (N, D) per video over its distinct views.

    Rows repeating an earlier ``(video, view)`` pair (padding, shard wrap-around) are
    dropped first, so every view counts once. Sums are taken in float64.

    Returns ``(means (num_videos, D) in values' dtype, views (num_videos,) int64)``; a video
    without any view is an error (it would silently get a zero feature).
    """
    if len(values) != len(video):
        raise ValueError(f"values and video ids need one row each, got {len(values)} and {len(video)}")
    first = distinct_views(video, view)
    if video.min() < 0 or video.max() >= num_videos:
        raise ValueError(f"video ids must lie in [0, {num_videos}), got [{int(video.min())}, {int(video.max())}]")
    kept, owner = values[first].double(), video[first].long()
    sums = torch.zeros(num_videos, values.shape[1], dtype=torch.float64).index_add_(0, owner, kept)
    counts = torch.bincount(owner, minlength=num_videos)
    missing = torch.nonzero(counts == 0).flatten().tolist()
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(f"no views of videos {missing[:10]}{more}; were all shards gathered?")
    return (sums / counts[:, None]).to(values.dtype), counts


def video_features(features: Tensor, video: Tensor, view: Tensor, num_videos: int) -> Tensor:
    """(N, F) view features → (num_videos, F) mean per video, L2-normalised (retrieval)."""
    return F.normalize(average_views(features, video, view, num_videos)[0], dim=1)


def video_probabilities(logits: Tensor, video: Tensor, view: Tensor, num_videos: int) -> Tensor:
    """(N, classes) view logits → (num_videos, classes) softmax probabilities averaged per video."""
    return average_views(torch.softmax(logits.float(), dim=1), video, view, num_videos)[0]


# --- metrics -----------------------------------------------------------------------------------
def _ranked(scores: Tensor, k: int) -> Tensor:
    """Column indices of the ``k`` largest scores per row, ties in column order (stable sort)."""
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]


def rank_gallery(query: Tensor, gallery: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """(Q, min(k, G)) gallery indices of each query's nearest videos by cosine similarity.

    Similarities are computed in float64, ``chunk`` queries at a time (a full Q × G sort
    of a large dataset does not fit in memory at once).
    """
    q = F.normalize(query.double(), dim=1)
    g = F.normalize(gallery.double(), dim=1)
    k = min(k, len(g))
    return torch.cat([_ranked(q[i:i + chunk] @ g.T, k) for i in range(0, len(q), chunk)])


def _hits_at(hits: Tensor, ks: Sequence[int], width: int) -> Dict[str, object]:
    """``top{k}`` = fraction of rows with a hit in the first min(k, width) columns."""
    result: Dict[str, object] = {}
    clipped = {}
    for k in ks:
        used = min(k, width)
        result[f"top{k}"] = hits[:, :used].any(dim=1).float().mean().item()
        if used < k:
            clipped[f"top{k}"] = used
    result["clipped_k"] = clipped  # metric name → the k actually used, when fewer candidates exist
    return result


def retrieval_accuracy(query: Tensor, query_labels: Tensor, gallery: Tensor, gallery_labels: Tensor,
                       ks: Sequence[int] = RETRIEVAL_KS) -> Dict[str, object]:
    """Top-k retrieval accuracy (fractions in [0, 1]) of ``query`` (Q, F) against ``gallery`` (G, F).

    A query scores a hit at k when any of its k nearest gallery videos has its class; k
    larger than the gallery is clipped to G and listed in ``clipped_k``. Also returns
    ``num_queries`` and ``num_gallery``.
    """
    if len(query) == 0 or len(gallery) == 0:
        raise ValueError(f"retrieval needs queries and a gallery, got {len(query)} and {len(gallery)}")
    nearest = rank_gallery(query, gallery, max(ks))
    hits = gallery_labels[nearest] == query_labels[:, None]
    return {**_hits_at(hits, ks, len(gallery)), "num_queries": len(query), "num_gallery": len(gallery)}


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = CLASSIFICATION_KS) -> Dict[str, object]:
    """Classification top-k accuracy (fractions) of ``scores`` (V, classes) for ``labels`` (V,).

    k larger than the number of classes is clipped and listed in ``clipped_k``.
    """
    hits = _ranked(scores, max(ks)) == labels[:, None]
    return {**_hits_at(hits, ks, scores.shape[1]), "num_videos": len(labels)}


# --- linear probe ------------------------------------------------------------------------------
class LinearProbe(nn.Module):
    """Standardise frozen features with the training set's statistics, then one linear layer.

    Features of different backbones (or of a random one) differ in scale by orders of
    magnitude; standardising makes one learning rate fit all without changing what a
    linear classifier can express. Shapes: (N, F) → (N, num_classes).
    """

    def __init__(self, mean: Tensor, std: Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clamp_min(1e-6))
        self.fc = nn.Linear(len(mean), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc((x - self.mean) / self.std)


def train_linear_probe(features: Tensor, labels: Tensor, num_classes: int, epochs: int = 100, lr: float = 0.1,
                       batch_size: int = 256, weight_decay: float = 0.0, momentum: float = 0.9, seed: int = 0,
                       device: torch.device | str = "cpu") -> Tuple[LinearProbe, List[float]]:
    """Train a :class:`LinearProbe` on fixed ``features`` (N, F) with cross-entropy.

    SGD with momentum; the learning rate follows a half-period cosine from ``lr`` to 0
    over all ``epochs · ⌈N / batch_size⌉`` steps, updated every step, without warm-up.
    Shuffling and the initial weights come from ``seed`` (the global RNG is untouched).
    Returns the probe (in eval mode) and the mean loss of every epoch.
    """
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) (unlabelled videos cannot train a classifier)")
    features, labels = features.float().to(device), labels.long().to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = LinearProbe(features.mean(0), features.std(0), num_classes).to(device)
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(features) / batch_size)
    optimizer = build_optimizer("sgd", probe, lr=lr, weight_decay=weight_decay, momentum=momentum)
    schedule = cosine_schedule(optimizer, epochs * steps)
    losses = []
    probe.train()
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator).to(device)
        total = torch.zeros((), device=device)
        for rows in order.split(batch_size):
            loss = F.cross_entropy(probe(features[rows]), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.detach() * len(rows)
        losses.append(total.item() / len(features))  # one sync per epoch, not per step
    return probe.eval(), losses


# --- fine-tuning -------------------------------------------------------------------------------
class FineTuneClassifier(nn.Module):
    """The backbone with a new classification head of two fully-connected layers (MCPNet §4.1).

    Head: Linear(F, hidden) → ReLU → Linear(hidden, num_classes), randomly initialised;
    ``hidden_dim`` defaults to the backbone's feature_dim. Shapes: clips (B, C, T, H, W) →
    logits (B, num_classes).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, hidden_dim: Optional[int] = None):
        super().__init__()
        hidden = hidden_dim or backbone.feature_dim
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(backbone.feature_dim, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone.features(x))


def fine_tune(model: nn.Module, batches, epochs: int, optimizer: str = "sgd", lr: float = 0.005,
              weight_decay: float = 1e-4, momentum: float = 0.9, warmup_epochs: float = 0.0,
              clip_key: str = "clips", device: torch.device | str = "cpu",
              on_epoch: Optional[Callable[[int, float], None]] = None) -> List[float]:
    """Train every parameter of ``model`` with cross-entropy on ``batches[clip_key]`` and ``label``.

    ``batches`` is re-iterable, one epoch per pass, with ``len()`` batches (a pipeline
    iterator; clips (B, C, T, H, W)). ``optimizer`` is ``"sgd"`` (MCPNet: lr 0.005) or
    ``"lars"`` (MoQuad: lr 0.08 at batch 32) from :func:`models.optim.build_optimizer`; the
    learning rate warms up linearly for ``warmup_epochs`` and then decays over a half-period
    cosine to 0 at the last step, updated every step. ``model`` may be wrapped in
    DistributedDataParallel. ``on_epoch(epoch, mean_loss)`` is called after every epoch.
    Labels must be class ids >= 0. Returns the mean loss of every epoch.
    """
    steps = len(batches)
    opt = build_optimizer(optimizer, model, lr=lr, weight_decay=weight_decay, momentum=momentum)
    schedule = cosine_schedule(opt, epochs * steps, round(warmup_epochs * steps))
    losses = []
    model.train()
    for epoch in range(epochs):
        total, seen = torch.zeros((), device=device), 0
        for batch in batches:
            labels = batch["label"].to(device, non_blocking=True)
            loss = F.cross_entropy(model(batch[clip_key].to(device, non_blocking=True).float()), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.detach()
            seen += 1
        losses.append(total.item() / max(seen, 1))  # one sync per epoch, not per step
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return losses
