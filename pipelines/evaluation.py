"""Deterministic evaluation views: ``num_clips`` clips × ``num_crops`` crops of every video.

The protocol of both papers (MoQuad §4.1, MCPNet §4.1, after Feichtenhofer et al.): every
video is seen through clips at uniformly spaced starts, each cut into one centre crop or
three spatial crops, and whatever is computed from the views (features for retrieval,
softmax probabilities for classification) is averaged per video.

    loader = make_eval_iterator("data/ucf101", 16, split="test_split1", num_clips=10, num_crops=3,
                                config={"clip": {"frames": 16, "speeds": [1], "augment": {"size": [112, 112]}}})
    for batch in loader:             # dict of torch tensors, one row per view, all on the pipeline's device
        batch["clips"]               # (B·num_crops, C, T, H, W), normalised
        batch["index"], batch["label"], batch["clip_id"]

The views take the names ``make_iterator`` and ``train.py`` take: ``data``, ``batch_size``
and a ``config`` whose ``clip`` gives ``frames``, the frame stride (the first of
``speeds``) and the ``augment`` ``size``, ``mean``, ``std`` and ``antialias`` — the very
config a training iterator holds (``loader.config``) or train.py's ``pipeline_config``;
the random parts of the augmentation (crops, flips, colour) do not apply to views.

**Clip starts.** A clip of ``T`` frames at ``stride`` s spans ``L = (T−1)·s + 1`` frames. In a
video of ``n`` frames, clip ``k`` of ``K`` starts at

    start_k = ⌊k · max(n − L, 0) / (K − 1)⌋    (K > 1; the first clip starts at frame 0,
                                                the last one ends on the last frame)
    start_0 = ⌊max(n − L, 0) / 2⌋              (K = 1: the centre clip)

in integer arithmetic, so starts are exact and identical on every machine. A video shorter
than ``L`` gives ``K`` clips at start 0, padded by repeating the last frame, as the
training source pads (``ops.cut.draw_clip_indices``).

**Crops.** The largest crop with the output's aspect ratio (``ops.crop.center_crop``); with
three crops it also slides to both ends of the axis that has room left — left / centre /
right on a landscape frame, top / centre / bottom on a portrait one (three equal crops when
the frame already has the output's aspect). Each crop is resized to ``size`` and
normalised with the training mean/std to ``(C, T, H, W)``.

**Samples and padding.** One sample of the :class:`~.sources.WindowSource` is one
``(video, clip start)`` pair, decoded once; its crops are cut from the same window. The
source pads the last batch (and shards of unequal length) by repeating samples, so a
consumer must drop repeated ``(index, clip_id)`` pairs — ``models.evaluation.average_views``
does. ``clip_id = k · num_crops + c`` numbers the views of a video (clip ``k``, crop ``c``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from . import config as configs
from .decoders import choose_decoder
from .deprecation import renamed
from .errors import ours
from .index import Data, VideoIndex, load_index
from .iterators import DaliBatches, dali_device
from .ops import crop, cut, normalise
from .ops.config import ClipConfig
from .pipeline import check_counts, output_names, worker_codec_threads
from .planners.base import Planner
from .reference_loader import reference_batch as assemble_reference_batch
from .sources import WindowSource

NUM_CROPS = (1, 3)
# The flat keywords the views took before they took train.py's names: where each now lives in ``config``.
OLD_VIEW_KEYWORDS = {"frames": "config:clip.frames", "size": "config:clip.augment.size",
                     "mean": "config:clip.augment.mean", "std": "config:clip.augment.std",
                     "stride": "config:clip.speeds", "antialias": "config:clip.augment.antialias"}
OLD_VIEW_VALUES = {"stride": lambda stride: [stride], "size": list, "mean": list, "std": list}


def view_clip(config: Any = None) -> ClipConfig:
    """The :class:`~.ops.config.ClipConfig` the views are cut by, from any ``config`` a training iterator takes.

    A :class:`ClipConfig`; a method's config dataclass (its ``clip``); a dict of one
    (train.py's ``pipeline_config``: its ``clip`` key, other keys ignored); ``None``: the
    defaults at one speed (16 frames at stride 1, 112×112, Kinetics' normalisation).
    """
    if isinstance(config, ClipConfig):
        return config
    if isinstance(getattr(config, "clip", None), ClipConfig):
        return config.clip
    if config is not None and not isinstance(config, dict):
        raise configs.ConfigError(f"config must be a dict with a 'clip' key or a method's config dataclass, got "
                                  f"{configs.shown(config)}")
    clip = (config or {}).get("clip", {})
    return configs.build(ClipConfig, {"speeds": [1], **clip} if isinstance(clip, dict) else clip, "config.clip")


def clip_starts(num_frames: int, span: int, num_clips: int) -> np.ndarray:
    """``(num_clips,)`` int64 first frames of uniformly spaced clips of ``span`` frames (module doc)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    room = max(int(num_frames) - int(span), 0)
    if num_clips == 1:
        return np.array([room // 2], dtype=np.int64)
    return (np.arange(num_clips, dtype=np.int64) * room) // (num_clips - 1)


def eval_samples(num_frames: Sequence[int], span: int, num_clips: int) -> np.ndarray:
    """``(V·num_clips, 2)`` rows ``(video, start)``, video-major: row ``v·num_clips + k`` is clip ``k`` of ``v``."""
    rows = [(v, s) for v, n in enumerate(num_frames) for s in clip_starts(n, span, num_clips)]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def spatial_crops(frame_hw: Sequence[int], size: Sequence[int], num_crops: int) -> np.ndarray:
    """``(num_crops, 4)`` float32 ROIs ``[y0, x0, y1, x1]``: centre, or start / centre / end (module doc)."""
    if num_crops not in NUM_CROPS:
        raise ValueError(f"num_crops={num_crops}; choose one of {NUM_CROPS}")
    centre = crop.center_crop(frame_hw, size)
    if num_crops == 1:
        return centre[None]
    y0, x0, y1, x1 = (float(v) for v in centre)
    # The centred crop leaves x0 (or y0) on each side; slide it to 0 and to twice that.
    if x0 >= y0:
        rois = [[y0, 0.0, y1, x1 - x0], [y0, x0, y1, x1], [y0, 2 * x0, y1, x1 + x0]]
    else:
        rois = [[0.0, x0, y1 - y0, x1], [y0, x0, y1, x1], [2 * y0, x0, y1 + y0, x1]]
    return np.asarray(rois, dtype=np.float32)


class EvalPlanner(Planner):
    """One clip from the start of the window, cut into ``num_crops`` crops; nothing is random.

    The window is exactly one clip span, so the sample's start (given by the source) is the
    clip's start; ``idx`` clamps past the video's real frames (padding, module doc).
    """

    def __init__(self, frames: int, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 num_crops: int = 1, stride: int = 1, antialias: bool = False):
        if frames < 1 or stride < 1:
            raise ValueError(f"need frames >= 1 and stride >= 1, got frames={frames} stride={stride}")
        if num_crops not in NUM_CROPS:
            raise ValueError(f"num_crops={num_crops}; choose one of {NUM_CROPS}")
        self.frames, self.stride, self.num_crops = int(frames), int(stride), int(num_crops)
        self.size = tuple(int(v) for v in size)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.antialias = antialias
        self.window = cut.clip_span(self.frames, self.stride)
        self.keys = ("idx",) + tuple(f"roi{c}" for c in range(self.num_crops))
        self.outputs = tuple(f"crop{c}" for c in range(self.num_crops))

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        params = {"idx": np.minimum(self.stride * np.arange(self.frames), valid - 1).astype(np.int32)}
        for c, roi in enumerate(spatial_crops(frame_hw, self.size, self.num_crops)):
            params[f"roi{c}"] = roi
        return params

    def graph(self, window, p, dtype):
        """DALI nodes: cut the clip once → per crop: crop/resize → normalise; each ``(C, T, H, W)``."""
        clip = cut.cut(window, p["idx"])
        return {f"crop{c}": normalise.normalize(crop.crop_resize(clip, p[f"roi{c}"], self.size, self.antialias),
                                                self.mean, self.std, dtype)
                for c in range(self.num_crops)}

    def reference(self, windows, params, slot):
        """NumPy twin of :meth:`graph` (no antialiasing, like :func:`.ops.crop.crop_resize_reference`)."""
        p = params[slot]
        clip = cut.cut_reference(windows[slot], p["idx"])
        return {f"crop{c}": normalise.normalize_reference(crop.crop_resize_reference(clip, p[f"roi{c}"], self.size),
                                                          self.mean, self.std)
                for c in range(self.num_crops)}


class EvalIterator:
    """One pass over the evaluation views of one shard; every pass yields the same batches.

    Each DALI batch holds ``batch_size`` (video, clip) samples; a yielded batch holds their
    ``num_crops`` crops each, sample-major: ``clips`` (B·num_crops, C, T, H, W) — float32 on
    CPU, float16 on GPU — and ``index``, ``label``, ``clip_id`` (B·num_crops,) int64, every
    tensor on the pipeline's device.

    Parameters
    ----------
    index : VideoIndex
        The videos (:func:`make_eval_iterator` takes a folder, list or glob instead).
    batch_size : int, default 16
        (video, clip) samples per batch, so ``batch_size · num_crops`` views; a shard
        smaller than this gets smaller batches.
    config : dict, ClipConfig or a method's config, optional
        What the clips are: ``clip.frames`` (frames per clip), ``clip.speeds[0]`` (the frame
        stride), ``clip.augment.size`` ``[H, W]`` in pixels, ``clip.augment.mean`` / ``std``
        (per channel, pixel values in [0, 1]) and ``clip.augment.antialias``; the names of
        :func:`make_iterator`'s config, which can be passed as it is. Default ``None``:
        16 frames at stride 1, 112×112, Kinetics' mean and std.
    num_clips : int, default 10
        Clips per video, at uniformly spaced starts (module doc).
    num_crops : {1, 3}, default 1
        Spatial crops per clip: the centre, or both ends and the centre of the longer axis.
    device : {"cpu", "gpu", "cuda", "cuda:N"} or torch.device, default "cpu"
        Where the pipeline runs and the batches live.
    shard_id, num_shards : int, default 0 and 1
        This process's shard of the views (``torch.distributed``'s rank and world size).
    decoder : {"pyav", "dali", "torchcodec"}, optional
        Default ``None``: DALI's decoder on the GPU, PyAV on the CPU.
    num_workers : int, default 2
        Decoding worker processes (0: decode in this process).
    num_threads : int, optional
        DALI threads. Default ``None``: 2 on CPU, 4 on GPU.
    device_id : int, default 0
        The GPU, where ``device`` does not name one.
    prefetch : int, default 2
        Batches prepared ahead.

    Raises
    ------
    ConfigError
        A key of ``config`` or an option that cannot be used, named with its choices.
    VideoError
        A video that cannot be read (evaluation keeps every video in place).
    """

    @ours
    @renamed(OLD_VIEW_VALUES, **OLD_VIEW_KEYWORDS)
    def __init__(self, index: VideoIndex, batch_size: int = 16, *, config: Any = None, num_clips: int = 10,
                 num_crops: int = 1, device: Any = "cpu", shard_id: int = 0, num_shards: int = 1,
                 decoder: Optional[str] = None, num_workers: int = 2, num_threads: Optional[int] = None,
                 device_id: int = 0, prefetch: int = 2):
        device, device_id = dali_device(device, device_id)
        check_counts(num_workers, num_threads, prefetch)
        self.clip = view_clip(config)
        augment = self.clip.augment
        self.planner = EvalPlanner(self.clip.frames, augment.size, augment.mean, augment.std, num_crops,
                                   self.clip.speeds[0], augment.antialias)
        self.num_clips, self.num_crops = int(num_clips), int(num_crops)
        # bad_files="error": evaluation keeps every video in place
        self.decoder, index = choose_decoder(index, decoder, device, bad_files="error", device_id=device_id)
        self.index = index.apply_window(self.planner.window, "pad")  # evaluation never skips a video
        self.samples = eval_samples(self.index.num_frames, self.planner.window, self.num_clips)
        self.device, self.device_id = device, device_id
        self.num_workers, self.num_threads, self.prefetch = num_workers, num_threads, prefetch
        # A shard smaller than the batch (tiny test sets, many ranks) just gets smaller batches.
        shard_size = -(-len(self.samples) // num_shards)
        self.batch_size = min(batch_size, shard_size)
        self.shard_id, self.num_shards = shard_id, num_shards
        self.source = self._source(self.decoder)
        self.output_names = output_names(self.planner)

    def _source(self, decoder: str) -> WindowSource:
        return WindowSource(self.index, self.planner, self.batch_size, shard_id=self.shard_id,
                            num_shards=self.num_shards, decoder=decoder, shuffle=False, last_batch="pad",
                            samples=self.samples, bad_files="raise",
                            codec_threads=worker_codec_threads(self.num_workers))

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        batches = DaliBatches(self.source, self.planner, device=self.device, device_id=self.device_id,
                              num_workers=self.num_workers, num_threads=self.num_threads, prefetch=self.prefetch)
        for iteration in range(len(self)):
            out = batches.next(0, iteration)
            yield self.collate([out[k] for k in self.planner.outputs], out["label"], out["index"], iteration)

    def collate(self, crops: List[torch.Tensor], label: torch.Tensor, index: torch.Tensor,
                iteration: int) -> Dict[str, torch.Tensor]:
        """Per-crop ``(B, C, T, H, W)`` tensors of batch ``iteration`` → the batch of views (class doc)."""
        # Sample ids are rows of `samples` (video-major), so a sample's clip number is its id mod num_clips.
        device = crops[0].device
        clip = torch.from_numpy(self.source.batch_ids(0, iteration) % self.num_clips).to(device)
        crop = torch.arange(self.num_crops, device=device)
        return {"clips": torch.stack(crops, dim=1).flatten(0, 1),
                "index": index.repeat_interleave(self.num_crops),
                "label": label.repeat_interleave(self.num_crops),
                "clip_id": (clip[:, None] * self.num_crops + crop).flatten()}


def reference_batch(iterator: EvalIterator, iteration: int) -> Dict[str, torch.Tensor]:
    """Batch ``iteration`` of ``iterator`` built with PyAV and the planner's NumPy twin
    (:meth:`~.planners.base.Planner.reference`, the parity oracle), on the CPU."""
    source = iterator.source if iterator.decoder == "pyav" else iterator._source("pyav")
    batch = assemble_reference_batch(source, iterator.planner, 0, iteration)
    return iterator.collate([batch[name] for name in iterator.planner.outputs], batch["label"], batch["index"],
                            iteration)


@ours
@renamed(OLD_VIEW_VALUES, index="data", **OLD_VIEW_KEYWORDS)
def make_eval_iterator(data: Data, batch_size: int = 16, *, config: Any = None, num_clips: int = 10,
                       num_crops: int = 1, device: Any = "cpu", shard_id: int = 0, num_shards: int = 1,
                       split: Optional[str] = None, decoder: Optional[str] = None, num_workers: int = 2,
                       num_threads: Optional[int] = None, device_id: int = 0, prefetch: int = 2,
                       bad_files: str = "error") -> EvalIterator:
    """The deterministic evaluation views of ``data``: ``num_clips`` clips × ``num_crops`` crops per video.

    Each video is seen through ``num_clips`` clips at uniformly spaced starts, each cut into
    ``num_crops`` crops resized to ``clip.augment.size`` and normalised (module doc). The
    names are :func:`make_iterator`'s, so the training config can be passed as it is.
    MoQuad's linear evaluation: ``config={"clip": {"frames": 32, "speeds": [2]}}``.

    Parameters
    ----------
    data : str, os.PathLike, list/tuple of str, or VideoIndex
        The videos: a folder (class sub-folders, or videos without classes), a prepared
        dataset folder with ``split``, a list file, a glob pattern, a list of paths
        (:func:`load_index`), or an index already loaded.
    split : str, optional
        The split of a prepared dataset folder. Default ``None``.
    bad_files : {"error", "skip"}, default "error"
        A video that cannot be read when ``data`` is loaded: raise naming it, or leave it
        out with a logged warning. Once loaded, every video is evaluated or the pass raises.
    batch_size, config, num_clips, num_crops : as :class:`EvalIterator` takes them
        (video, clip) samples per batch, what a clip is, clips per video, crops per clip.
    device, shard_id, num_shards, decoder, num_workers, num_threads, device_id, prefetch : see EvalIterator
        Where the views are made and the loader's options, with :class:`EvalIterator`'s defaults.

    Returns
    -------
    EvalIterator
        Batches of ``clips`` ``(B·num_crops, C, T, H, W)`` (float32 on CPU, float16 on GPU)
        and ``index``, ``label``, ``clip_id`` ``(B·num_crops,)`` int64, on ``device``.

    Raises
    ------
    ConfigError
        A key of ``config`` or an option that cannot be used.
    DataError, DataNotFoundError, VideoError
        ``data`` that cannot be loaded (:func:`load_index`).
    """
    if not isinstance(data, VideoIndex):
        data = load_index(data, split=split, bad_files=bad_files)
    return EvalIterator(data, batch_size, config=config, num_clips=num_clips, num_crops=num_crops, device=device,
                        shard_id=shard_id, num_shards=num_shards, decoder=decoder, num_workers=num_workers,
                        num_threads=num_threads, device_id=device_id, prefetch=prefetch)
