"""Time to the first batch, cold (the CPU clip operators compiled) and warm (loaded from Numba's cache).

    python -m benchmarks.first_batch                       # moquad on the demo data, CPU
    python -m benchmarks.first_batch --pipeline simclr --batch-size 8

Each measurement is a fresh Python process, timed from its start to the first batch in its
hands: the imports, the index, the pipeline's build and the first batch — what a user of
``make_iterator`` waits for. *Cold* runs with an empty ``NUMBA_CACHE_DIR``, so the kernels
are compiled; *warm* is a second process on the same cache. The demo data are generated
(once, into the toolkit's cache) before any timing. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import sys, time
start = float(sys.argv[1])
from motionssl.pipelines import make_iterator
loader = make_iterator(sys.argv[2], sys.argv[3], int(sys.argv[4]), split="train", device="cpu", num_workers=2)
next(iter(loader))
print(time.time() - start)
loader.close()
"""


def first_batch(pipeline: str, data: str, batch_size: int, cache: str) -> float:
    """Seconds from a fresh process's start to its first batch, with Numba's cache in ``cache``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", CHILD, repr(time.time()), pipeline, data, str(batch_size)], env=env,
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="moquad")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    from motionssl.pipelines import demo

    data = demo.generate()
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        cold = first_batch(args.pipeline, data, args.batch_size, cache)
        warm = first_batch(args.pipeline, data, args.batch_size, cache)
    result = {"pipeline": args.pipeline, "batch_size": args.batch_size, "cores": os.cpu_count(),
              "cold_s": round(cold, 1), "warm_s": round(warm, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
