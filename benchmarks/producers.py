"""What the throughput benchmark times: the pipeline, the peer loader, the reference loader, the decode ceiling.

Each ``measure_*`` returns the seconds of ``--repeats`` timed runs of ``--batches`` batches
(after ``--warmup`` untimed ones), the CPU time of the producer and its workers, and the
share of the machine other processes took meanwhile (:class:`benchmarks.common.OtherLoad`).
All three see the same windows: every draw is a function of (seed, epoch, video).
"""
from __future__ import annotations

import threading
import time
from typing import Dict, Iterator, List, Optional

import numpy as np

from benchmarks.common import OtherLoad, close, synchronizer
from benchmarks.decode_only import build_iterator
from benchmarks.cost_split import decode_window_one_thread
from motionssl.pipelines import inspection
from motionssl.pipelines.index import VideoIndex
from motionssl.pipelines.sources import WindowSource
from motionssl.pipelines.video_io import frame_timestamps


def time_batches(batches: Iterator, warmup: int, per_repeat: int, repeats: int, sync) -> dict:
    """Seconds per repeat of ``per_repeat`` batches after ``warmup`` untimed ones, and the others' CPU share."""
    for _ in range(warmup):
        next(batches)
    seconds, other, cpu = [], [], []
    for _ in range(repeats):
        with OtherLoad() as load:
            sync()
            start = time.perf_counter()
            for _ in range(per_repeat):
                next(batches)
            sync()
            seconds.append(time.perf_counter() - start)
        other.append(load.fraction)
        cpu.append(load.own_cpu_seconds)
    return {"seconds": seconds, "other_load": other, "cpu_seconds": cpu}


class DecoderUtilization:
    """Mean NVDEC utilisation (%) over a block, sampled with NVML every 100 ms; None without NVML."""

    def __init__(self, device: str):
        self.samples: List[int] = []
        self.handle = None
        if device != "gpu":
            return
        try:
            import pynvml  # pip install nvidia-ml-py

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # NVML missing: report "not measured" rather than fail the run
            self.handle = None

    def __enter__(self):
        self.stop = threading.Event()
        if self.handle is not None:
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(0.1):
            self.samples.append(self.nvml.nvmlDeviceGetDecoderUtilization(self.handle)[0])

    def __exit__(self, *exc):
        self.stop.set()
        if self.handle is not None:
            self.thread.join()

    @property
    def mean(self) -> Optional[float]:
        return float(np.mean(self.samples)) if self.samples else None


def clips_per_sample(batch: dict) -> int:
    return sum(1 for v in batch.values() if v.ndim == 5)


def measure_pipeline(args, name: str, index: VideoIndex, config: dict, decoder: str) -> dict:
    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder=decoder,
                        num_workers=args.workers, num_threads=args.threads)
    batches = iter(it)
    first = next(batches)  # the build, the workers' start and the first batch: not timed
    clips = clips_per_sample(first)
    window = it.planner.window
    with DecoderUtilization(args.device) as nvdec:
        timed = time_batches(batches, args.warmup - 1, args.batches, args.repeats, synchronizer(args.device))
    batches.close()
    close(it)
    return {"producer": f"pipeline[{decoder}]", "decoder": decoder, "workers": args.workers,
            "threads": args.threads, "window": window, "clips_per_sample": clips, **timed,
            "nvdec_busy_percent": nvdec.mean}


def measure_reference(args, name: str, index: VideoIndex, config: dict) -> dict:
    from motionssl.pipelines.reference_loader import reference_loader

    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder="pyav",
                        num_workers=args.workers)
    loader = reference_loader(it, epoch=0, num_workers=args.workers)  # on GPU: pinned, copied to the device
    batches = iter(loader)
    first = next(batches)
    clips = clips_per_sample(first)
    timed = time_batches(batches, args.warmup - 1, args.batches, args.repeats, synchronizer(args.device))
    batches.close()
    del loader
    close(it)
    return {"producer": "reference", "decoder": "pyav", "workers": args.workers, "threads": None,
            "window": it.planner.window, "clips_per_sample": clips, **timed}


def measure_peer(args, name: str, index: VideoIndex, config: dict, decoder: str) -> dict:
    """The peer loader (:mod:`benchmarks.peer`) with ``decoder`` in its ``--workers`` processes.

    ``"torchcodec-cuda"``: torchcodec's CUDA decoder in the main process (GPU only), the
    workers drawing parameters.
    """
    from benchmarks.peer import peer_loader

    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder="pyav",
                        num_workers=args.workers)
    in_main = decoder == "torchcodec-cuda"
    loader = peer_loader(it, decoder="torchcodec" if in_main else decoder, epoch=0, num_workers=args.workers,
                         decode_in_main=in_main)
    batches = iter(loader)
    first = next(batches)
    clips = clips_per_sample(first)
    timed = time_batches(batches, args.warmup - 1, args.batches, args.repeats, synchronizer(args.device))
    del batches, loader
    close(it)
    return {"producer": f"peer[{decoder}]", "decoder": decoder, "workers": args.workers, "threads": None,
            "window": it.planner.window, "clips_per_sample": clips, **timed}


def timed_windows(args, name: str, index: VideoIndex, config: dict, first: Optional[int] = None,
                  repeats: Optional[int] = None, per_repeat: Optional[int] = None) -> List[List[tuple]]:
    """``(path, start, keep)`` of every window the timed batches decode, one list per repeat: ``keep`` the window
    positions the clips read (the frames the pipeline's workers convert and hand over), ``None`` for a
    planner that does not name them (every frame).

    A source with ``decoder="dali"`` draws exactly the pyav source's windows (the start is a
    function of seed, epoch and video) and parameters, but returns the file's bytes instead of decoding.
    """
    first = args.warmup if first is None else first
    repeats = args.repeats if repeats is None else repeats
    per_repeat = args.batches if per_repeat is None else per_repeat
    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder="pyav",
                        num_workers=0)
    source = WindowSource(it.index, it.planner, args.batch_size, seed=args.seed, decoder="dali")
    keys = source.keys
    out = []
    for r in range(repeats):
        batch_windows = []
        for i in range(first + r * per_repeat, first + (r + 1) * per_repeat):
            for slot in range(args.batch_size):
                sample = dict(zip(keys, source.sample(0, i, slot)))
                batch_windows.append((source.paths[int(sample["index"])], int(sample["window_start"]),
                                      it.planner.frames_read(sample)))
        out.append(batch_windows)
    return out


def one_thread_decoder(decoder: str):
    """``(path, start, count, stamps, keep) -> frames`` of ``decoder`` with one thread: the ceiling's unit."""
    if decoder != "pyav":
        from motionssl.pipelines.decoders import read_window

        return lambda path, start, count, stamps, keep=None: read_window(path, start, count, timestamps=stamps,
                                                                         decoder=decoder, threads=1, keep=keep)
    return decode_window_one_thread


def measure_ceiling(args, name: str, index: VideoIndex, config: dict, window: int, decoder: str = "pyav",
                    read: bool = False) -> Optional[dict]:
    """Single-thread ``decoder`` windows/s on the timed windows, times ``--cores``: every frame of each window
    decoded and converted (``ceiling[decoder]``), or with ``read`` (``ceiling[decoder; read]``) the frames up to
    the last one the clips read decoded and those alone converted, as the pipeline's workers do."""
    plan = timed_windows(args, name, index, config)
    if read and all(keep is None or len(keep) == window for rep in plan for _, _, keep in rep):
        return None  # the clips read every frame of every window: no second ceiling
    stamps = {p: frame_timestamps(p) for p in {p for rep in plan for p, _, _ in rep}}  # cached by the pipeline too
    decode = one_thread_decoder(decoder)
    path, first, keep = plan[0][0]
    decode(path, first, window, stamps[path], keep if read else None)  # warm the library and the page cache
    seconds, cpu_seconds, other = [], [], []
    for rep in plan:
        with OtherLoad() as load:
            # The process's CPU time, not the thread's: a decoder or converter that works on
            # helper threads (PyAV's libswscale did, before it was held to one thread) must
            # not look cheaper than it is. Nothing else in this process runs meanwhile.
            start, cpu = time.perf_counter(), time.process_time()
            for path, first, keep in rep:
                decode(path, first, window, stamps[path], keep if read else None)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu)  # = seconds when nothing else wants the core
        other.append(load.fraction)
    return {"producer": f"ceiling[{decoder}{'; read' if read else ''}]", "decoder": f"{decoder}, 1 thread", "workers": None, "threads": 1, "cores": args.cores,
            "window": window, "clips_per_sample": None, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "other_load": other}


def operator_counts(name: str, index: VideoIndex, config: dict, batch_size: int) -> Dict[str, int]:
    """DALI operators per batch of the method's CPU graph, by operator type, source and decoder included.

    Every operator runs once per batch over all its samples; on GPU each is at least one
    kernel launch (arithmetic is not fused in DALI 2.4).
    """
    it = build_iterator(name, index, batch_size, "cpu", 0, config, decoder="pyav", num_workers=0)
    counts = inspection.operator_counts(inspection.define(it.source, it.planner, "cpu").values())
    close(it)
    return counts
