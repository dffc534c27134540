"""Throughput of the DALI pipelines against the reference loader and the decode ceiling (issue 8).

For each pipeline (``decode`` = the window source alone, ``simclr``, ``mcpnet``, ``moquad``)
it measures, on the same files and the same sampled windows:

* the DALI pipeline through :func:`pipelines.make_iterator`, once per decoder
  (``pyav``: PyAV worker processes feed the graph; ``dali``: ``fn.decoders.video``, on CPU
  libavcodec (VP8/VP9/MJPEG only), on GPU NVDEC);
* the reference loader (:func:`pipelines.reference_loader.reference_loader`): a PyTorch
  ``DataLoader`` with ``--workers`` processes building the same batch contract with PyAV +
  NumPy — what a plain PyTorch loader would do;
* the decode ceiling: one thread of PyAV decoding the same windows (open, seek, decode,
  convert to RGB; codec threads = 1), measured single-threaded and multiplied by the cores
  used — the most any CPU loader can reach without a faster decoder. It is computed from
  the thread's CPU time (wall time is kept too): on a shared machine wall time includes
  waiting for a core and would lower the ceiling.

Wall-clock figures of the loaders do suffer from other processes; the ``others`` column
shows the largest share of the machine's CPU that other processes took during a repeat
(``--wait-idle`` waits for a quiet moment before each measurement).

Definitions (also printed): a *window* is the ``W`` consecutive frames decoded per sample
(one per video, GUIDE §2); **decoded frames/s = windows/s × W**; **clips/s = windows/s ×
clips per sample** (e.g. 4 for the MoQuad quadruple); ratios are of windows/s (equal to the
ratios of decoded frames/s, as W is shared). Every figure is the median over ``--repeats``
runs of ``--batches`` batches after ``--warmup`` batches (pipeline build, worker start and
first prefetch excluded). On GPU every timed interval starts and ends with
``torch.cuda.synchronize()``.

    python -m benchmarks.make_data                   # once: benchmarks/data/{vp9,h264}
    python -m benchmarks.throughput --device cpu     # a few minutes on 2 cores
    python -m benchmarks.throughput --device gpu     # H.264 through NVDEC, 16 reference workers

``--profile`` adds a cost split per sample (decode, planner draws, DALI graph, iterator
hand-off) measured in isolation; RESULTS.md explains how to read it.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a file (python benchmarks/throughput.py): the repository root is the path
    sys.path.insert(0, os.path.dirname(HERE))

from pipelines import PIPELINES, make_iterator  # noqa: E402
from pipelines.index import VideoIndex, load_index  # noqa: E402
from pipelines.iterators import PipelineSpec  # noqa: E402
from pipelines.sources import DTYPES, Planner, WindowSource, usable_cores, windows  # noqa: E402
from pipelines.video_io import DALI_CPU_CODECS, frame_size, frame_timestamps, read_window  # noqa: E402
ALL_PIPELINES = ("decode", "simclr", "mcpnet", "moquad")
# Paper-like clip sizes: MCPNet (and the SimCLR/CVRL baseline) at 112², MoQuad at 224².
DEFAULT_SIZE = {"decode": None, "simclr": 112, "mcpnet": 112, "moquad": 224}
FRAMES_DEFINITION = "decoded frames/s = windows decoded per second x window length W"


# --- the decode-only pipeline ----------------------------------------------------------------
@dataclass
class DecodeOnlyConfig:
    window: int = 16


class DecodeOnlyPlanner(Planner):
    """A trivial planner whose only output is the decoded window ``(W, H, W, 3)`` uint8.

    Through the same source, iterator and DALI hand-off as the methods, so the gap between
    ``decode`` and a method is what the method's graph costs.
    """

    outputs = ("window",)
    keys = ()

    def __init__(self, cfg: DecodeOnlyConfig):
        self.cfg = cfg
        self.window = int(cfg.window)

    def draw(self, rng, batch_rng, slot, batch_size, valid, frame_hw):
        return {}

    def graph(self, window, params, dtype):
        return {"window": window}

    def reference(self, windows, params, slot):
        return {"window": windows[slot]}


@contextlib.contextmanager
def registered(name: str, spec: PipelineSpec):
    """Register a pipeline for the duration of the block (the iterator keeps its spec after)."""
    if name in PIPELINES:
        raise ValueError(f"pipeline {name!r} is already registered")
    PIPELINES[name] = spec
    try:
        yield
    finally:
        del PIPELINES[name]


def pipeline_config(name: str, frames: int, size: Optional[int]) -> dict:
    """The config dict of ``name`` with ``frames`` per clip and ``size``² crops (defaults elsewhere)."""
    if name == "decode":
        return {"window": frames}
    augment = {"size": [size, size]} if size else {}
    return {"clip": {"frames": frames, "augment": augment}}


def build_iterator(name: str, index: VideoIndex, batch_size: int, device: str, seed: int, config: dict,
                   **options):
    """``make_iterator`` for the methods; the same with a temporarily registered planner for ``decode``."""
    if name != "decode":
        return make_iterator(name, index, batch_size, device, seed, config=config, **options)
    with registered("decode", PipelineSpec(DecodeOnlyConfig, DecodeOnlyPlanner, "the decoded window only")):
        return make_iterator("decode", index, batch_size, device, seed, config=config, **options)


# --- where and with what it runs ----------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    """Hardware and library versions, for every printed table and JSON file."""
    import av
    import nvidia.dali
    import torch

    env = {"device": device, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "usable_cores": usable_cores(),
           "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "dali": nvidia.dali.__version__, "pyav": av.__version__, "numpy": np.__version__}
    if device == "gpu":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def load_average() -> Optional[List[float]]:
    """1, 5 and 15 min load averages: other processes on the cores make every figure low and noisy."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def warn_if_busy(cores: int) -> None:
    load = load_average()
    if load and load[0] > 0.5:
        print(f"warning: load average {load[0]:.1f} on {cores} cores before the run; other processes compete for "
              "the cores and the figures will be low and noisy")


class OtherLoad:
    """Share of the machine's CPU time that processes outside this benchmark used during a block.

    On a shared machine other jobs take cores from the benchmark; this makes that visible
    next to every figure instead of silently lowering it. From ``/proc/stat`` (all busy
    time, hypervisor steal included) minus the time of this process and its descendants
    (``/proc/<pid>/stat``, live DALI/DataLoader workers, plus reaped children). Linux only;
    ``None`` elsewhere.
    """

    def __enter__(self):
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc):
        self.end = self._snapshot()

    @property
    def own_cpu_seconds(self) -> Optional[float]:
        """CPU seconds this process and its workers used during the block (robust to other load)."""
        if self.start is None or self.end is None:
            return None
        return self.end[1] - self.start[1]

    @property
    def fraction(self) -> Optional[float]:
        if self.start is None or self.end is None:
            return None
        (b0, o0, t0), (b1, o1, t1) = self.start, self.end
        wall = (t1 - t0) * (os.cpu_count() or 1)
        return max(0.0, ((b1 - b0) - (o1 - o0)) / wall) if wall > 0 else None

    @staticmethod
    def _snapshot():
        try:
            tick = os.sysconf("SC_CLK_TCK")
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / tick  # user nice system irq softirq steal
            parents, times = {}, {}
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        rest = f.read().rsplit(")", 1)[1].split()
                except OSError:  # exited meanwhile
                    continue
                parents[int(pid)] = int(rest[1])
                times[int(pid)] = (int(rest[11]) + int(rest[12])) / tick
            ours, frontier = {os.getpid()}, [os.getpid()]
            while frontier:
                parent = frontier.pop()
                children = [p for p, pp in parents.items() if pp == parent and p not in ours]
                ours.update(children)
                frontier.extend(children)
            reaped = os.times()
            own = sum(times.get(p, 0.0) for p in ours) + reaped.children_user + reaped.children_system
            return busy, own, time.monotonic()
        except (OSError, ValueError, IndexError):
            return None


def wait_for_idle(max_wait: float, threshold: float = 0.1, window: float = 2.0) -> Optional[float]:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` of the CPU over ``window`` s.

    On a shared machine this times each measurement into a quiet moment; it returns the last
    share seen (the measurement itself still records the share during its repeats).
    """
    deadline = time.monotonic() + max_wait
    share = None
    while max_wait > 0:
        with OtherLoad() as load:
            time.sleep(window)
        share = load.fraction
        if share is None or share < threshold or time.monotonic() > deadline:
            break
    return share


def describe(env: dict) -> str:
    where = f"{env['cpu_model']}, {env['usable_cores']} usable cores (cpu_count {env['cpu_count']})"
    if env.get("gpu"):
        where = f"{env['gpu']} (CUDA {env['cuda']}) + {where}"
    return (f"{where}\npython {env['python']}, torch {env['torch']}, DALI {env['dali']}, PyAV {env['pyav']}, "
            f"numpy {env['numpy']}")


def default_data(device: str) -> str:
    """The generated list for the device's codec (VP9 for CPU, H.264 for NVDEC); made if missing."""
    codec = "h264" if device == "gpu" else "vp9"
    path = os.path.join(HERE, "data", codec, "list.txt")
    if not os.path.exists(path):
        from benchmarks.make_data import generate

        print(f"no benchmark data at {path}: generating it (python -m benchmarks.make_data)")
        generate(codecs=(codec,))
    return path


def replicate(index: VideoIndex, min_videos: int) -> VideoIndex:
    """The index repeated until it lists ``min_videos`` entries, so one epoch covers the whole run.

    Each entry still gets its own random window; a batch may hold one file twice, which costs
    the same to decode and does not matter for throughput.
    """
    k = max(1, math.ceil(min_videos / len(index)))
    return VideoIndex([p for _ in range(k) for p in index.paths], np.tile(index.labels, k),
                      np.tile(index.num_frames, k), list(index.classes), dict(index.stats))


# --- timing ------------------------------------------------------------------------------------------
def synchronizer(device: str) -> Callable[[], None]:
    if device == "gpu":
        import torch

        return torch.cuda.synchronize  # sync point: the timer must not stop before the GPU work does
    return lambda: None


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


def close(iterator) -> None:
    """Drop an iterator and collect it, so its DALI worker processes exit before the next run."""
    del iterator
    gc.collect()
    time.sleep(0.2)


# --- the producers ----------------------------------------------------------------------------------
def to_device(batches, device: str):
    """Move reference batches to the GPU as a training loop would (the contract's device)."""
    for batch in batches:
        if device == "gpu":
            batch = {k: v.to("cuda", non_blocking=True) for k, v in batch.items()}
        yield batch


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
    from pipelines.reference_loader import reference_loader

    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder="pyav",
                        num_workers=args.workers)
    loader = reference_loader(it, epoch=0, num_workers=args.workers)
    batches = to_device(iter(loader), args.device)
    first = next(batches)
    clips = clips_per_sample(first)
    timed = time_batches(batches, args.warmup - 1, args.batches, args.repeats, synchronizer(args.device))
    batches.close()
    del loader
    close(it)
    return {"producer": "reference", "decoder": "pyav", "workers": args.workers, "threads": None,
            "window": it.planner.window, "clips_per_sample": clips, **timed}


def timed_windows(args, name: str, index: VideoIndex, config: dict, first: Optional[int] = None,
                  repeats: Optional[int] = None, per_repeat: Optional[int] = None) -> List[List[tuple]]:
    """``(path, start)`` of every window the timed batches decode, one list per repeat.

    A source with ``decoder="dali"`` draws exactly the pyav source's windows (the start is a
    function of seed, epoch and video) but returns the file's bytes instead of decoding.
    """
    first = args.warmup if first is None else first
    repeats = args.repeats if repeats is None else repeats
    per_repeat = args.batches if per_repeat is None else per_repeat
    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder="pyav",
                        num_workers=0)
    source = WindowSource(it.index, it.planner, args.batch_size, args.seed, decoder="dali")
    keys = source.keys
    out = []
    for r in range(repeats):
        batch_windows = []
        for i in range(first + r * per_repeat, first + (r + 1) * per_repeat):
            for slot in range(args.batch_size):
                sample = dict(zip(keys, source.sample(0, i, slot)))
                batch_windows.append((source.paths[int(sample["index"])], int(sample["window_start"])))
        out.append(batch_windows)
    return out


def decode_window_one_thread(path: str, start: int, count: int, stamps: np.ndarray) -> np.ndarray:
    """The ceiling's unit: :func:`pipelines.video_io.read_window` with one codec thread.

    Open, seek to the keyframe before ``start``, decode forward, convert ``count`` frames to
    RGB (padding past the end by repeating the last frame), as the pipeline's workers do.
    """
    return read_window(path, start, count, timestamps=stamps, threads=1)


def measure_ceiling(args, name: str, index: VideoIndex, config: dict, window: int) -> dict:
    """Single-thread PyAV windows/s on the timed windows, times ``--cores``."""
    plan = timed_windows(args, name, index, config)
    stamps = {p: frame_timestamps(p) for p in {p for rep in plan for p, _ in rep}}  # cached by the pipeline too
    decode_window_one_thread(*plan[0][0], window, stamps[plan[0][0][0]])  # warm the library and the page cache
    seconds, cpu_seconds, other = [], [], []
    for rep in plan:
        with OtherLoad() as load:
            start, cpu = time.perf_counter(), time.thread_time()
            for path, first in rep:
                decode_window_one_thread(path, first, window, stamps[path])
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.thread_time() - cpu)  # = seconds when nothing else wants the core
        other.append(load.fraction)
    return {"producer": "ceiling", "decoder": "pyav, 1 thread", "workers": None, "threads": 1, "cores": args.cores,
            "window": window, "clips_per_sample": None, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "other_load": other}


# --- the cost split (--profile) -------------------------------------------------------------------
def profile(args, name: str, index: VideoIndex, config: dict) -> dict:
    """Seconds per sample of each stage, each measured alone in this process.

    * ``decode_1thread`` / ``decode_read_window``: PyAV window decode with one codec thread
      and with :func:`read_window` exactly as the pipeline's workers call it;
    * ``draw``: the planner's per-sample parameter draws;
    * ``graph_1thread`` / ``graph_nthreads``: the DALI graph (augmentation, RAD, residuals,
      normalisation) fed pre-decoded windows from memory, with 1 and ``--threads`` threads
      (wall time per sample);
    * ``handoff``: extra time per sample of DALIGenericIterator (outputs → torch tensors)
      over ``pipe.run()`` on the same graph, at ``--threads`` threads.
    """
    from nvidia.dali import fn, pipeline_def
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    it = build_iterator(name, index, args.batch_size, args.device, args.seed, config, decoder="pyav",
                        num_workers=0)
    planner, B, W = it.planner, args.batch_size, it.planner.window
    n_batches = max(2, args.batches)
    keys = it.source.keys
    samples = [it.source.sample(0, i, s) for i in range(n_batches) for s in range(B)]  # decoded once, reused
    plan = [w for rep in timed_windows(args, name, index, config, first=0, repeats=1, per_repeat=n_batches)
            for w in rep]
    stamps = {path: frame_timestamps(path) for path, _ in plan}
    out = {}

    def per_sample(work: Callable[[], object], count: int) -> float:
        start = time.perf_counter()
        work()
        return (time.perf_counter() - start) / count

    out["decode_1thread"] = per_sample(lambda: [decode_window_one_thread(p, s, W, stamps[p]) for p, s in plan],
                                       len(plan))
    out["decode_read_window"] = per_sample(lambda: [read_window(p, s, W, timestamps=stamps[p], threads=0)
                                                    for p, s in plan],
                                           len(plan))
    hw = samples[0][0].shape[1:3]
    rng, batch_rng = np.random.default_rng(0), np.random.default_rng(1)
    out["draw"] = per_sample(lambda: [planner.draw(rng, batch_rng, i % B, B, W, hw) for i in range(len(samples))],
                             len(samples))

    # The graph's inputs only (label and index pass through untouched): window + draws.
    used = [i for i, k in enumerate(keys) if k not in ("label", "index")]

    class Cached:
        """Pre-decoded samples served batch by batch in this process: no decode, no IPC."""

        def __init__(self):
            self.i = 0

        def __call__(self):
            batch = samples[(self.i % n_batches) * B:(self.i % n_batches + 1) * B]
            self.i += 1
            return [[s[k] for s in batch] for k in used]

    def graph_pipe(threads):
        @pipeline_def(batch_size=B, num_threads=threads, device_id=0 if args.device == "gpu" else None,
                      prefetch_queue_depth=2)
        def pipe():
            nodes = dict(zip([keys[i] for i in used],
                             fn.external_source(source=Cached(), num_outputs=len(used),
                                                layout=["FHWC" if keys[i] == "frames" else "" for i in used])))
            window = nodes.pop("frames")
            window = window.gpu() if args.device == "gpu" else window
            built = planner.graph(window, nodes, DTYPES[args.device])
            return tuple(built[k] for k in planner.outputs)

        p = pipe()
        p.build()
        return p

    sync = synchronizer(args.device)

    def run_graph(p):
        for _ in range(n_batches):
            p.run()
        sync()

    for threads, key in ((1, "graph_1thread"), (args.threads, "graph_nthreads")):
        p = graph_pipe(threads)
        run_graph(p)  # warm-up: buffers reach their high-water mark (GUIDE §4.12)
        out[key] = per_sample(lambda: run_graph(p), n_batches * B)
        del p
        gc.collect()
    # The same graph behind DALIGenericIterator (a new pipeline: one API per pipeline).
    dali_it = DALIGenericIterator([graph_pipe(args.threads)], list(planner.outputs), size=-1)
    for _ in range(n_batches):
        next(dali_it)

    def iterate():
        for _ in range(n_batches):
            next(dali_it)
        sync()

    out["handoff"] = per_sample(iterate, n_batches * B) - out["graph_nthreads"]
    del dali_it
    gc.collect()
    close(it)
    # Core-seconds per sample of the whole CPU path and the rate it allows on --cores cores.
    out["budget_core_s_per_sample"] = out["decode_read_window"] + out["draw"] + out["graph_1thread"]
    out["budget_windows_per_s"] = args.cores / out["budget_core_s_per_sample"]
    return out


# --- operator counts ------------------------------------------------------------------------------
def operator_counts(name: str, index: VideoIndex, config: dict, batch_size: int) -> Dict[str, int]:
    """DALI operators per batch of the method's graph (CPU graph), by operator type.

    Every operator runs once per batch over all its samples; on GPU each is at least one
    kernel launch (GUIDE §4.4: arithmetic is not fused). Counted from the graph that
    ``Pipeline.save_graph_to_dot_file`` writes (public API), source and decoder included.
    """
    import re
    import tempfile

    from nvidia.dali import pipeline_def

    it = build_iterator(name, index, batch_size, "cpu", 0, config, decoder="pyav", num_workers=0)
    planner, source = it.planner, it.source

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=None)
    def pipe():
        nodes = windows(source, "cpu", 0)
        window = nodes.pop("window")
        built = planner.graph(window, nodes, DTYPES["cpu"])
        return tuple(built[k] for k in planner.outputs) + (nodes["label"], nodes["index"])  # as VideoIterator

    p = pipe()
    p.build()
    with tempfile.TemporaryDirectory() as tmp:
        dot = os.path.join(tmp, "graph.dot")
        p.save_graph_to_dot_file(dot)
        with open(dot) as f:
            text = f.read()
    nodes = set(re.findall(r"(\w+) ->", text)) | set(re.findall(r"-> (\w+);", text))
    counts: Dict[str, int] = {}
    for node in nodes:
        kind = re.sub(r"_\d+$", "", node).strip("_")
        if kind.startswith("MakeContiguous"):  # output copies DALI adds, one per pipeline output
            kind = "MakeContiguous (outputs)"
        counts[kind] = counts.get(kind, 0) + 1
    del p
    close(it)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --- the run -------------------------------------------------------------------------------------------
def summarise(row: dict, batch_size: int, per_repeat: int) -> dict:
    """Median rates from the per-repeat seconds."""
    count = batch_size * per_repeat
    rates = [count / s for s in row["seconds"]]
    windows_per_s = statistics.median(rates)
    if row["producer"] == "ceiling":
        # One thread measured, times the cores used. From the thread's CPU time: on a shared
        # machine its wall time includes waiting for a core, which would lower the ceiling
        # and flatter the pipeline; CPU time is what one free core delivers.
        row["windows_per_s_wall"] = windows_per_s * row["cores"]
        windows_per_s = statistics.median(count / s for s in row["cpu_seconds"]) * row["cores"]
    row["windows_per_s"] = windows_per_s
    # CPU cost per window (this process and its workers; for the ceiling, the one thread): a
    # figure that other processes on the machine barely change, unlike the rates.
    cpu = [c for c in row.get("cpu_seconds") or [] if c is not None]
    row["cpu_ms_per_window"] = 1e3 * statistics.median(cpu) / count if cpu else None
    row["decoded_frames_per_s"] = windows_per_s * row["window"]
    row["clips_per_s"] = windows_per_s * row["clips_per_sample"] if row["clips_per_sample"] else None
    return row


def run(args) -> dict:
    env = environment(args.device)
    data = args.data or default_data(args.device)
    base = load_index(data)
    height, width, codec = frame_size(base.paths[0])
    # One epoch covers the warm-up, every repeat and the prefetch that runs ahead of them.
    need = (args.warmup + args.repeats * args.batches + 4) * args.batch_size
    index = replicate(base, need)
    result = {"environment": env, "definition": FRAMES_DEFINITION, "data": os.path.abspath(data),
              "videos": len(base), "resolution": [width, height], "codec": codec, "batch_size": args.batch_size,
              "workers": args.workers, "threads": args.threads, "cores": args.cores, "warmup": args.warmup,
              "batches": args.batches, "repeats": args.repeats, "seed": args.seed, "wait_idle": args.wait_idle,
              "pipelines": {}}
    print(describe(env))
    warn_if_busy(args.cores)
    print(f"data: {len(base)} videos {width}x{height} {codec} ({data}); batch {args.batch_size}, "
          f"{args.workers} workers, {args.threads} DALI threads, {args.cores} cores; "
          f"median of {args.repeats} x {args.batches} batches after {args.warmup} warm-up", flush=True)
    for name in args.pipelines:
        load_before = load_average()
        size = args.size or DEFAULT_SIZE[name]
        config = pipeline_config(name, args.frames, size)
        rows = []
        for decoder in args.decoders:
            if decoder == "dali" and args.device == "cpu" and codec not in DALI_CPU_CODECS:
                print(f"  {name}: pipeline[dali] skipped: DALI's CPU decoder does not read {codec} "
                      f"(use VP9 data, benchmarks/data/vp9)")
                continue
            wait_for_idle(args.wait_idle)
            rows.append(measure_pipeline(args, name, index, config, decoder))
            print(f"  {name}: pipeline[{decoder}] done", flush=True)
        if not args.no_reference:
            wait_for_idle(args.wait_idle)
            rows.append(measure_reference(args, name, index, config))
            print(f"  {name}: reference done", flush=True)
        window = rows[0]["window"] if rows else None
        if window is not None:
            wait_for_idle(args.wait_idle)
            rows.append(measure_ceiling(args, name, index, config, window))
        rows = [summarise(r, args.batch_size, args.batches) for r in rows]
        ref = next((r for r in rows if r["producer"] == "reference"), None)
        ceiling = next((r for r in rows if r["producer"] == "ceiling"), None)
        for r in rows:
            r["vs_reference"] = r["windows_per_s"] / ref["windows_per_s"] if ref else None
            r["vs_ceiling"] = r["windows_per_s"] / ceiling["windows_per_s"] if ceiling else None
        entry = {"config": config, "frames_per_clip": args.frames if name != "decode" else None,
                 "size": size if name != "decode" else [height, width], "window": window, "results": rows,
                 "load_average": {"before": load_before, "after": load_average()}}
        if args.operators and name != "decode":
            entry["operators_per_batch"] = operator_counts(name, index, config, args.batch_size)
        if args.profile:
            wait_for_idle(args.wait_idle)
            entry["profile"] = profile(args, name, index, config)
        result["pipelines"][name] = entry
        print(table_rows(name, entry), flush=True)
    return result


def table_rows(name: str, entry: dict) -> str:
    lines = []
    for r in entry["results"]:
        clips = f"{r['clips_per_s']:9.1f}" if r["clips_per_s"] else f"{'-':>9}"
        ref = f"{r['vs_reference']:6.2f}x" if r["vs_reference"] else f"{'-':>7}"
        ceil = f"{100 * r['vs_ceiling']:6.0f}%" if r["vs_ceiling"] else f"{'-':>7}"
        who = r["producer"] + (f" x{r['cores']} cores" if r["producer"] == "ceiling" else "")
        loads = [v for v in r.get("other_load", []) if v is not None]
        other = f"{100 * max(loads):6.0f}%" if loads else f"{'-':>7}"
        nvdec = f"  NVDEC {r['nvdec_busy_percent']:.0f}%" if r.get("nvdec_busy_percent") is not None else ""
        cpu = f"{r['cpu_ms_per_window']:8.1f}" if r.get("cpu_ms_per_window") else f"{'-':>8}"
        lines.append(f"{name:8s} {who:22s} {r['window']:4d} {r['windows_per_s']:10.1f} {clips} "
                     f"{r['decoded_frames_per_s']:11.0f} {ref} {ceil} {cpu} {other}{nvdec}")
    return "\n".join(lines)


def print_table(result: dict) -> None:
    print()
    print(describe(result["environment"]))
    print(f"{result['videos']} videos {result['resolution'][0]}x{result['resolution'][1]} {result['codec']}, "
          f"batch {result['batch_size']}, {result['workers']} workers, {result['cores']} cores; "
          f"{result['definition']}; 'cpu ms/w' = CPU time per window of the producer (all its processes "
          f"and threads); 'others' = the largest share of the machine's CPU time that other processes used "
          f"during a timed repeat")
    print(f"{'pipeline':8s} {'producer':22s} {'W':>4s} {'windows/s':>10s} {'clips/s':>9s} {'frames/s':>11s} "
          f"{'vs ref':>7s} {'vs ceil':>7s} {'cpu ms/w':>8s} {'others':>7s}")
    for name, entry in result["pipelines"].items():
        print(table_rows(name, entry))
        if "operators_per_batch" in entry:
            ops = entry["operators_per_batch"]
            print(f"{'':8s} {sum(ops.values())} DALI operators per batch: "
                  + ", ".join(f"{k} {v}" for k, v in ops.items()))
        if "profile" in entry:
            p = entry["profile"]
            print(f"{'':8s} profile ms/sample: decode 1-thread {1e3 * p['decode_1thread']:.1f}, read_window "
                  f"{1e3 * p['decode_read_window']:.1f}, draw {1e3 * p['draw']:.2f}, graph 1-thread "
                  f"{1e3 * p['graph_1thread']:.1f}, graph {result['threads']}-thread {1e3 * p['graph_nthreads']:.1f}, "
                  f"hand-off {1e3 * p['handoff']:.1f}; budget {p['budget_windows_per_s']:.1f} windows/s")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--data", default=None, help="a `path label` list (default: benchmarks/data/vp9/list.txt "
                                                     "on cpu, benchmarks/data/h264/list.txt on gpu; made if missing)")
    parser.add_argument("--pipelines", nargs="+", default=list(ALL_PIPELINES), choices=ALL_PIPELINES)
    parser.add_argument("--decoders", nargs="+", default=None, choices=("pyav", "dali"),
                        help="pipeline decoders (default: pyav dali on cpu, dali on gpu)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 on cpu, 32 on gpu")
    parser.add_argument("--workers", type=int, default=None,
                        help="PyAV/reader processes of the pipeline and reference-loader workers "
                             "(default: the usable cores on cpu, 16 on gpu)")
    parser.add_argument("--threads", type=int, default=None, help="DALI threads (default: the usable cores, "
                                                                  "at most 8)")
    parser.add_argument("--cores", type=int, default=None, help="cores the ceiling is scaled to "
                                                                "(default: the usable cores)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (the decode-only window)")
    parser.add_argument("--size", type=int, default=None,
                        help="clip size (default: 112 simclr/mcpnet, 224 moquad)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (at least 1)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference loader")
    parser.add_argument("--operators", action="store_true", help="count the DALI operators of each method graph")
    parser.add_argument("--profile", action="store_true", help="add the per-sample cost split")
    parser.add_argument("--wait-idle", type=float, default=0.0,
                        help="on a shared machine: before each measurement wait up to this many seconds until "
                             "other processes use < 10%% of the CPU")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/throughput-<device>.json)")
    args = parser.parse_args(argv)
    cores = usable_cores()
    args.batch_size = args.batch_size or (32 if args.device == "gpu" else 8)
    args.workers = args.workers if args.workers is not None else (16 if args.device == "gpu" else cores)
    args.threads = args.threads or min(8, cores)
    args.cores = args.cores or cores
    args.decoders = args.decoders or (["dali"] if args.device == "gpu" else ["pyav", "dali"])
    args.warmup = max(1, args.warmup)
    args.out = args.out or os.path.join(HERE, f"throughput-{args.device}.json")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = run(args)
    result["command"] = "python -m benchmarks.throughput " + " ".join(sys.argv[1:] if argv is None else argv)
    print_table(result)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
