"""Write the embedded demo dataset anywhere: ``python -m motionssl.demo --out DIR``.

The videos, the layout and the cache are :mod:`motionssl.pipelines.demo`'s; this is its
command line: options, one-line errors and exit codes.
"""
from __future__ import annotations

import argparse
import sys
import time

from motionssl.pipelines import demo, environment, files

PROG = "motionssl.demo"
# generate()'s settings as the command line names them.
OPTIONS = {"seed": "--seed", "per_class": "--per-class", "test_per_class": "--test-per-class", "size": "--size",
           "num_frames": "--frames", "workers": "--workers"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the motion-class demo dataset (VP9 .webm).")
    parser.add_argument("--out", default=None, help="folder to write (default: the cache folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    settings = dict(seed=args.seed, per_class=args.per_class, test_per_class=args.test_per_class, size=args.size,
                    num_frames=args.frames, workers=args.workers)
    start = time.time()
    try:
        demo.check_settings(settings, OPTIONS)
        root = demo.generate(args.out, **settings)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was kept", file=sys.stderr)
        raise SystemExit(130) from None
    except (files.FolderError, ValueError, OSError) as exc:
        if environment.debug():
            raise
        raise SystemExit(f"{PROG}: error: {exc}") from None
    print(f"demo dataset in {root} ({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
