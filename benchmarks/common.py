"""What every benchmark shares: where it ran, how busy the machine was, the data, the timer's sync.

* :func:`environment` / :func:`describe` — hardware, library versions and the commit measured, for every table;
* :func:`clip_sizes` — the clip sizes each method is measured at (its paper's, and SimCLR's 112² too);
* :class:`OtherLoad` / :func:`wait_for_idle` — the share of the machine's CPU that *other*
  processes took while a figure was timed (psutil), so a busy shared machine shows next to
  the number it lowered instead of silently lowering it;
* :func:`default_data` / :func:`replicate` — the generated benchmark videos, and an index
  long enough that one epoch covers a whole measurement;
* :func:`synchronizer` — ``torch.cuda.synchronize`` on GPU: a timer must not stop before
  the GPU work it times has finished.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import subprocess
import time
from typing import Callable, List, Optional

import numpy as np
import psutil

from motionssl.pipelines.index import VideoIndex
from motionssl.pipelines.pipeline import usable_cores

HERE = os.path.dirname(os.path.abspath(__file__))


# Untimed batches before a producer's timed ones (the throughput benchmark and the CPU split). The first batches
# after a loader is built run apart from its steady state both ways: the queues its workers filled while the
# first batch was awaited serve the next ones faster, while the process's buffers are still growing and every
# fresh page costs a first-touch fault (about 4.7 us of CPU on the development machine's VM). With 1-2
# warm-up batches a pipeline's ratio to the ceiling depended on what had run before it in the process (MoQuad
# 224: 58-60 % measured first, 71-73 % after the peer loader) and the peer loader looked up to 1.6x faster
# than later on; with 8 or 12 both orders gave 78-86 % for every method (benchmarks/RESULTS.md).
WARMUP_BATCHES = 8


def methods() -> tuple:
    """The registered methods, baselines first (the benchmarks' rows), by name."""
    from motionssl.models.methods import METHODS

    return tuple(sorted(METHODS, key=lambda name: (not METHODS[name].baseline, name)))


def paper_settings(name: str) -> dict:
    """What a method's paper configuration says about the benchmarked step: clip size, optimiser, weight decay.

    The papers' clip sizes differ (MoQuad and its SimCLR baseline 224², MCPNet 112²), as do
    their optimisers (LARS, SGD); ``decode`` (the decode-only pipeline) has none.
    """
    from motionssl.models.methods import get_method
    from motionssl.training import load_config

    if name == "decode":
        return {"size": None}
    method = get_method(name)
    cfg = load_config([method.paper_config] if method.paper_config else [], pipeline=name)
    size = cfg.pipeline_config.clip.augment.size if hasattr(cfg.pipeline_config, "clip") else (112, 112)
    return {"size": int(size[0]), "optim": cfg.optim.name, "weight_decay": cfg.optim.weight_decay,
            "paper_lr": method.paper_lr}


EXTRA_SIZES = {"simclr": (112,)}
"""Sizes measured besides the paper configuration's: SimCLR also at 112², the CVRL/SimCLR baseline's
size, at which the earlier tables of benchmarks/RESULTS.md were measured."""


def clip_sizes(name: str) -> List[Optional[int]]:
    """The clip sizes ``name`` is measured at: its paper configuration's first (``[None]`` for ``decode``)."""
    paper = paper_settings(name)["size"]
    return [paper] + [s for s in EXTRA_SIZES.get(name, ()) if s != paper]


def source_commit() -> dict:
    """The git commit of this checkout and whether tracked files differ from it (``None`` outside a checkout)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        changed = git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(changed.stdout.strip()) if not changed.returncode else None
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def describe_commit(env: dict) -> str:
    commit = env.get("commit")
    if not commit:
        return "commit unknown (not a git checkout)"
    return f"commit {commit[:12]}" + (" + uncommitted changes" if env.get("dirty") else "")


def environment(device: str) -> dict:
    """Hardware and library versions, for every printed table and JSON file."""
    import av
    import nvidia.dali
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    env = {"device": device, "cpu_model": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable_cores(),
           "memory_gib": round(psutil.virtual_memory().total / 2 ** 30, 1), "python": platform.python_version(),
           "platform": platform.platform(), "torch": torch.__version__, "dali": nvidia.dali.__version__,
           "pyav": av.__version__, "numpy": np.__version__, **source_commit()}
    if device == "gpu":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def describe(env: dict) -> str:
    where = f"{env['cpu_model']}, {env['usable_cores']} usable cores (cpu_count {env['cpu_count']})"
    if env.get("gpu"):
        where = f"{env['gpu']} (CUDA {env['cuda']}) + {where}"
    return (f"{where}\npython {env['python']}, torch {env['torch']}, DALI {env['dali']}, PyAV {env['pyav']}, "
            f"numpy {env['numpy']}; {describe_commit(env)}")


def load_average() -> Optional[List[float]]:
    """1, 5 and 15 min load averages."""
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

    All busy CPU time of the machine (hypervisor steal included) minus that of this
    process and its descendants (live DALI / DataLoader workers, and reaped children).
    ``own_cpu_seconds`` is this benchmark's own CPU time in the block: a cost that other
    load barely changes, unlike wall time.
    """

    BUSY = ("user", "nice", "system", "irq", "softirq", "steal")

    def __enter__(self):
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc):
        self.end = self._snapshot()

    @property
    def own_cpu_seconds(self) -> float:
        return self.end[1] - self.start[1]

    @property
    def fraction(self) -> float:
        (b0, o0, t0), (b1, o1, t1) = self.start, self.end
        wall = (t1 - t0) * (psutil.cpu_count() or 1)
        return max(0.0, ((b1 - b0) - (o1 - o0)) / wall) if wall > 0 else 0.0

    @classmethod
    def _snapshot(cls):
        times = psutil.cpu_times()
        busy = sum(getattr(times, name, 0.0) for name in cls.BUSY)
        me = psutil.Process()
        own = 0.0
        for proc in [me] + me.children(recursive=True):
            try:
                t = proc.cpu_times()
            except psutil.Error:  # exited meanwhile
                continue
            own += t.user + t.system
        t = me.cpu_times()
        own += t.children_user + t.children_system
        return busy, own, time.monotonic()


def wait_for_idle(max_wait: float, threshold: float = 0.1, window: float = 2.0) -> Optional[float]:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` of the CPU over ``window`` s.

    Returns the last share seen (the measurement itself records the share during its repeats).
    """
    deadline = time.monotonic() + max_wait
    share = None
    while max_wait > 0:
        with OtherLoad() as load:
            time.sleep(window)
        share = load.fraction
        if share < threshold or time.monotonic() > deadline:
            break
    return share


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
                      np.tile(index.num_frames, k), list(index.classes), dict(index.stats), index.media * k,
                      index.cache)


def pipeline_config(name: str, frames: int, size: Optional[int]) -> dict:
    """The config dict of ``name`` with ``frames`` per clip and ``size``² crops (defaults elsewhere)."""
    if name == "decode":
        return {"window": frames}
    augment = {"size": [size, size]} if size else {}
    return {"clip": {"frames": frames, "augment": augment}}


def synchronizer(device: str) -> Callable[[], None]:
    if device == "gpu":
        import torch

        return torch.cuda.synchronize  # sync point: the timer must not stop before the GPU work does
    return lambda: None


def close(iterator) -> None:
    """Close an iterator so that its DALI worker processes exit before the next measurement."""
    if hasattr(iterator, "close"):
        iterator.close()
    del iterator
    gc.collect()
    time.sleep(0.2)
