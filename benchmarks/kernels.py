"""CPU time per clip of the fused clip kernels, one thread, against another checkout's kernels in the same run.

Each kernel of ``pipelines/ops/_kernels.py`` (plain RGB, RAD, residual) builds a 16-frame
clip at 112² and 224² from a textured 320×240 window, with a crop of about half the frame
and a drawn colour jitter, as the methods' clips are; the figure is the best of
``--repeats`` CPU times (the process's clock: waiting for a core is left out). With
``--against DIR`` the kernels of the checkout ``DIR`` (its ``pipelines/`` folder) are timed
too, interleaved with these, and the table gives the ratio::

    python -m benchmarks.kernels                         # this checkout's kernels
    python -m benchmarks.kernels --against ../old-tree   # and the ratio to an older checkout's

The residual clip subtracts partners 4 steps later at speed 2 (MCPNet's ``t = 4``). A
kernel that takes the RAD noise as a finished mosaic (before the mosaic moved into the
kernel) is handed one built beforehand: its figure then leaves out the mosaic's DALI
operators, which :mod:`benchmarks.cost_split` counts with the rest of the graph.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ""):  # run as a script: the checkout's root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FRAMES, SPEED, GAP = 16, 2, 4
ROI = (10.0, 20.0, 200.0, 250.0)  # y0, x0, y1, x1 of a 240×320 frame: about half of it, not square


def load(root: str = ""):
    """The ``_kernels`` module of this checkout, or of the checkout ``root`` (its ``pipelines/`` as a package)."""
    if not root:
        return importlib.import_module("motionssl.pipelines.ops._kernels")
    pipelines = os.path.join(os.path.abspath(root), "pipelines")
    if not os.path.isfile(os.path.join(pipelines, "ops", "_kernels.py")):
        raise SystemExit(f"kernels: error: --against {root}: no pipelines/ops/_kernels.py there; give a checkout's root")
    if "against_pipelines.ops._kernels" in sys.modules:  # loaded once per process
        return sys.modules["against_pipelines.ops._kernels"]
    holder = tempfile.mkdtemp(prefix="kernels-against-")
    os.symlink(pipelines, os.path.join(holder, "against_pipelines"))
    sys.path.insert(0, holder)
    # A Numba cache of its own: the checkout's cache, written when its kernels ran under their
    # own module name, would rebuild them against that module (this checkout's, when the name
    # is the same) and crash. Compiled afresh here (10–25 s).
    from numba.core import config

    saved, config.CACHE_DIR = config.CACHE_DIR, os.path.join(holder, "numba-cache")
    try:
        return importlib.import_module("against_pipelines.ops._kernels")
    finally:
        config.CACHE_DIR = saved


def inputs(k, size: int, rng: np.random.Generator) -> dict:
    """A window, a parameter pack and the index lists of one clip for the kernels ``k``."""
    noisy = rng.integers(0, 256, (FRAMES * SPEED + GAP * SPEED, 240, 320, 3), dtype=np.uint8)
    window = ((noisy.astype(np.uint16) + np.roll(noisy, 1, axis=2)) // 2).astype(np.uint8)  # some texture
    pack = np.zeros(k.PACK_LENGTH, np.float32)
    at = k.OFFSETS
    pack[at["colour"]:at["colour"] + 4] = (1.1, 0.9, 1.2, 10.0)
    pack[at["mean"]:at["mean"] + 3] = (110.0, 100.0, 90.0)
    pack[at["std"]:at["std"] + 3] = (60.0, 58.0, 57.0)
    pack[at["lam"]] = 0.3
    inside = "grid" in at  # the kernel builds the RAD mosaic itself from the lender's frame
    if inside:
        pack[at["grid"]] = 5
    clip = (np.arange(FRAMES) * SPEED).astype(np.int32)
    return {"window": window, "pack": pack, "roi": np.array(ROI, np.float32), "clip": clip,
            "pairs": np.concatenate([clip, clip + GAP * SPEED]).astype(np.int32),
            "noise": window[3:4] if inside else rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8),
            "out": np.empty((3, FRAMES, size, size), np.float32)}


def jobs(k, size: int, rng):
    """``{kernel: a call building one clip}``."""
    a = inputs(k, size, rng)
    return {"rgb": lambda: k._rgb_kernel(a["out"], a["clip"], a["window"], a["roi"], a["pack"], a["window"][:1],
                                         k.PLAIN),
            "rad": lambda: k._rgb_kernel(a["out"], a["clip"], a["window"], a["roi"], a["pack"], a["noise"], k.MOSAIC),
            "residual": lambda: k._residual_kernel(a["out"], a["pairs"], a["window"], a["roi"], a["pack"])}


def cpu_ms(call) -> float:
    start = time.process_time()
    call()
    return 1e3 * (time.process_time() - start)


def measure(modules: dict, sizes, repeats: int) -> dict:
    """``{(kernel, size): {name: best CPU ms}}``, the modules' calls interleaved repeat by repeat."""
    out = {}
    for size in sizes:
        calls = {name: jobs(k, size, np.random.default_rng(0)) for name, k in modules.items()}
        for kernel in next(iter(calls.values())):
            for job in calls.values():
                job[kernel]()  # compiled or loaded from the cache, buffers touched
            best = {name: float("inf") for name in calls}
            for _ in range(repeats):
                for name, job in calls.items():
                    best[name] = min(best[name], cpu_ms(job[kernel]))
            out[(kernel, size)] = best
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--against", default="", help="another checkout's root: time its kernels too, interleaved")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--repeats", type=int, default=15, help="runs per kernel; the best counts")
    args = parser.parse_args(argv)
    if args.repeats < 1 or any(s < 8 for s in args.sizes):
        parser.error("--repeats must be >= 1 and every --sizes value >= 8")
    modules = {"this": load()}
    if args.against:
        modules["against"] = load(args.against)
    result = measure(modules, args.sizes, args.repeats)
    head = f"{'kernel':<10}{'size':>6}{'this ms':>10}" + (f"{'against ms':>12}{'speed-up':>10}" if args.against else "")
    print(f"CPU ms per {FRAMES}-frame clip, one thread, best of {args.repeats}\n{head}")
    for (kernel, size), best in result.items():
        line = f"{kernel:<10}{size:>6}{best['this']:>10.2f}"
        if args.against:
            line += f"{best['against']:>12.2f}{best['against'] / best['this']:>9.2f}x"
        print(line)
    return result


if __name__ == "__main__":
    main()
