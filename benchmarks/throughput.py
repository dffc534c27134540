"""Throughput of the DALI pipelines against the peer loader, the reference loader and the decode ceiling.

For each pipeline (``decode`` = the window source alone, ``simclr``, ``mcpnet``, ``moquad``)
it measures, on the same files and the same sampled windows:

* the **peer loader** (:mod:`benchmarks.peer`), once per frame decoder: what a PyTorch user
  would write instead — a ``DataLoader`` whose ``--workers`` processes decode with PyAV (or
  torchcodec) and build the same clips with ``torchvision.transforms.v2.functional`` on
  uint8 tensors; on GPU the workers decode and the clips are built on the GPU;
* the DALI pipeline through :func:`pipelines.make_iterator`, once per decoder
  (``pyav``: PyAV worker processes feed the graph; ``torchcodec``: the same with
  torchcodec; ``dali``: ``fn.decoders.video``, on CPU libavcodec (VP8/VP9/MJPEG only), on
  GPU NVDEC);
* the reference loader (:func:`pipelines.reference_loader.reference_loader`): a PyTorch
  ``DataLoader`` with ``--workers`` processes building the same batch contract with PyAV +
  the NumPy oracle — slow and readable, written for correctness;
* the decode ceiling of each frame decoder: one thread decoding the same windows (open,
  seek, decode, convert to RGB), measured single-threaded and multiplied by the cores
  used — the most any CPU loader can reach with that decoder. It is computed from the
  process's CPU time (wall time is kept too): on a shared machine wall time includes
  waiting for a core and would lower the ceiling, and CPU time spent on helper threads
  would be missed by the thread's own clock. A method's clips rarely read every frame of
  the window, and the pipeline's workers convert and hand over only those they read
  (every frame up to the last is still decoded): ``ceiling[d; read]`` decodes the same
  windows that way and is the ceiling the pipeline is judged by; ``ceiling[d]`` converts
  every frame, as both did before (``vs win``: the ratio to it, for earlier figures).

torchcodec rows appear when torchcodec and FFmpeg's shared libraries are installed
(``pip install torchcodec`` and ``apt-get install ffmpeg``); the script says so when not.

Wall-clock figures of the loaders do suffer from other processes; the ``others`` column
shows the largest share of the machine's CPU that other processes took during a repeat
(``--wait-idle`` waits for a quiet moment before each measurement).

Definitions (also printed): a *window* is the ``W`` consecutive frames decoded per sample
(one per video); **decoded frames/s = windows/s × W**; **clips/s = windows/s ×
clips per sample** (e.g. 4 for the MoQuad quadruple); ratios are of windows/s (equal to the
ratios of decoded frames/s, as W is shared). ``vs peer`` divides by the peer loader with
the same decoder (PyAV's for DALI's decoder), ``vs ceil`` by the ceiling of the same
decoder (PyAV's for DALI's decoder; ``; read`` where the method names the frames it reads),
``vs win`` by its whole-window ceiling. Every figure is the median over ``--repeats`` runs
of ``--batches`` batches after ``--warmup`` batches (8: the build, the workers' start, the
batches served from the queues filled meanwhile and the process's first-touch growth
excluded; with 1–2 a pipeline's figure depended on what had run before it in the process,
:data:`benchmarks.common.WARMUP_BATCHES`). On GPU every timed interval starts and ends with
``torch.cuda.synchronize()``.

    python -m benchmarks.make_data                   # once: benchmarks/data/{vp9,h264}
    python -m benchmarks.throughput --device cpu     # about 15 minutes on 2 cores
    python -m benchmarks.throughput --device gpu     # H.264 through NVDEC, 16 workers
    python -m benchmarks.throughput --quick          # a few minutes: each method's ratio to the ceiling and peer

Each method is measured at its paper configuration's clip size (MoQuad and SimCLR 224²,
MCPNet 112²) and SimCLR also at 112² (:func:`benchmarks.common.clip_sizes`; ``--size``
measures one size for all), printed in the header. ``--quick`` is the check to run before
and after a change to ``pipelines/ops``, ``pipelines/decoders``, ``pipelines/sources.py``
or the decoding workers: PyAV workers only, the PyAV peer loader, no reference loader,
3 repeats of 3 batches after the same warm-up, and one short table of each method's ratio to
the decode ceiling and to the peer (compare two runs by their ``cpu ms/w`` too on a busy machine).

``--profile`` adds a cost split per sample (decode, planner draws, DALI graph, iterator
hand-off) measured in isolation (:mod:`benchmarks.cost_split`); ``--operators`` counts the
DALI operators of each method's graph. RESULTS.md explains how to read them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import List

if __package__ in (None, ""):  # run as a file (python benchmarks/throughput.py): the repository root is the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    HERE,
    WARMUP_BATCHES,
    clip_sizes,
    default_data,
    describe,
    environment,
    load_average,
    methods,
    pipeline_config,
    replicate,
    wait_for_idle,
    warn_if_busy,
)
from benchmarks.producers import (  # noqa: E402
    measure_ceiling,
    measure_peer,
    measure_pipeline,
    measure_reference,
    operator_counts,
    timed_windows,
)
from benchmarks.cost_split import profile  # noqa: E402
from benchmarks.throughput_tables import print_quick, print_table, sizes_line, table_rows  # noqa: E402
from motionssl.pipelines.decoders import frame_decoders  # noqa: E402  (decoders in loader workers)
from motionssl.pipelines.decoders.dali import DALI_CPU_CODECS  # noqa: E402
from motionssl.pipelines.decoders.torchcodec import torchcodec_available  # noqa: E402
from motionssl.pipelines.index import load_index  # noqa: E402
from motionssl.pipelines.pipeline import usable_cores  # noqa: E402
from motionssl.pipelines.video_io import header  # noqa: E402

FRAME_DECODERS = frame_decoders()  # the peer's and the ceilings' decoders
ALL_PIPELINES = ("decode",) + methods()
PIPELINE_DECODERS = ("pyav", "torchcodec", "dali")
ORDER = ("peer", "pipeline", "reference", "ceiling")  # table order: what users would pick instead comes first
FRAMES_DEFINITION = "decoded frames/s = windows decoded per second x window length W"


# --- the run -------------------------------------------------------------------------------------------
def summarise(row: dict, batch_size: int, per_repeat: int) -> dict:
    """Median rates from the per-repeat seconds."""
    count = batch_size * per_repeat
    rates = [count / s for s in row["seconds"]]
    windows_per_s = statistics.median(rates)
    if row["producer"].startswith("ceiling"):
        # One thread measured, times the cores used. From CPU time: on a shared machine its
        # wall time includes waiting for a core, which would lower the ceiling and flatter
        # the pipeline; CPU time is what one free core delivers.
        row["windows_per_s_wall"] = windows_per_s * row["cores"]
        windows_per_s = statistics.median(count / s for s in row["cpu_seconds"]) * row["cores"]
    row["windows_per_s"] = windows_per_s
    # CPU cost per window (this process and its workers; for the ceiling, the decoding loop): a
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
    media = header(base.paths[0])
    height, width, codec = media.height, media.width, media.codec
    # One epoch covers the warm-up, every repeat and the prefetch that runs ahead of them.
    need = (args.warmup + args.repeats * args.batches + 4) * args.batch_size
    index = replicate(base, need)
    runs = [(name if i == 0 else f"{name}@{size}", name, size)
            for name in args.pipelines for i, size in enumerate([args.size] if args.size else clip_sizes(name))]
    result = {"environment": env, "definition": FRAMES_DEFINITION, "quick": args.quick,
              "clip_sizes": {label: size for label, _, size in runs}, "data": os.path.abspath(data),
              "videos": len(base), "resolution": [width, height], "codec": codec, "batch_size": args.batch_size,
              "workers": args.workers, "threads": args.threads, "cores": args.cores, "warmup": args.warmup,
              "batches": args.batches, "repeats": args.repeats, "seed": args.seed, "wait_idle": args.wait_idle,
              "pipelines": {}}
    print(describe(env))
    print(sizes_line(result["clip_sizes"]))
    warn_if_busy(args.cores)
    print(f"data: {len(base)} videos {width}x{height} {codec} ({data}); batch {args.batch_size}, "
          f"{args.workers} workers, {args.threads} DALI threads, {args.cores} cores; "
          f"median of {args.repeats} x {args.batches} batches after {args.warmup} warm-up", flush=True)
    for label, name, size in runs:
        result["pipelines"][label] = entry = measure_method(args, label, name, size, index, media)
        if not args.quick:
            print(table_rows(label, entry), flush=True)
    return result


def measure_method(args, label: str, name: str, size, index, media) -> dict:
    """Every producer of one method at one clip size — the peer loaders, the pipeline per decoder, the reference
    loader, the decode ceilings — compared; its operator counts and cost split when asked."""
    load_before = load_average()
    config = pipeline_config(name, args.frames, size)
    rows = []
    for decoder in args.peer_decoders:
        wait_for_idle(args.wait_idle)
        rows.append(measure_peer(args, name, index, config, decoder))
        print(f"  {label}: peer[{decoder}] done", flush=True)
    for decoder in args.decoders:
        if decoder == "dali" and args.device == "cpu" and media.codec not in DALI_CPU_CODECS:
            print(f"  {name}: pipeline[dali] skipped: DALI's CPU decoder does not read {media.codec} "
                  f"(use VP9 data, benchmarks/data/vp9)")
            continue
        wait_for_idle(args.wait_idle)
        rows.append(measure_pipeline(args, name, index, config, decoder))
        print(f"  {label}: pipeline[{decoder}] done", flush=True)
    if not args.no_reference:
        wait_for_idle(args.wait_idle)
        rows.append(measure_reference(args, name, index, config))
        print(f"  {label}: reference done", flush=True)
    window = rows[0]["window"] if rows else None
    if window is not None:
        for decoder in args.ceilings:
            for read in (False, True):
                wait_for_idle(args.wait_idle)
                rows.append(measure_ceiling(args, name, index, config, window, decoder, read=read))
    rows = [r for r in rows if r is not None]
    rows = [summarise(r, args.batch_size, args.batches) for r in rows]
    compare(rows)
    entry = {"method": name, "config": config, "frames_per_clip": args.frames if name != "decode" else None,
             "size": size if name != "decode" else [media.height, media.width], "window": window, "results": rows,
             "load_average": {"before": load_before, "after": load_average()}}
    if args.operators and name != "decode":
        entry["operators_per_batch"] = operator_counts(name, index, config, args.batch_size)
    if args.profile:
        wait_for_idle(args.wait_idle)
        plan = timed_windows(args, name, index, config, first=0, repeats=1, per_repeat=max(2, args.batches))
        entry["profile"] = p = profile(args, name, index, config, plan[0])
        ceiling = next((r for r in rows if r["producer"] == "ceiling[pyav; read]"), None) or next(
            (r for r in rows if r["producer"] == "ceiling[pyav]"), None)
        if ceiling and ceiling.get("cpu_ms_per_window"):
            # The graph against the decode ceiling's CPU per window (the same clock, the
            # timed windows): the figure the CPU graph is judged by.
            p["graph_per_ceiling_decode"] = 1e3 * p["cpu"]["graph_1thread"] / ceiling["cpu_ms_per_window"]
    return entry


def _frame_decoder(row: dict) -> str:
    """The decoder whose peer and ceiling a row is compared with (PyAV's for DALI's decoder)."""
    decoder = row["decoder"].split(",")[0]
    return decoder if decoder in FRAME_DECODERS else "pyav"


def compare(rows: List[dict]) -> None:
    """Ratios of every row: vs the reference, the peer and the ceiling with the same frame decoder."""
    by = {r["producer"]: r for r in rows}
    ref = by.get("reference")
    for r in rows:
        peer = by.get(f"peer[{_frame_decoder(r)}]") or by.get("peer[pyav]")
        window = by.get(f"ceiling[{_frame_decoder(r)}]") or by.get("ceiling[pyav]")
        ceiling = by.get(f"ceiling[{_frame_decoder(r)}; read]") or by.get("ceiling[pyav; read]") or window
        r["vs_reference"] = r["windows_per_s"] / ref["windows_per_s"] if ref else None
        r["vs_peer"] = r["windows_per_s"] / peer["windows_per_s"] if peer else None
        r["vs_ceiling"] = r["windows_per_s"] / ceiling["windows_per_s"] if ceiling else None
        r["vs_window_ceiling"] = r["windows_per_s"] / window["windows_per_s"] if window else None
    rows.sort(key=lambda r: ORDER.index(r["producer"].split("[")[0]))


QUICK = {"decoders": ["pyav"], "peer_decoders": ["pyav"], "batches": 3, "repeats": 3}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--data", default=None, help="a `path label` list (default: benchmarks/data/vp9/list.txt "
                                                     "on cpu, benchmarks/data/h264/list.txt on gpu; made if missing)")
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes: the methods with PyAV workers against the PyAV peer loader and the "
                             "decode ceiling (no reference loader), 3 repeats of 3 batches, one short table; run it "
                             "before and after a change to pipelines/ops, pipelines/decoders, pipelines/sources.py "
                             "or the workers")
    parser.add_argument("--pipelines", nargs="+", default=None, choices=ALL_PIPELINES,
                        help="what to measure (default: all; with --quick the methods)")
    parser.add_argument("--decoders", nargs="+", default=None, choices=PIPELINE_DECODERS,
                        help="pipeline decoders (default: pyav, torchcodec where installed, and dali on cpu; "
                             "dali on gpu)")
    parser.add_argument("--peer-decoders", nargs="*", default=None, choices=FRAME_DECODERS + ("torchcodec-cuda",),
                        help="peer-loader decoders (default: pyav, and torchcodec where installed, on gpu also "
                             "torchcodec-cuda: its CUDA decoder in the main process)")
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
                        help="clip size (default: each method's paper configuration's)")
    parser.add_argument("--warmup", type=int, default=WARMUP_BATCHES,
                        help="untimed batches first, past the loaders' start (at least 1)")
    parser.add_argument("--batches", type=int, default=None,
                        help="timed batches per repeat (default 4, with --quick 3)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference loader")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer loader")
    parser.add_argument("--operators", action="store_true", help="count the DALI operators of each method graph")
    parser.add_argument("--profile", action="store_true", help="add the per-sample cost split")
    parser.add_argument("--wait-idle", type=float, default=0.0,
                        help="on a shared machine: before each measurement wait up to this many seconds until "
                             "other processes use < 10%% of the CPU")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/throughput-<device>.json)")
    return parser


def parse_args(argv=None):
    """The options, with the defaults that depend on the device, ``--quick`` and what is installed filled in."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        args.no_reference = True
    args.pipelines = args.pipelines or list(methods() if args.quick else ALL_PIPELINES)
    args.batches = 4 if args.batches is None else args.batches
    cores = usable_cores()
    args.batch_size = args.batch_size or (32 if args.device == "gpu" else 8)
    args.workers = args.workers if args.workers is not None else (16 if args.device == "gpu" else cores)
    args.threads = args.threads or min(8, cores)
    args.cores = args.cores or cores
    why_not = torchcodec_available()
    if why_not:
        print(f"torchcodec rows skipped: {why_not}")
    extra = [] if why_not else ["torchcodec"]
    asked = (args.decoders or []) + (args.peer_decoders or [])
    if "torchcodec" in asked and why_not:
        parser.error(f"--decoders/--peer-decoders torchcodec: {why_not}")
    args.decoders = args.decoders or (["dali"] if args.device == "gpu" else ["pyav"] + extra + ["dali"])
    if "torchcodec-cuda" in asked and args.device != "gpu":
        parser.error("--peer-decoders torchcodec-cuda needs --device gpu")
    if args.no_peer:
        args.peer_decoders = []
    elif args.peer_decoders is None:
        args.peer_decoders = ["pyav"] + extra + (["torchcodec-cuda"] if extra and args.device == "gpu" else [])
    # One ceiling per frame decoder in use (DALI's decoder is compared with PyAV's ceiling).
    args.ceilings = ["pyav"] + [d for d in FRAME_DECODERS[1:] if d in args.decoders + args.peer_decoders]
    args.warmup = max(1, args.warmup)
    args.out = args.out or os.path.join(HERE, f"throughput-{args.device}{'-quick' if args.quick else ''}.json")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = run(args)
    result["command"] = "python -m benchmarks.throughput " + " ".join(sys.argv[1:] if argv is None else argv)
    (print_quick if args.quick else print_table)(result)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
