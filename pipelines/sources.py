"""The window source: one decoded window of ``W`` consecutive frames per sample.

Of that window, a frame decoder hands the graph only the frames the clips read, when the
planner names their positions (:attr:`~.planners.base.Planner.window_keys`): every frame up to
the last one read is decoded, only those read are converted to RGB and shipped, and the
positions are renumbered (:meth:`WindowSource._decode`); the batch is the same.

An epoch is one window per video, at a new random start every epoch. The order of the
videos, the window starts and every random parameter of the sample (clip positions,
speeds, crops, colour, RAD weights) are a pure function of ``(seed, epoch, video)`` —
drawn in Python by the method's :class:`~.planners.base.Planner` and handed to the DALI graph
as per-sample inputs. That buys three things at once: the DALI graph and the NumPy
reference build identical samples from identical draws (exact parity tests); a run
resumes mid-epoch by rebuilding the pipeline at ``(epoch, batch)`` with nothing to restore
but two integers; and draws do not depend on the number of DALI threads, workers or
prefetch depth (docs/design.md, "Window sampling").

The source either decodes the window itself (``decoder="pyav"``: PyAV in DALI's worker
processes; ``decoder="torchcodec"``: torchcodec there, optional) or hands the file's
bytes and the window start to DALI's decoder (``decoder="dali"``); :mod:`.decoders`
chooses and checks the decoder, and :mod:`.decoders.facts` keeps what a worker learns
about each file.

Sharding (``shard_id``, ``num_shards``) splits each epoch's permutation into equal parts
so every rank sees the same number of batches; videos within a batch are always distinct
(:mod:`.sharding`). A batch that fails is told in one line (:mod:`.batch_errors`).
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from . import batch_errors
from .batch_errors import PipelineError
from .decoders import DECODERS, WindowBuffers, get_decoder, read_window
from .decoders.facts import FileFacts
from .index import VideoIndex
from .planners.base import Planner
from .sharding import EpochPlan
from .video_io import VideoError
from .workers import watch_parent

log = logging.getLogger(__name__)

__all__ = ["PipelineError", "WindowSource"]  # PipelineError lives in .batch_errors; imported from here too

BAD_FILE_RUNTIME = ("raise", "skip")


class WindowSource:
    """Per-sample callback for ``fn.external_source(parallel=True, batch=False)``.

    Picklable; holds no mutable state besides per-process caches, so DALI's worker
    processes compute every sample from ``SampleInfo`` alone. Which sample ids each batch
    holds is :attr:`plan`'s (:class:`~.sharding.EpochPlan`); the source reads each sample's
    window and draws its parameters (:meth:`sample`). A subclass may override :meth:`sample`
    and set :attr:`batches_per_epoch` (benchmarks/cost_split.py serves decoded samples so).

    Parameters
    ----------
    index : the videos (already filtered by the short-video policy).
    planner : the method's per-sample draws; ``planner.window`` frames are decoded.
    batch_size, seed, shard_id, num_shards : as their names say.
    decoder : a name of :data:`~.decoders.DECODERS`: a frame decoder (``"pyav"``,
        ``"torchcodec"``: the source returns decoded frames) or an in-graph one (``"dali"``:
        the source returns the file's bytes and the window start, and each video's
        rotation when some video of the index has one, for the graph to turn its frames upright).
    shuffle : permute the videos every epoch (training) or keep index order (evaluation).
    last_batch : ``"drop"`` the incomplete last batch, or ``"pad"`` it with the shard's
        first videos (every video seen; the repeats are distinct within the batch).
    samples : evaluation mode — explicit ``(video, window_start)`` pairs, in order.
    start_epoch, start_iteration : resume position (the first epoch starts at that batch).
    bad_files : ``"raise"`` a :class:`VideoError` naming the file, or ``"skip"`` it with a
        logged warning and use the next video of the shard instead.
    codec_threads : PyAV's codec threads per window (``read_window``'s ``threads``): 1
        when the worker processes already fill the cores, 0 lets the codec choose. The
        source checks every window for decoder errors, which decodes single-threaded
        (threaded decoding can deadlock against the error log), so today each worker
        decodes with one thread whatever this says; more workers use more cores.
        torchcodec has no error log to collect and takes this as ``num_ffmpeg_threads``.
    """

    def __init__(self, index: VideoIndex, planner: Planner, batch_size: int, *, seed: int = 0,
                 shard_id: int = 0, num_shards: int = 1, decoder: str = "pyav", shuffle: bool = True,
                 last_batch: str = "drop", samples: Optional[Sequence[Tuple[int, int]]] = None,
                 start_epoch: int = 0, start_iteration: int = 0, bad_files: str = "raise",
                 codec_threads: int = 0):
        get_decoder(decoder)  # an unknown name: a ValueError listing the registered ones
        self.samples = None if samples is None else np.asarray(samples, dtype=np.int64).reshape(-1, 2)
        self.plan = EpochPlan(len(index) if self.samples is None else len(self.samples), batch_size, seed=seed,
                              shard_id=shard_id, num_shards=num_shards, shuffle=shuffle, last_batch=last_batch)
        if bad_files not in BAD_FILE_RUNTIME:
            raise ValueError(f"bad_files={bad_files!r}; choose one of {BAD_FILE_RUNTIME}")
        if codec_threads < 0:
            raise ValueError(f"codec_threads must be >= 0, got {codec_threads}")
        # Where the callback ends an epoch: the plan's count, unless a subclass serves more.
        self.batches_per_epoch = self.plan.batches_per_epoch
        self.start_epoch, self.start_iteration = int(start_epoch), int(start_iteration)
        if self.start_iteration >= self.batches_per_epoch:
            raise ValueError(f"start_iteration={start_iteration} >= {self.batches_per_epoch} batches per epoch")
        self._keep_videos(index, decoder)
        self.planner = planner
        self.window = int(planner.window)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shard_id, self.num_shards = shard_id, num_shards
        self.decoder = decoder
        self.shuffle = shuffle
        self.last_batch = last_batch
        self.bad_files = bad_files
        self.codec_threads = int(codec_threads)
        self._facts = FileFacts()
        # Each window is decoded into a reused buffer (one pool per worker process): no fresh allocation
        # and no first-touch page faults per window. DALI holds a task's samples (up to a batch) until it
        # has copied them, while the worker decodes the next task: two batches' worth are kept at most.
        # Measured in the decoding workers (2 workers, 320x240 VP9, 16-frame windows, 2-core VM): 311 minor
        # faults and 22.9-23.9 ms CPU per window before, 137-146 and 21.4-21.5 ms with reused windows.
        # glibc's malloc tunables (M_MMAP_THRESHOLD 64 MiB, M_TRIM_THRESHOLD 128 MiB, M_TOP_PAD 16 MiB by
        # mallopt in each worker) took the old path to 135 faults but changed nothing once windows are
        # reused (136-137 faults, 21.7-23.1 ms; 61-frame windows: 142-154 faults, 59-62 ms against 148 and
        # 60-65 ms), so the workers keep glibc's defaults.
        self._buffers = WindowBuffers(keep=2 * batch_size + 2)
        self._owner = os.getpid()  # the process that iterates; its workers watch it

    def _keep_videos(self, index: VideoIndex, decoder: str) -> None:
        """What a sample needs of each video, as arrays: path, label, frame count, timestamps, frame size (0 x 0
        where the index has not read it: a frame decoder then decodes the whole window); rotation for an
        in-graph decoder."""
        self.rotations = None  # per video, for an in-graph decoder that must turn some frames upright
        if DECODERS[decoder].in_graph:  # DALI's decoder needs each frame size up front; the index probes headers once
            index = index.with_media()
            turns = np.array([m.rotation for m in index.media], dtype=np.float32)
            if turns.any():  # no turning step in the graph of a dataset without rotated videos
                self.rotations = turns
        self.frame_hw = np.array([(m.height, m.width) if m is not None else (0, 0) for m in index.media],
                                 dtype=np.int64).reshape(-1, 2)
        self.paths = list(index.paths)
        self.labels = np.asarray(index.labels, dtype=np.int64)
        self.num_frames = np.asarray(index.num_frames, dtype=np.int64)
        # (first pts, step, frames) per video where the index read evenly spaced timestamps, frames 0 where
        # not: a window then needs no demux of its file for them (a container open, 5.8 ms for a cold VP9 file).
        self.timing = np.array([m.timing if m is not None and m.timing else (0, 0, 0) for m in index.media],
                               dtype=np.int64).reshape(-1, 3)

    # --- what a sample is -------------------------------------------------------------
    @property
    def keys(self) -> Tuple[str, ...]:
        """Names of the outputs of :meth:`__call__`, in order."""
        head = ("encoded", "window_start") if DECODERS[self.decoder].in_graph else ("frames",)
        if self.rotations is not None:
            head += ("rotation",)
        return head + ("label", "index") + tuple(self.planner.keys)

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def shard_size(self) -> int:
        """Samples per shard and epoch (:attr:`.sharding.EpochPlan.shard_size`)."""
        return self.plan.shard_size

    def shard_order(self, epoch: int) -> np.ndarray:
        """Sample ids (videos, or rows of ``samples``) of this shard for ``epoch``, in order."""
        return self.plan.shard_order(epoch)

    def batch_ids(self, epoch: int, iteration: int) -> np.ndarray:
        """Sample ids of batch ``iteration`` of ``epoch`` (padding wraps to the shard's start)."""
        return self.plan.batch_ids(epoch, iteration)

    def describe_batch(self, epoch: int, iteration: int) -> List[str]:
        """File names of a batch — for error messages."""
        ids = self.plan.batch_ids(epoch, iteration)
        return [self.paths[self._video_of(i)] for i in ids]

    def reraise(self, exc: BaseException, epoch: int, iteration: int, ahead: int = 2):
        """Raise :meth:`explain`'s one-line :class:`PipelineError` for a data failure, else ``exc`` itself."""
        error = self.explain(exc, epoch, iteration, ahead)
        if error is None:
            raise exc
        raise error from exc

    def explain(self, exc: BaseException, epoch: int, iteration: int, ahead: int = 2) -> Optional[PipelineError]:
        """One line for a data failure that surfaced while batch ``iteration`` of ``epoch`` was awaited, with
        ``ahead`` batches decoded in advance; ``None`` for any other failure (:func:`.batch_errors.explain`)."""
        return batch_errors.explain(exc, epoch, iteration, paths=self.paths, describe_batch=self.describe_batch,
                                    batch_size=self.batch_size, batches_per_epoch=self.batches_per_epoch, ahead=ahead)

    def _video_of(self, sample_id: int) -> int:
        return int(sample_id) if self.samples is None else int(self.samples[sample_id, 0])

    # --- the callback -------------------------------------------------------------------
    def __call__(self, info):
        if os.getpid() != self._owner:  # in a decoding worker process
            watch_parent(self._owner)
        epoch = self.start_epoch + info.epoch_idx
        iteration = info.iteration + (self.start_iteration if info.epoch_idx == 0 else 0)
        if iteration >= self.batches_per_epoch:
            raise StopIteration
        return self.sample(epoch, iteration, info.idx_in_batch)

    def sample(self, epoch: int, iteration: int, slot: int) -> tuple:
        """Outputs (in :attr:`keys` order) of sample ``slot`` of batch ``iteration`` of ``epoch``."""
        plan = self.plan
        size = plan.shard_size
        pos = iteration * self.batch_size + slot
        order = plan.shard_order(epoch)
        for attempt in range(min(8, size)):
            sample_id = int(order[(pos + attempt * self.batch_size) % size])
            batch_rng = np.random.default_rng([self.seed, epoch, self.shard_id, iteration, 1])
            try:
                # The sample's draws depend on the video and epoch, not on the shard layout;
                # a padded repeat (pos past the shard) gets a fresh stream.
                return self._sample(sample_id, epoch, pos // size, slot, batch_rng)
            except VideoError as exc:
                if self.bad_files == "raise":
                    raise
                log.warning("skipping %s (%s); using another video of the shard in its place", exc.path, exc.reason)
        raise VideoError(self.paths[self._video_of(order[pos % size])],
                         "this and the following replacement videos all failed to decode",
                         "check the dataset with `motionssl-prepare`")

    def _decode(self, video: int, start: int, valid: int, rng, batch_rng, slot: int) -> Tuple[np.ndarray, dict]:
        """The sample's frames and draws (a frame decoder).

        When the planner names its window positions (:attr:`~.planners.base.Planner.window_keys`)
        and the index knows the frame size, the draws come first and only the frames they name
        are converted and handed over (:func:`read_window`'s ``keep``), their positions
        renumbered; the draws are those the whole window would have got (a clip's frame
        positions do not depend on the frame size, and a size the file contradicts draws again).
        """
        path, n = self.paths[video], int(self.num_frames[video])
        first, step, count = self.timing[video]
        stamps = first + step * np.arange(count) if count else self._facts.get(path)
        if len(stamps) < n:
            raise VideoError(path, f"holds {len(stamps)} frames but the index says {n}",
                             "the file changed or is truncated since indexing; re-encode it or rebuild the index")
        keys, hw = self.planner.window_keys or (), tuple(int(v) for v in self.frame_hw[video])
        keep, params, states = None, None, (rng.bit_generator.state, batch_rng.bit_generator.state)
        if keys and hw[0] > 0:
            params = self.planner.draw(rng, batch_rng, slot, self.batch_size, valid, hw)
            positions = {k: params[k] for k in keys}
            keep = self.planner.frames_read(params)
        frames = read_window(path, start, self.window, timestamps=stamps, decoder=self.decoder, out=self._buffers,
                             threads=self.codec_threads, facts=self._facts, keep=keep)
        if params is None or tuple(frames.shape[1:3]) != hw:
            rng.bit_generator.state, batch_rng.bit_generator.state = states
            params = self.planner.draw(rng, batch_rng, slot, self.batch_size, valid, tuple(frames.shape[1:3]))
            if keep is not None and not all(np.array_equal(params[k], positions[k]) for k in keys):
                raise RuntimeError(f"planner {type(self.planner).__name__} drew other window positions for "
                                   "another frame size; its window_keys must not depend on it")
        if keep is not None:
            for k in keys:
                params[k] = np.searchsorted(keep, params[k]).astype(params[k].dtype)
        return frames, params

    def _sample(self, sample_id: int, epoch: int, lap: int, slot: int, batch_rng) -> tuple:
        video = self._video_of(sample_id)
        path = self.paths[video]
        n = int(self.num_frames[video])
        rng = np.random.default_rng([self.seed, epoch, video, lap])
        if self.samples is None:
            start = int(rng.integers(0, max(n - self.window, 0) + 1))
        else:
            start = int(min(max(self.samples[sample_id, 1], 0), max(n - 1, 0)))
        valid = max(1, min(n - start, self.window))
        if DECODERS[self.decoder].in_graph:
            head = (np.fromfile(path, dtype=np.uint8), np.array(start, dtype=np.int32))
            if self.rotations is not None:
                head += (np.array(self.rotations[video], dtype=np.float32),)
            frame_hw = tuple(self.frame_hw[video])
            params = self.planner.draw(rng, batch_rng, slot, self.batch_size, valid, frame_hw)
        else:
            frames, params = self._decode(video, start, valid, rng, batch_rng, slot)
            head = (frames,)
        missing = set(self.planner.keys) - set(params)
        if missing:
            raise KeyError(f"planner {type(self.planner).__name__} did not draw {sorted(missing)}")
        tail = tuple(np.asarray(params[k]) for k in self.planner.keys)
        return head + (np.array(self.labels[video], dtype=np.int64), np.array(video, dtype=np.int64)) + tail
