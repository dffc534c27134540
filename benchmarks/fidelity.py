"""Do the methods learn motion where appearance misleads? Controls, supervised, random, SimCLR, MoQuad, MCPNet, ablations.

Each row is pre-trained with ``train.py`` on the train split of the fidelity videos
(:mod:`benchmarks.fidelity_data`: every scene in every motion class, in both splits) at the
same budget — steps × batch — for every seed, then evaluated with ``eval.py retrieval`` and
``eval.py linear`` (test videos query / are classified against the train videos). A test
video's look-alikes are its own scene's videos of every class, so appearance scores at
chance and only motion above it. The table carries its own calibration: a hand-made
motion descriptor (it must score high: the task is solvable from motion), the colours of
one frame (at chance: appearance does not decide), and the tiny network trained on the
labels (:mod:`benchmarks.controls`).

    python -m benchmarks.fidelity                        # main rows and controls, 3 seeds (about an hour on 2 cores)
    python -m benchmarks.fidelity --rows moquad_ablations --seeds 0
    python -m benchmarks.fidelity --rows all --markdown benchmarks/FIDELITY.md
    python -m benchmarks.fidelity --list                 # the rows and what each changes

Every run lives in ``--out/<row>/seed<k>/`` with its log (``train/`` is train.py's run folder); a run whose ``result.json``
exists is not run again, so an interrupted benchmark continues where it stopped and
rows can be added later. Such a run counts only while its row still runs what made it
(the training config train.py recorded, the command lines: :func:`benchmarks.fidelity_runs.stale`):
after a config file or a row changed, ``--cached`` leaves those seeds out of the table and
names them, and a run refuses to go on in that ``--out`` — run the row into a new one.
One run at a time writes an ``--out`` (a lock in it, held while the run lasts): a second would run the
same cells and take a cell the first is writing for an interrupted one. Trainings elsewhere on the
machine are named before anything runs: on a few cores two at once each run many times slower.
The table (mean ± sample standard deviation over seeds) is printed and written to
``--out/fidelity.json`` and ``fidelity.md`` (and ``--markdown``).

The rows are :mod:`benchmarks.fidelity_rows`, the runs and their cache :mod:`benchmarks.fidelity_runs`,
the table and the report :mod:`benchmarks.fidelity_report`; this module is the command.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List

if __package__ in (None, ""):  # run as a file: the repository root is the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The rows, the runs and the report; what this module does not use itself is re-exported under the command's name.
from benchmarks.fidelity_report import (KEEP, direction, directions_table, paired, report, summarise,  # noqa: E402,F401
                                        table, write_report)
from benchmarks.fidelity_rows import GROUPS, ROWS, Row, select  # noqa: E402,F401
from benchmarks.fidelity_runs import CONTROLS, commands, refuse_stale, run_one, stale_line  # noqa: E402,F401
from motionssl.pipelines.files import FolderError, FolderLock  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=["main"],
                   help=f"groups ({', '.join(GROUPS)}, all) or row names, comma- or space-separated (default: main)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1200, help="optimiser steps per run (default 1200)")
    p.add_argument("--batch-size", type=int, default=32, help="videos per step (default 32)")
    p.add_argument("--num-clips", type=int, default=5, help="evaluation clips per video (default 5)")
    p.add_argument("--data", help="fidelity dataset folder (default: generated into the cache)")
    p.add_argument("--scenes", type=int, default=16, help="scenes when generating (default 16)")
    p.add_argument("--one-speed", action="store_true", help="when generating: every video of a class at one speed "
                   "(benchmarks/fidelity_data.py); keep its runs apart with --out")
    p.add_argument("--unpaired", action="store_true", help="when generating: eight classes of which none is "
                   "another's motion reversed (benchmarks/fidelity_data.py); keep its runs apart with --out")
    p.add_argument("--per-class", type=int, default=4,
                   help="videos per scene and class when generating, three in four of them train (default 4)")
    p.add_argument("--out", default=os.path.join("runs", "fidelity"), help="folder of the runs and the table")
    p.add_argument("--markdown", help="also write the Markdown report here (e.g. benchmarks/FIDELITY.md)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="train.py overrides applied to every trained row (kept apart in --out by the caller)")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    p.add_argument("--cached", action="store_true",
                   help="run nothing: tabulate the runs already in --out (rows without any are shown empty)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.num_clips < 1 or not args.seeds:
        p.error("--steps, --batch-size and --num-clips must be >= 1, and --seeds needs at least one seed")
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    rows = select(args.rows)
    if args.list:
        for r in ROWS.values():
            print(f"{r.name:26s} {r.group:17s} {r.what}")
        return {}
    from benchmarks import fidelity_data
    data = args.data or fidelity_data.generate(scenes=args.scenes, per_class=args.per_class, one_speed=args.one_speed,
                                               unpaired=args.unpaired)
    data = os.path.abspath(data)
    if not os.path.exists(os.path.join(data, "train.txt")):
        raise SystemExit(f"fidelity: {data} has no train.txt; give a folder written by benchmarks.fidelity_data")
    args.out = os.path.abspath(args.out)
    if not args.cached:
        refuse_stale(rows, args, data)  # before anything runs (and before the lock: a refused run writes nothing)
    if args.cached or args.dry_run:  # nothing is run: no lock, so a running benchmark's table can be read meanwhile
        return _main(args, rows, data)
    try:  # released when the run ends, however it ends
        lock = FolderLock(args.out).acquire()  # names this run by its command line, rows and seeds included
    except FolderError as exc:
        raise SystemExit(f"fidelity: {exc} (one fidelity run per --out)") from None
    for line in other_trainings():
        print(f"warning: {line}", flush=True)
    try:
        return _main(args, rows, data)
    finally:
        lock.release()


TRAINING = ("train.py", "eval.py", "benchmarks.fidelity", "benchmarks.throughput")  # what fills the cores


def other_trainings() -> List[str]:
    """One line per process outside this one's family that trains, evaluates or benchmarks (its pid and command).

    On a machine of a few cores a second training makes both many times slower (their
    thread pools wait on each other), so the timing column and the run's length suffer.
    """
    try:
        import psutil
    except ImportError:  # an optional check
        return []
    me = psutil.Process()
    family = {me.pid, *(p.pid for p in me.parents())}
    lines = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if p.info["pid"] in family or not any(any(t in part for t in TRAINING) for part in cmd[1:3]):
            continue
        lines.append(f"process {p.info['pid']} ({' '.join(cmd)[:120]}) is running too: the cores are shared "
                     "and both runs will be slower; the train s column will not be comparable")
    return lines


def _main(args, rows, data: str) -> Dict:
    """The rows' runs (or the cached ones) and the table; :func:`main` has checked the data and the folder."""
    start = time.time()
    results: Dict[str, List[Dict]] = {}
    for r in rows:
        results[r.name] = []
        stale = {}
        for seed in args.seeds:
            if not args.cached:
                print(f"{r.name} seed {seed} ...", flush=True)
            res = run_one(r, seed, args, data)
            if "stale" in res:  # --cached: made with another setting than the row's now
                stale[seed] = res["stale"]
                continue
            if res or not args.cached:
                results[r.name].append(res)
            if res and "failed" not in res:
                got = (f"retrieval {res['retrieval_top1']:.1f}/{res['retrieval_top5']:.1f}  "
                       if res.get("retrieval_top1") is not None else "")
                print(f"  {got}linear {res['linear_top1']:.1f}  ({res['train_seconds']:.0f} s training)", flush=True)
        if stale:
            print(stale_line(r.name, stale), flush=True)
    if args.dry_run:
        return {}
    summary = {name: summarise(rs) for name, rs in results.items()}
    print()
    print(table(rows, summary))
    record = {"data": data, "steps": args.steps, "batch_size": args.batch_size, "seeds": args.seeds,
              "num_clips": args.num_clips, "set": args.set, "summary": summary, "runs": results}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fidelity.json"), "w") as f:
        json.dump(record, f, indent=2)
    text = report(args, rows, results, data, time.time() - start)
    for path in filter(None, (os.path.join(args.out, "fidelity.md"), args.markdown)):
        write_report(path, text)
    print(f"\nwrote {os.path.join(args.out, 'fidelity.json')} and fidelity.md" +
          (f" and {args.markdown}" if args.markdown else ""))
    return record


if __name__ == "__main__":
    main()
