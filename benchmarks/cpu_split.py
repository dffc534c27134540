"""Where a method pipeline's CPU goes while it runs: the decoding workers against the graph's threads.

The throughput benchmark gives one CPU figure per window for a whole pipeline; this splits it
while the pipeline runs (PyAV workers, CPU): the worker processes (decode, draws, DALI's copy
of each sample into shared memory), each thread of the main process (DALI's graph threads,
the Python thread) and the minor page faults of both, per window, next to the decode ceiling's
CPU per window on the same windows (the frames the clips read, as the workers decode them).
Figures come from ``/proc`` (CPU time, so other processes change them little).

    python -m benchmarks.cpu_split --pipeline mcpnet --size 112
    python -m benchmarks.cpu_split --pipeline moquad --size 224 --warmup 40   # further past the first touches
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

if __package__ in (None, ""):
    sys.exit("run it as a module: python -m benchmarks.cpu_split")

from benchmarks.common import WARMUP_BATCHES, default_data, methods, pipeline_config, replicate  # noqa: E402
from benchmarks.decode_only import build_iterator  # noqa: E402
from benchmarks.producers import measure_ceiling  # noqa: E402
from motionssl.pipelines.index import load_index  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu(pid: str, task: str) -> float:
    """CPU seconds of one thread: the scheduler's nanoseconds where the kernel keeps them, else clock ticks."""
    try:
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            return sum(int(v) for v in f.read().rsplit(")", 1)[1].split()[11:13]) / TICK


def _tasks(pid: str) -> list:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:  # a worker that has exited
        return []


def snapshot(workers) -> dict:
    """CPU seconds of the workers and per main-process thread name, and minor faults of each side."""
    threads = collections.Counter()
    for task in _tasks("self"):
        with open(f"/proc/self/task/{task}/comm") as f:
            threads[f.read().strip()] += _cpu("self", task)
    return {"threads": threads, "workers": sum(_cpu(str(p), t) for p in workers for t in _tasks(str(p))),
            "worker_faults": sum(int(_stat(str(p))[7]) for p in workers), "main_faults": int(_stat("self")[7]),
            "wall": time.perf_counter()}


def split(name: str, size: int, batches: int, warmup: int, batch_size: int = 8, workers: int = 2,
          data: str = "", frames: int = 16) -> dict:
    """CPU ms per window of the workers, of each main-process thread, and of the ceiling, over ``batches``."""
    import psutil

    index = replicate(load_index(data or default_data("cpu")), batch_size * (warmup + batches + 4))
    config = pipeline_config(name, frames, size)
    it = build_iterator(name, index, batch_size, "cpu", 0, config, decoder="pyav", num_workers=workers,
                        num_threads=2)
    stream = iter(it)
    for _ in range(warmup):
        next(stream)
    kids = [p.pid for p in psutil.Process().children(recursive=True)]
    before = snapshot(kids)
    for _ in range(batches):
        next(stream)
    after = snapshot(kids)
    stream.close()
    it.close()
    n = batches * batch_size
    per = lambda a, b: 1e3 * (a - b) / n  # noqa: E731
    out = {"pipeline": name, "size": size, "window": it.planner.window, "windows": n,
           "wall_ms": per(after["wall"], before["wall"]), "workers_ms": per(after["workers"], before["workers"]),
           "threads_ms": {t: per(after["threads"][t], before["threads"].get(t, 0.0)) for t in after["threads"]
                          if after["threads"][t] > before["threads"].get(t, 0.0)},
           "worker_faults": (after["worker_faults"] - before["worker_faults"]) / n,
           "main_faults": (after["main_faults"] - before["main_faults"]) / n}
    out["main_ms"] = sum(out["threads_ms"].values())
    out["ceiling_ms"] = ceiling_ms(name, index, config, it.planner.window, batch_size, warmup, batches)
    return out


def ceiling_ms(name, index, config, window, batch_size, warmup, batches) -> float:
    """One thread's CPU ms per window decoding the same windows as the workers do (the frames read)."""
    args = argparse.Namespace(warmup=warmup, repeats=1, batches=batches, batch_size=batch_size, device="cpu", seed=0,
                              cores=1)
    row = measure_ceiling(args, name, index, config, window, read=True) or measure_ceiling(args, name, index, config,
                                                                                        window)
    return 1e3 * row["cpu_seconds"][0] / (batch_size * batches)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", choices=methods(), default="mcpnet")
    parser.add_argument("--size", type=int, default=112, help="clip size (default 112)")
    parser.add_argument("--batches", type=int, default=16, help="batches measured (default 16)")
    parser.add_argument("--warmup", type=int, default=WARMUP_BATCHES,
                        help=f"batches run first (default {WARMUP_BATCHES}, as the throughput benchmark's)")
    parser.add_argument("--data", default="", help="a `path label` list (default: the throughput benchmark's)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    args = parser.parse_args(argv)
    if min(args.batches, args.warmup + 1, args.size, args.frames) < 1:
        parser.error("--batches, --size and --frames must be positive, --warmup at least 0")
    r = split(args.pipeline, args.size, args.batches, args.warmup, data=args.data, frames=args.frames)
    print(f"{r['pipeline']} {r['size']}x{r['size']}, window {r['window']}, {r['windows']} windows after "
          f"{args.warmup} warm-up batches: wall {r['wall_ms']:.1f} ms per window")
    print(f"  decoding workers: {r['workers_ms']:.1f} CPU ms per window ({r['worker_faults']:.0f} minor faults); "
          f"the ceiling's decode of the same frames: {r['ceiling_ms']:.1f}")
    print(f"  main process: {r['main_ms']:.1f} CPU ms per window ({r['main_faults']:.0f} minor faults): "
          + ", ".join(f"{t} {ms:.2f}" for t, ms in sorted(r["threads_ms"].items(), key=lambda kv: -kv[1])))
    total = r["workers_ms"] + r["main_ms"]
    print(f"  in all {total:.1f}: the ceiling's decode / all = {100 * r['ceiling_ms'] / total:.0f} % (the most "
          "this split allows against the ceiling)")
    return r


if __name__ == "__main__":
    main()
