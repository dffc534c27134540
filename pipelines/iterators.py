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
from typing import Any, Dict, Optional, Tuple, Union

from . import config as configs
from .decoders import DEVICES, choose_decoder
from .deprecation import renamed_value
from .errors import OptionError, ours
from .index import Data, VideoIndex, load_index
from .pipeline import build_pipeline, check_counts, output_names, worker_codec_threads
from .planners import PIPELINES, PipelineSpec, pipeline_spec  # noqa: F401  (the registry, re-exported)
from .planners.base import Planner
from .sources import WindowSource
from .workers import signals_ignored

log = logging.getLogger(__name__)


BAD_FILES = ("error", "skip")
LAST_BATCH = ("DROP", "FILL", "PARTIAL")  # DALI's LastBatchPolicy names


def dali_device(device: Any, device_id: int = 0) -> Tuple[str, int]:
    """``(DALI's device name, GPU number)`` for ``device`` in DALI's or PyTorch's spelling.

    ``"cpu"``; ``"gpu"`` or ``"cuda"`` (GPU ``device_id``); ``"cuda:N"`` or
    ``torch.device("cuda", N)`` (GPU ``N``, which must agree with a ``device_id`` given
    too); ``torch.device("cpu")``.
    """
    text = str(device) if type(device).__name__ == "device" else device  # a torch.device, without importing torch
    name, _, number = text.strip().lower().partition(":") if isinstance(text, str) else (None, "", "")
    name = {"cuda": "gpu"}.get(name, name)
    if name not in DEVICES or (number and (name != "gpu" or not number.isdigit())):
        raise configs.ConfigError(f"device={device!r}; choose 'cpu', 'gpu', 'cuda' or 'cuda:N' (a GPU number), or a "
                                  "torch.device")
    if number:
        if device_id not in (0, int(number)):
            raise configs.ConfigError(f"device={device!r} and device_id={device_id} name different GPUs; give one")
        device_id = int(number)
    return name, device_id


def last_batch_policy(policy: Any) -> str:
    """``"DROP"``, ``"FILL"`` or ``"PARTIAL"`` from DALI's names (any case) or its ``LastBatchPolicy``."""
    name = getattr(policy, "name", policy)  # LastBatchPolicy.FILL → "FILL", without importing DALI here
    name = renamed_value("make_iterator", "last_batch", name.lower() if isinstance(name, str) else name, "pad", "FILL")
    if not isinstance(name, str) or name.upper() not in LAST_BATCH:
        raise configs.ConfigError(f"last_batch={configs.shown(policy)}; choose one of {LAST_BATCH} (DALI's "
                                  "LastBatchPolicy names; any case)")
    return name.upper()


def outputs_kept(output_map: Any, names) -> Optional[Dict[str, str]]:
    """``{output: key in the batch}`` of an ``output_map`` (a list selects, a dict selects and renames)."""
    if output_map is None:
        return None
    if isinstance(output_map, dict):
        pairs = dict(output_map)
    elif isinstance(output_map, (list, tuple)):
        pairs = {k: k for k in output_map}
    else:
        pairs = None
    if not pairs:
        raise configs.ConfigError(f"output_map={configs.shown(output_map)}; give a list of output names or a dict "
                                  f"{{output: new name}} of the outputs {list(names)}")
    unknown = [k for k in pairs if k not in names]
    if unknown:
        raise configs.ConfigError(f"output_map names {unknown}, which this pipeline does not output; its outputs: "
                                  f"{list(names)}")
    if len(set(pairs.values())) != len(pairs):
        raise configs.ConfigError(f"output_map={configs.shown(output_map)} gives two outputs one name")
    return pairs


def build_config(name: Union[str, PipelineSpec], options: Any = None):
    """The config dataclass of pipeline ``name`` from a dict of its fields (or the dataclass itself).

    Parameters
    ----------
    name : str or PipelineSpec
        The pipeline.
    options : dict or config dataclass, optional
        Its fields (nested dicts for ``clip``, ``clip.augment``, ``appearance``). Default: its defaults.

    Raises
    ------
    ConfigError
        An unknown key or a value that cannot be used, named by its key path.
    """
    spec = pipeline_spec(name)
    return configs.build(spec.config, options, spec.name)


class DaliBatches:
    """The batches of one DALI pipeline over ``source`` and ``planner``, as dicts of torch tensors.

    The one place that wraps DALI's ``DALIGenericIterator``, for the training iterator
    (:class:`VideoIterator`) and the evaluation views (:class:`~.evaluation.EvalIterator`).
    Building starts the decoding workers (deaf to the terminal's signals) and runs the first
    batches; a data failure then or while a batch is awaited is raised as the source's
    one-line :class:`~.batch_errors.PipelineError` (:meth:`~.sources.WindowSource.reraise`).
    ``epoch`` and ``iteration`` say where ``source`` starts, for those messages.
    """

    def __init__(self, source: WindowSource, planner: Planner, *, device: str, device_id: int, num_workers: int,
                 num_threads: Optional[int], prefetch: int, epoch: int = 0, iteration: int = 0):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        self.source, self.prefetch = source, prefetch
        pipeline = build_pipeline(source, planner, device=device, num_workers=num_workers, num_threads=num_threads,
                                  prefetch=prefetch, device_id=device_id)
        try:
            with signals_ignored():
                self._dali = DALIGenericIterator([pipeline], list(output_names(planner)), auto_reset=True)
        except Exception as exc:
            source.reraise(exc, epoch, iteration, prefetch)

    def next(self, epoch: int, iteration: int) -> Dict[str, Any]:
        """Batch ``iteration`` of ``epoch``, the next DALI hands over; ``StopIteration`` after an epoch's last."""
        try:
            return next(self._dali)[0]
        except StopIteration:
            raise
        except Exception as exc:
            self.source.reraise(exc, epoch, iteration, self.prefetch)


class VideoIterator:
    """Iterates one shard of a dataset through a method's DALI pipeline (see module doc).

    Parameters
    ----------
    name : str or PipelineSpec
        The method: a key of :data:`PIPELINES` (``"moquad"``, ``"mcpnet"``, ``"simclr"``,
        ``"clip"``) or a :class:`PipelineSpec` of one's own, used as it is.
    index : VideoIndex
        The videos (:func:`make_iterator` takes a folder, list or glob instead).
    batch_size : int
        Videos per batch, on this process.
    device : {"cpu", "gpu", "cuda", "cuda:N"} or torch.device, default "cpu"
        Where the pipeline runs and every tensor of a batch lives; ``"cuda:N"`` and
        ``torch.device("cuda", N)`` choose GPU ``N``.
    seed : int, default 0
        Every random draw (order, window starts, crops, colour, speeds) is a pure function
        of ``(seed, epoch, video)``: the same seed gives the same batches on any machine.
    shard_id, num_shards : int, default 0 and 1
        This process's shard (``torch.distributed``'s rank and world size); every shard
        has the same number of batches.
    config : dict or config dataclass, optional
        The method's config (train.py's ``pipeline_config``): nested dicts for ``clip``
        (``frames`` per clip, ``speeds`` as frame strides, ``augment`` with ``size``
        ``[H, W]`` in pixels...) and the method's own keys. Default ``None``: the method's
        defaults.
    decoder : {"pyav", "dali", "torchcodec"}, optional
        Default ``None``: DALI's decoder (NVDEC) on the GPU, PyAV on the CPU; a dataset the
        default cannot read falls back to PyAV with one logged line.
    num_workers : int, default 2
        Decoding worker processes (0: decode in this process, for debugging).
    num_threads : int, optional
        DALI threads. Default ``None``: 2 on CPU, 4 on GPU.
    short_videos : {"pad", "skip", "error"}, default "pad"
        A video shorter than the method's window: repeat its last frame, leave it out
        (logged), or raise naming it.
    bad_files : {"error", "skip"}, default "error"
        A video that cannot be decoded: raise :class:`VideoError` naming it, or leave it out
        with a logged warning and use the shard's next video.
    last_batch : {"DROP", "FILL", "PARTIAL"} or nvidia.dali.plugin.base_iterator.LastBatchPolicy, default "DROP"
        The incomplete last batch of an epoch, as DALI names the policies (any case). For a
        shard of 10 videos and ``batch_size=4``:

        =========  =========  ==========================================================
        policy     batches    the last batch
        =========  =========  ==========================================================
        DROP       4, 4       not yielded: 2 videos unseen (different ones each epoch)
        FILL       4, 4, 4    2 videos + 2 repeats of the shard's first videos (distinct)
        PARTIAL    4, 4, 2    the 2 remaining videos only
        =========  =========  ==========================================================
    prefetch : int, default 2
        Batches prepared ahead (per worker queue and DALI's).
    device_id : int, default 0
        The GPU, where ``device`` does not name one (``"gpu"``, ``"cuda"``).
    output_map : list of str or dict, optional
        The outputs a batch holds: a list selects them by name, a dict ``{output: key}``
        selects and renames (``{"view1": "x", "label": "y"}``). Default ``None``: every
        output under its own name (:mod:`.contract`).

    Raises
    ------
    ConfigError
        A config key or an option that cannot be used, named with its choices.
    OptionError
        A shard smaller than ``batch_size``, or short videos with ``short_videos="error"``.
    ProbeError
        ``device="gpu"`` where the GPU's decoder cannot be asked (no GPU, a driver error);
        ``decoder="pyav"`` decodes on the CPU instead.
    """

    @ours
    def __init__(self, name: Union[str, PipelineSpec], index: VideoIndex, batch_size: int, *, device: Any = "cpu",
                 seed: int = 0, shard_id: int = 0, num_shards: int = 1, config: Any = None,
                 decoder: Optional[str] = None, num_workers: int = 2, num_threads: Optional[int] = None,
                 short_videos: str = "pad", bad_files: str = "error", last_batch: Any = "DROP", prefetch: int = 2,
                 device_id: int = 0, output_map: Any = None):
        device, device_id = dali_device(device, device_id)
        check_counts(num_workers, num_threads, prefetch)
        bad_files = renamed_value("make_iterator", "bad_files", bad_files, "raise", "error")
        if bad_files not in BAD_FILES:
            raise configs.ConfigError(f"bad_files={configs.shown(bad_files)}; choose one of {BAD_FILES}")
        self.spec = pipeline_spec(name)
        self.name = self.spec.name
        self.config = build_config(self.spec, config)
        self.planner = self.spec.planner(self.config)
        self.last_batch = last_batch_policy(last_batch)
        self.output_map = outputs_kept(output_map, output_names(self.planner))
        self.decoder, index = choose_decoder(index, decoder, device, bad_files=bad_files, device_id=device_id)
        self.index = index.apply_window(self.planner.window, short_videos)
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.shard_id, self.num_shards = shard_id, num_shards
        self.num_workers, self.num_threads, self.prefetch = num_workers, num_threads, prefetch
        self.bad_files, self.device_id = bad_files, device_id
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
                            num_shards=self.num_shards, decoder=decoder, shuffle=True,
                            last_batch="drop" if self.last_batch == "DROP" else "pad",
                            start_epoch=epoch, start_iteration=iteration,
                            bad_files={"error": "raise", "skip": "skip"}[self.bad_files],
                            codec_threads=worker_codec_threads(self.num_workers))

    def _build(self):
        if self.iteration >= len(self.source):  # stopped right after an epoch's last batch
            self.epoch, self.iteration = self.epoch + 1, 0
        self.source = self.make_source(self.epoch, self.iteration)
        self._dali = DaliBatches(self.source, self.planner, device=self.device, device_id=self.device_id,
                                 num_workers=self.num_workers, num_threads=self.num_threads, prefetch=self.prefetch,
                                 epoch=self.epoch, iteration=self.iteration)

    def __len__(self) -> int:
        """Batches per epoch of this shard (the last-batch policy included)."""
        return len(self.source)

    def __iter__(self):
        """The batches from where the last pass stopped to the end of that epoch (module doc)."""
        if self._dali is None:
            self._build()
        rest = self.source.shard_size % self.batch_size if self.last_batch == "PARTIAL" else 0
        while True:
            try:
                batch = self._dali.next(self.epoch, self.iteration)
            except StopIteration:
                self.epoch, self.iteration = self.epoch + 1, 0
                return
            except Exception:
                self._dali = None  # a failed pipeline cannot go on; iterating again rebuilds it
                raise
            self.iteration += 1
            if rest and self.iteration == len(self):  # PARTIAL: the filled-in repeats cut off
                batch = {k: v[:rest] for k, v in batch.items()}
            yield batch if self.output_map is None else {new: batch[old] for old, new in self.output_map.items()}

    def reset(self) -> None:
        """Skip the rest of the current epoch: the next batch is the first of the next epoch.

        After an epoch's last batch nothing is skipped (iterating again starts the next
        epoch by itself, as ``DALIGenericIterator(auto_reset=True)`` does).
        """
        if self.iteration:
            self.seek(self.epoch + 1, 0)

    def seek(self, epoch: int, iteration: int = 0) -> None:
        """Make the next batch be batch ``iteration`` of ``epoch`` (rebuilds the pipeline if needed).

        Parameters
        ----------
        epoch : int
            The epoch, from 0.
        iteration : int, default 0
            The batch within it, from 0.
        """
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
        """Where the next batch comes from, and what must match to resume there.

        Returns
        -------
        dict
            ``epoch`` and ``iteration`` (the next batch), and ``name``, ``seed``,
            ``batch_size``, ``shard_id``, ``num_shards``, ``num_videos`` to check on resume:
            plain ints and strings, to save with the model's checkpoint.
        """
        return {"name": self.name, "epoch": self.epoch, "iteration": self.iteration, "seed": self.seed,
                "batch_size": self.batch_size, "shard_id": self.shard_id, "num_shards": self.num_shards,
                "num_videos": len(self.index)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Make the next batch the one ``state`` (:meth:`state_dict`) says, exactly.

        Parameters
        ----------
        state : dict
            A :meth:`state_dict` of an iterator over the same videos, method, seed, batch
            size and number of shards.

        Raises
        ------
        OptionError
            ``state`` is of another iterator (the differing key named).
        """
        for key in ("name", "seed", "batch_size", "num_shards", "num_videos"):
            mine = self.state_dict()[key]
            if state.get(key) != mine:
                raise OptionError(f"cannot resume: iterator state has {key}={state.get(key)!r}, this iterator {mine!r}")
        self.seek(state["epoch"], state["iteration"])


@ours
def make_iterator(name: Union[str, PipelineSpec], data: Union[Data, VideoIndex], batch_size: int, *,
                  device: Any = "cpu", seed: int = 0, shard_id: int = 0, num_shards: int = 1,
                  split: Optional[str] = None, config: Any = None, decoder: Optional[str] = None, num_workers: int = 2,
                  num_threads: Optional[int] = None, short_videos: str = "pad", bad_files: str = "error",
                  last_batch: Any = "DROP", prefetch: int = 2, device_id: int = 0, output_map: Any = None,
                  **unknown) -> VideoIterator:
    """The training iterator of method ``name`` over ``data``: a drop-in for a video ``DataLoader``.

    Each batch is a dict of torch tensors on ``device``: the method's clips
    ``(B, C, T, H, W)`` (float16 on the GPU, float32 on the CPU), its per-sample values
    ``(B,)``, ``label`` ``(B,)`` int64 (``-1``: unlabelled) and ``index`` ``(B,)`` int64
    (:mod:`.contract`). The keywords are train.py's config keys: ``config`` is its
    ``pipeline_config``, the options from ``decoder`` on its ``loader`` section.

    Parameters
    ----------
    name, batch_size, device, seed, shard_id, num_shards, config : as :class:`VideoIterator` takes them
        The method, videos per batch on this process, the device, the seed of every draw, the shard.
    data : str, os.PathLike, list/tuple of str, or VideoIndex
        The videos: a folder of class sub-folders, a folder of videos without classes
        (unlabelled), a prepared dataset folder with ``split``, a list file of
        ``path [label [num_frames]]`` lines, a glob pattern (``"clips/**/*.mp4"``), a list
        or tuple of paths (:func:`load_index`), or an index already loaded.
    split : str, optional
        The split of a prepared dataset folder (``"train_split1"``). Default ``None``.
    bad_files : {"error", "skip"}, default "error"
        A video that cannot be read, when ``data`` is loaded or while decoding: raise
        :class:`VideoError` naming it, or leave it out with a logged warning.
    decoder, num_workers, num_threads, short_videos, last_batch, prefetch, device_id, output_map : see VideoIterator
        The loader's options, with :class:`VideoIterator`'s meanings and defaults.
    **unknown
        Refused: an unknown keyword raises :class:`OptionError` listing the valid ones.

    Returns
    -------
    VideoIterator
        ``len()`` batches per epoch; ``state_dict()`` / ``load_state_dict()`` resume on the
        exact next batch; ``close()`` stops the decoding workers.

    Raises
    ------
    OptionError, ConfigError
        An unknown keyword, a config key or an option value that cannot be used.
    DataError, DataNotFoundError, VideoError
        ``data`` that cannot be loaded (:func:`load_index`).
    ProbeError
        ``device="gpu"`` where the GPU's decoder cannot be asked.
    """
    if unknown:
        valid = sorted(set(inspect.signature(make_iterator).parameters) - {"unknown"})
        raise OptionError(f"unknown iterator option(s) {sorted(unknown)}; valid: {valid}")
    pipeline_spec(name)
    bad_files = renamed_value("make_iterator", "bad_files", bad_files, "raise", "error")
    if not isinstance(data, VideoIndex):
        data = load_index(data, split=split, bad_files=bad_files)
    return VideoIterator(name, data, batch_size, device=device, seed=seed, shard_id=shard_id, num_shards=num_shards,
                         config=config, decoder=decoder, num_workers=num_workers, num_threads=num_threads,
                         short_videos=short_videos, bad_files=bad_files, last_batch=last_batch, prefetch=prefetch,
                         device_id=device_id, output_map=output_map)
