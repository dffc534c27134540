"""Drop-in iterators: a DALI pipeline per method, yielding the batch contract.

    from motionssl.pipelines import make_iterator
    loader = make_iterator("moquad", "data/ucf101", batch_size=64, device="gpu", split="train_split1")
    for batch in loader:            # dict of torch tensors, all on the pipeline's device
        anchor = batch["anchor"]    # (B, C, T, H, W) float16 on the GPU, float32 on CPU

Every batch holds the method's outputs (clips, and per-sample values such as speeds),
``label`` (B,) int64 (−1 when unlabelled) and ``index`` (B,) int64 into the video index,
every tensor on the pipeline's device (:mod:`.contract` states and checks it).
``len(loader)`` is the number of batches per epoch; ``state_dict()`` /
``load_state_dict()`` resume mid-epoch on exactly the next batch: all randomness is a
function of (seed, epoch, video), so the state is the epoch and the batch number and
resuming rebuilds the pipeline there.
"""
from __future__ import annotations

import gc
import inspect
import logging
from typing import Any, Dict, Optional, Union

from . import config as configs
from .decoders import choose_decoder
from .index import VideoIndex, load_index
from .pipeline import build_pipeline, output_names, worker_codec_threads
from .planners import PIPELINES, PipelineSpec, pipeline_spec  # noqa: F401  (the registry, re-exported)
from .sources import WindowSource
from .workers import signals_ignored

log = logging.getLogger(__name__)


def build_config(name: Union[str, PipelineSpec], options: Any = None):
    """The config dataclass of pipeline ``name`` from a dict of its fields (or the dataclass itself)."""
    spec = pipeline_spec(name)
    return configs.build(spec.config, options, spec.name)


class VideoIterator:
    """Iterates one shard of a dataset through a method's DALI pipeline (see module doc)."""

    def __init__(self, name: Union[str, PipelineSpec], index: VideoIndex, batch_size: int, *, device: str = "cpu",
                 seed: int = 0,
                 shard_id: int = 0, num_shards: int = 1, config: Any = None, decoder: Optional[str] = None,
                 num_workers: int = 2, num_threads: Optional[int] = None, short_videos: str = "pad",
                 bad_files: str = "raise", last_batch: str = "drop", prefetch: int = 2, device_id: int = 0):
        self.spec = pipeline_spec(name)
        self.name = self.spec.name
        self.config = build_config(self.spec, config)
        self.planner = self.spec.planner(self.config)
        self.decoder, index = choose_decoder(index, decoder, device, device_id=device_id)
        self.index = index.apply_window(self.planner.window, short_videos)
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.shard_id, self.num_shards = shard_id, num_shards
        self.num_workers, self.num_threads, self.prefetch = num_workers, num_threads, prefetch
        self.bad_files, self.last_batch, self.device_id = bad_files, last_batch, device_id
        self.epoch, self.iteration = 0, 0
        self.output_names = output_names(self.planner)
        self._dali = None
        self.source = self.make_source()  # validates sizes now, before any worker starts

    def make_source(self, epoch: int = 0, iteration: int = 0, decoder: Optional[str] = None) -> WindowSource:
        """The window source of this iterator's shard, starting at ``(epoch, iteration)``.

        ``decoder="pyav"`` gives the same samples decoded on the CPU (the reference loader).
        """
        decoder = decoder or self.decoder
        return WindowSource(self.index, self.planner, self.batch_size, seed=self.seed, shard_id=self.shard_id,
                            num_shards=self.num_shards, decoder=decoder, shuffle=True, last_batch=self.last_batch,
                            start_epoch=epoch,
                            start_iteration=iteration, bad_files=self.bad_files,
                            codec_threads=worker_codec_threads(self.num_workers))

    def _build(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if self.iteration >= len(self.source):  # stopped right after an epoch's last batch
            self.epoch, self.iteration = self.epoch + 1, 0
        self.source = self.make_source(self.epoch, self.iteration)
        pipeline = build_pipeline(self.source, self.planner, device=self.device, num_workers=self.num_workers,
                                  num_threads=self.num_threads, prefetch=self.prefetch, device_id=self.device_id)
        try:  # building starts the decoding workers (deaf to the terminal's signals) and runs the first batches
            with signals_ignored():
                self._dali = DALIGenericIterator([pipeline], list(self.output_names), auto_reset=True)
        except Exception as exc:
            self.source.reraise(exc, self.epoch, self.iteration, self.prefetch)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self):
        if self._dali is None:
            self._build()
        while True:
            try:
                outputs = next(self._dali)
            except StopIteration:
                self.epoch, self.iteration = self.epoch + 1, 0
                return
            except Exception as exc:
                self._dali = None  # a failed pipeline cannot go on; iterating again rebuilds it
                self.source.reraise(exc, self.epoch, self.iteration, self.prefetch)
            self.iteration += 1
            yield outputs[0]

    def seek(self, epoch: int, iteration: int = 0) -> None:
        """Make the next batch be batch ``iteration`` of ``epoch`` (rebuilds the pipeline if needed)."""
        if (epoch, iteration) != (self.epoch, self.iteration):
            self.epoch, self.iteration = int(epoch), int(iteration)
            self._dali = None

    def close(self) -> None:
        """Release the pipeline and its worker processes; iterating again rebuilds them."""
        if self._dali is None:
            return
        self._dali = None
        gc.collect()  # DALI stops a pipeline's workers when the pipeline object is freed

    def state_dict(self) -> Dict[str, Any]:
        """Where the next batch comes from, and what must match to resume there."""
        return {"name": self.name, "epoch": self.epoch, "iteration": self.iteration, "seed": self.seed,
                "batch_size": self.batch_size, "shard_id": self.shard_id, "num_shards": self.num_shards,
                "num_videos": len(self.index)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for key in ("name", "seed", "batch_size", "num_shards", "num_videos"):
            mine = self.state_dict()[key]
            if state.get(key) != mine:
                raise ValueError(f"cannot resume: iterator state has {key}={state.get(key)!r}, this iterator {mine!r}")
        self.seek(state["epoch"], state["iteration"])


def make_iterator(name: Union[str, PipelineSpec], data: Union[str, VideoIndex], batch_size: int, *,
                  device: str = "cpu", seed: int = 0, shard_id: int = 0, num_shards: int = 1,
                  split: Optional[str] = None, config: Any = None, **options) -> VideoIterator:
    """The iterator of pipeline ``name`` over ``data`` (index, folder, prepared folder or list).

    ``name`` is a key of :data:`PIPELINES`, or a :class:`PipelineSpec` of one's own (a new
    method, a benchmark's decode-only planner) — used as it is, never registered.
    Batches of ``batch_size`` videos of shard ``shard_id`` of ``num_shards``; every random
    draw a pure function of ``(seed, epoch, video)``. Each batch is a dict of torch tensors
    on the pipeline's ``device``: the method's clips ``(B, C, T, H, W)`` (float16 on the
    GPU, float32 on the CPU), its per-sample values ``(B,)``, ``label`` and ``index``
    ``(B,)`` int64 (:mod:`.contract`).

    ``config`` is the method's config dataclass or a dict of its fields (nested dicts for
    ``clip``, ``clip.augment``, ``appearance``); ``options`` go to :class:`VideoIterator`
    (``decoder``, ``num_workers``, ``short_videos``, ``bad_files``, ``last_batch``...).
    """
    pipeline_spec(name)
    valid = set(inspect.signature(VideoIterator).parameters) - {"name", "index"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown iterator option(s) {unknown}; valid: {sorted(valid)}")
    index = data if isinstance(data, VideoIndex) else load_index(data, split=split)
    return VideoIterator(name, index, batch_size, device=device, seed=seed, shard_id=shard_id, num_shards=num_shards,
                         config=config, **options)
