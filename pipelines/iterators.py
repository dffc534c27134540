"""Drop-in iterators: a DALI pipeline per method, yielding the batch contract (GUIDE §3).

    from pipelines import make_iterator
    loader = make_iterator("moquad", "data/ucf101", batch_size=64, device="gpu", split="train_split1")
    for batch in loader:            # dict of torch tensors
        anchor = batch["anchor"]    # (B, C, T, H, W) float16 on the GPU, float32 on CPU

Every batch holds the method's clips (``PIPELINES[name].outputs``), ``label`` (B,) int64
(−1 when unlabelled) and ``index`` (B,) int64 into the video index. ``len(loader)`` is the
number of batches per epoch; ``state_dict()`` / ``load_state_dict()`` resume mid-epoch on
exactly the next batch: all randomness is a function of (seed, epoch, video), so the
state is the epoch and the batch number and resuming rebuilds the pipeline there.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Type, Union

from nvidia.dali import pipeline_def

from .index import VideoIndex, load_index
from .mcpnet import MCPNetConfig, MCPNetPlanner
from .moquad import MoQuadConfig, MoQuadPlanner
from .simclr import SimCLRConfig, SimCLRPlanner
from .sources import DTYPES, WindowSource, allowed_codecs, start_method, windows, worker_codec_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSpec:
    config: Type
    planner: Type
    doc: str


PIPELINES: Dict[str, PipelineSpec] = {
    "moquad": PipelineSpec(MoQuadConfig, MoQuadPlanner, "MoQuad quadruples (anchor, RAD positive, intra negatives)"),
    "mcpnet": PipelineSpec(MCPNetConfig, MCPNetPlanner, "MCPNet RGB clip and long-range residual clips"),
    "simclr": PipelineSpec(SimCLRConfig, SimCLRPlanner, "SimCLR/CVRL baseline: two augmented clips"),
}


def pipeline_spec(name: str) -> PipelineSpec:
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {sorted(PIPELINES)}")
    return PIPELINES[name]


def build_config(cls, options: Optional[Dict[str, Any]], where: str):
    """A (nested) config dataclass from a plain dict; unknown keys name the valid ones."""
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"unknown {where} option(s) {unknown}; valid: {sorted(fields)}")
    kwargs = {}
    for key, value in options.items():
        default = fields[key].default_factory() if fields[key].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            merged = {**dataclasses.asdict(default), **value} if value else dataclasses.asdict(default)
            kwargs[key] = build_config(type(default), merged, f"{where}.{key}")
        else:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def default_decoder(device: str) -> str:
    """NVDEC through DALI on GPU; PyAV workers on CPU (2.7× DALI's CPU decoder, any codec; GUIDE §4.11)."""
    return "dali" if device == "gpu" else "pyav"


class VideoIterator:
    """Iterates one shard of a dataset through a method's DALI pipeline (see module doc)."""

    def __init__(self, name: str, index: VideoIndex, batch_size: int, device: str = "cpu", seed: int = 0,
                 shard_id: int = 0, num_shards: int = 1, config: Any = None, decoder: Optional[str] = None,
                 num_workers: int = 2, num_threads: int = 2, short_videos: str = "pad",
                 bad_files: str = "raise", last_batch: str = "drop", prefetch: int = 2, device_id: int = 0):
        self.name = name
        self.spec = pipeline_spec(name)
        self.config = config if isinstance(config, self.spec.config) else build_config(self.spec.config, config, name)
        self.planner = self.spec.planner(self.config)
        self.index = index.apply_window(self.planner.window, short_videos)
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.shard_id, self.num_shards = shard_id, num_shards
        self.decoder = decoder or default_decoder(device)
        self.num_workers, self.num_threads, self.prefetch = num_workers, num_threads, prefetch
        self.bad_files, self.last_batch, self.device_id = bad_files, last_batch, device_id
        self.epoch, self.iteration = 0, 0
        self.output_names = tuple(self.planner.outputs) + ("label", "index")
        self._dali = None
        self.source = self.make_source()  # validates sizes now, before any worker starts

    def make_source(self, epoch: int = 0, iteration: int = 0, decoder: Optional[str] = None) -> WindowSource:
        """The window source of this iterator's shard, starting at ``(epoch, iteration)``.

        ``decoder="pyav"`` gives the same samples decoded on the CPU (the reference loader).
        """
        decoder = decoder or self.decoder
        return WindowSource(self.index, self.planner, self.batch_size, self.seed, self.shard_id, self.num_shards,
                            decoder, shuffle=True, last_batch=self.last_batch, start_epoch=epoch,
                            start_iteration=iteration, bad_files=self.bad_files,
                            allowed_codecs=allowed_codecs(decoder, self.device),
                            codec_threads=worker_codec_threads(self.num_workers))

    def _build(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if self.iteration >= len(self.source):  # stopped right after an epoch's last batch
            self.epoch, self.iteration = self.epoch + 1, 0
        source = self.source = self.make_source(self.epoch, self.iteration)
        planner, device = self.planner, self.device

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads,
                      device_id=self.device_id if device == "gpu" else None,
                      py_num_workers=max(1, self.num_workers), py_start_method=start_method(device),
                      prefetch_queue_depth=self.prefetch)
        def pipe():
            nodes = windows(source, device, self.num_workers, self.prefetch)
            window = nodes.pop("window")
            out = planner.graph(window, nodes, DTYPES[device])
            return tuple(out[k] for k in planner.outputs) + (nodes["label"], nodes["index"])

        pipeline = pipe()
        self._dali = DALIGenericIterator([pipeline], list(self.output_names), auto_reset=True)

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
                files = sorted(set(self.source.describe_batch(self.epoch, self.iteration)))
                raise RuntimeError(f"{self.name} pipeline failed at epoch {self.epoch}, batch {self.iteration} "
                                   f"(one of these files, or one of the next batch): {files}\n{exc}") from exc
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


def make_iterator(name: str, data: Union[str, VideoIndex], batch_size: int, device: str = "cpu", seed: int = 0,
                  shard_id: int = 0, num_shards: int = 1, split: Optional[str] = None,
                  config: Any = None, **options) -> VideoIterator:
    """The iterator of pipeline ``name`` over ``data`` (index, folder, prepared folder or list).

    ``config`` is the method's config dataclass or a dict of its fields (nested dicts for
    ``clip``, ``clip.augment``, ``appearance``); ``options`` go to :class:`VideoIterator`
    (``decoder``, ``num_workers``, ``short_videos``, ``bad_files``, ``last_batch``...).
    """
    pipeline_spec(name)
    index = data if isinstance(data, VideoIndex) else load_index(data, split=split)
    valid = set(VideoIterator.__init__.__code__.co_varnames[1:VideoIterator.__init__.__code__.co_argcount])
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown iterator option(s) {unknown}; valid: {sorted(valid - {'name', 'index'})}")
    return VideoIterator(name, index, batch_size, device, seed, shard_id, num_shards, config, **options)
