"""Where a sample's time goes (``python -m benchmarks.throughput --profile``), each stage timed alone.

* ``decode_1thread`` / ``decode_read_window``: PyAV whole-window decode with one codec thread, and
  with :func:`pipelines.decoders.read_window` exactly as the pipeline's workers call it;
* ``draw``: the planner's per-sample parameter draws;
* ``graph_1thread`` / ``graph_nthreads``: the DALI graph (augmentation, RAD, residuals,
  normalisation) fed pre-decoded windows from memory, with 1 and ``--threads`` threads
  (wall time per sample); on the CPU that graph uses the fused operators
  (:mod:`pipelines.ops.fused`), and ``graph_1thread_unfused`` times the same graph built from
  DALI's own operators, the baseline of the fusion;
* ``peer_1thread``: the peer loader's clip building (:mod:`benchmarks.peer`: torchvision on
  uint8, then the batched blends and normalisation) on the same pre-decoded windows, one
  torch thread, as in its worker processes;
* ``handoff``: extra time per sample of ``DALIGenericIterator`` (outputs → torch tensors)
  over ``pipe.run()`` on the same graph.

The graph runs through the pipeline definition every loader uses
(:func:`pipelines.build_pipeline`), fed by a window source that serves samples decoded
once beforehand.
"""
from __future__ import annotations

import gc
import time
from typing import Callable, Dict, List

import numpy as np

from benchmarks.common import synchronizer
from benchmarks.decode_only import build_iterator
from motionssl.pipelines import build_pipeline
from motionssl.pipelines.decoders import WindowBuffers, read_window
from motionssl.pipelines.index import VideoIndex
from motionssl.pipelines.ops import fused as fused
from motionssl.pipelines.pipeline import output_names
from motionssl.pipelines.sources import WindowSource
from motionssl.pipelines.video_io import frame_timestamps


class CachedSource(WindowSource):
    """A PyAV window source that serves samples decoded beforehand, batch after batch, for ever."""

    def __init__(self, index: VideoIndex, planner, batch_size: int, samples: List[tuple], batches: int):
        super().__init__(index, planner, batch_size, decoder="pyav")
        self.cached, self.cached_batches = samples, batches
        self.batches_per_epoch = 10 ** 9  # never ends: the benchmark decides how many batches it runs

    def sample(self, epoch, iteration, slot):
        return self.cached[(iteration % self.cached_batches) * self.batch_size + slot]


_WINDOWS = WindowBuffers(keep=2)


def decode_window_one_thread(path: str, start: int, count: int, stamps: np.ndarray, keep=None) -> np.ndarray:
    """The ceiling's unit: :func:`read_window` with one codec thread (open, seek, decode, RGB), into a
    reused window as the decoding workers decode (a window still held is never overwritten); ``keep``:
    only those window positions converted and returned, as the workers do for a method's clips."""
    return read_window(path, start, count, timestamps=stamps, threads=1, out=_WINDOWS, keep=keep)


def per_sample(work: Callable[[], object], count: int, cpu: Dict[str, float] = None, key: str = "") -> float:
    """Wall seconds per sample of ``work``; its CPU seconds per sample go to ``cpu[key]`` when given.

    CPU time is the process's (this thread and DALI's), which on a shared virtual machine
    is steadier than wall time: it leaves out waiting for a core and stolen time.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    work()
    if cpu is not None:
        cpu[key] = (time.process_time() - start_cpu) / count
    return (time.perf_counter() - start) / count


def time_peer(planner, samples: List[tuple], keys, batch_size: int, cpu: Dict[str, float]) -> float:
    """Seconds per sample of the peer loader's clip building on decoded samples, one torch thread."""
    import torch

    from benchmarks.peer import build_sample, collate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker

    def build_all():
        for first in range(0, len(samples), batch_size):
            items = []
            for sample in samples[first:first + batch_size]:
                s = dict(zip(keys, sample))
                window = torch.from_numpy(s.pop("frames")).permute(0, 3, 1, 2)
                items.append({"label": s.pop("label"), "index": s.pop("index"), "params": s,
                              "pieces": build_sample(window, s, planner)})
            collate(items, planner)

    try:
        build_all()  # warm-up
        return per_sample(build_all, len(samples), cpu, "peer_1thread")
    finally:
        torch.set_num_threads(threads)


class GraphTimer:
    """The DALI graph of ``it``'s planner fed ``samples`` (decoded once) from memory, built and timed."""

    def __init__(self, args, it, samples: List[tuple], batches: int, cpu: Dict[str, float]):
        self.args, self.it, self.samples, self.batches, self.cpu = args, it, samples, batches, cpu
        self.sync = synchronizer(args.device)

    def graph(self, threads: int, fused_ops: bool = True):
        source = CachedSource(self.it.index, self.it.planner, self.args.batch_size, self.samples, self.batches)
        saved = fused.usable
        if not fused_ops:
            fused.usable = lambda window, antialias: False
        try:
            pipe = build_pipeline(source, self.it.planner, device=self.args.device, num_workers=0, num_threads=threads)
        finally:
            fused.usable = saved
        pipe.build()
        return pipe

    def _run(self, pipe) -> None:
        for _ in range(self.batches):
            pipe.run()
        self.sync()

    def per_sample(self, threads: int, fused_ops: bool = True, key: str = "") -> float:
        """Seconds per sample of ``pipe.run()``; its CPU seconds go to ``cpu[key]`` when ``key`` is given."""
        pipe = self.graph(threads, fused_ops)
        self._run(pipe)  # warm-up: DALI's buffers reach their high-water mark
        return per_sample(lambda: self._run(pipe), self.batches * self.args.batch_size, self.cpu if key else None,
                          key)

    def iterator_per_sample(self) -> float:
        """Seconds per sample of ``DALIGenericIterator`` over the graph with ``--threads`` threads."""
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        loader = DALIGenericIterator([self.graph(self.args.threads)], list(output_names(self.it.planner)), size=-1)

        def iterate():
            for _ in range(self.batches):
                next(loader)
            self.sync()

        iterate()  # warm-up
        return per_sample(iterate, self.batches * self.args.batch_size)


def profile(args, name: str, index: VideoIndex, config: dict, windows: List[tuple]) -> Dict[str, float]:
    """Seconds per sample of each stage (module doc); ``windows`` are ``(path, start, keep)`` to decode (``keep``:
    the window positions the clips read, which the workers alone convert; ``None``: every frame)."""
    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder="pyav",
                        num_workers=0)
    planner, B, W = it.planner, args.batch_size, it.planner.window
    n_batches = max(2, args.batches)
    samples = [it.source.sample(0, i, s) for i in range(n_batches) for s in range(B)]  # decoded once, reused
    stamps = {path: frame_timestamps(path) for path, _, _ in windows}
    cpu: Dict[str, float] = {}
    out = {"decode_1thread": per_sample(lambda: [decode_window_one_thread(p, s, W, stamps[p])
                                                 for p, s, _ in windows], len(windows), cpu, "decode_1thread"),
           "decode_read_window": per_sample(lambda: [read_window(p, s, W, timestamps=stamps[p], threads=0, keep=k)
                                                     for p, s, k in windows], len(windows))}
    hw = samples[0][0].shape[1:3]
    rng, batch_rng = np.random.default_rng(0), np.random.default_rng(1)
    out["draw"] = per_sample(lambda: [planner.draw(rng, batch_rng, i % B, B, W, hw) for i in range(len(samples))],
                             len(samples))
    graphs = GraphTimer(args, it, samples, n_batches, cpu)
    out["graph_1thread"] = graphs.per_sample(1, key="graph_1thread")
    out["graph_nthreads"] = graphs.per_sample(args.threads)
    uses_fused = args.device == "cpu" and fused.available() is None and planner.clip_specs
    out["graph_1thread_unfused"] = graphs.per_sample(1, False, "graph_1thread_unfused") if uses_fused else None
    out["peer_1thread"] = time_peer(planner, samples, it.source.keys, B, cpu) if planner.clip_specs else None
    # CPU seconds per sample of the one-thread stages (see per_sample), and the graph's cost
    # against the decode's, the figure the CPU graph is judged by.
    out["cpu"] = cpu
    out["graph_per_decode_cpu"] = cpu["graph_1thread"] / cpu["decode_1thread"]
    out["handoff"] = graphs.iterator_per_sample() - out["graph_nthreads"]
    gc.collect()
    it.close()
    # Core-seconds per sample of the whole CPU path and the rate it allows on --cores cores.
    out["budget_core_s_per_sample"] = out["decode_read_window"] + out["draw"] + out["graph_1thread"]
    out["budget_windows_per_s"] = args.cores / out["budget_core_s_per_sample"]
    return out
