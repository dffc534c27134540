"""Data stall: how much of the training step rate data loading costs (nanoGPT ``bench.py`` habit).

The same training loop — forward, backward and optimiser step of
``models.methods.create_method(name, backbone=...)`` with ``models.optim.build_optimizer`` —
runs twice:

* **real**: fed by the method's DALI pipeline (``pipelines.make_iterator``);
* **synthetic**: fed one batch taken from that pipeline, cloned, already on the device,
  reused every step — same keys, shapes and dtypes, zero loading cost.

    stall = 1 − steps/s (real) / steps/s (synthetic)

Near 0 means the loader keeps up; on a 2-core CPU the loader and the model share the
cores, so the stall there measures that contention, not the GPU target (≤ 2 % for MoQuad
R3D-18 at 224² and MCPNet R3D-18 at 112² on one H100).

    python -m benchmarks.data_stall --device cpu --pipeline simclr
    python -m benchmarks.data_stall --device gpu --pipeline moquad --backbone r3d_18 --size 224
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, Iterator

import torch

if __package__ in (None, ""):  # run as a file (python benchmarks/data_stall.py): the repository root is the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    HERE,
    OtherLoad,
    close,
    default_data,
    describe,
    environment,
    load_average,
    methods,
    paper_settings,  # noqa: E402
    pipeline_config,
    replicate,
    synchronizer,
    wait_for_idle,
    warn_if_busy,
)
from benchmarks.decode_only import build_iterator  # noqa: E402
from motionssl.models.methods import create_method  # noqa: E402
from motionssl.models.optim import build_optimizer  # noqa: E402
from motionssl.pipelines.decoders import DECODERS  # noqa: E402
from motionssl.pipelines.index import load_index  # noqa: E402
from motionssl.pipelines.pipeline import usable_cores  # noqa: E402


def make_step(method: torch.nn.Module, optimizer: torch.optim.Optimizer, device: str, amp: bool) -> Callable:
    """One training step on a batch dict; launches GPU work and returns without waiting for it."""
    def autocast():
        if amp and device == "gpu":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(batch: Dict[str, torch.Tensor]) -> None:
        with autocast():
            out = method(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        # No loss.item() here: it would be a CPU–GPU sync point every step and hide the
        # overlap of loading with compute that this benchmark is about.

    return step


def time_steps(step: Callable, batches: Iterator, warmup: int, steps: int, repeats: int, sync) -> dict:
    """Seconds per repeat of ``steps`` steps after ``warmup`` untimed ones, and the others' CPU share."""
    for _ in range(warmup):
        step(next(batches))
    seconds, other = [], []
    for _ in range(repeats):
        with OtherLoad() as load:
            sync()  # sync point: start the clock with the GPU idle
            start = time.perf_counter()
            for _ in range(steps):
                # next() on the DALI iterator may wait for the pipeline (a CPU-side wait, not a
                # device sync); its GPU outputs are already on the device, so no copy here.
                step(next(batches))
            sync()  # sync point: stop the clock only when the last step has finished on the GPU
            seconds.append(time.perf_counter() - start)
        other.append(load.fraction)
    return {"seconds": seconds, "other_load": other}


def build_method(args):
    torch.manual_seed(args.seed)
    method = create_method(args.pipeline, backbone=args.backbone, gather=False)
    method = method.to("cuda" if args.device == "gpu" else "cpu").train()
    paper = paper_settings(args.pipeline)  # the paper's optimiser and learning-rate rule
    return method, build_optimizer(paper["optim"], method, lr=paper["paper_lr"](args.batch_size),
                                   weight_decay=paper["weight_decay"])


def run(args) -> dict:
    env = environment(args.device)
    env["torch_threads"] = torch.get_num_threads()
    data = args.data or default_data(args.device)
    base = load_index(data)
    size = args.size or paper_settings(args.pipeline)["size"]
    config = pipeline_config(args.pipeline, args.frames, size)
    sync = synchronizer(args.device)
    options = dict(decoder=args.decoder, num_workers=args.workers, num_threads=args.threads)
    print(describe(env))
    warn_if_busy(usable_cores())
    env["load_average_before"] = load_average()
    print(f"{args.pipeline} with {args.backbone}, {args.frames} frames at {size}x{size}, batch {args.batch_size}, "
          f"{args.workers} workers, {args.threads} DALI threads, {env['torch_threads']} torch threads", flush=True)

    # Synthetic: one real batch, cloned (it must outlive the iterator), reused every step.
    # The iterator is closed first, so its worker processes do not compete for the cores.
    it = build_iterator(args.pipeline, replicate(base, args.batch_size), args.batch_size, args.device, args.seed,
                        config, **options)
    batches = iter(it)
    batch = {k: v.clone() for k, v in next(batches).items()}
    batches.close()
    close(it)
    shapes = {k: [list(v.shape), str(v.dtype), str(v.device)] for k, v in batch.items()}
    method, optimizer = build_method(args)
    wait_for_idle(args.wait_idle)
    synthetic = time_steps(make_step(method, optimizer, args.device, args.amp), itertools.repeat(batch),
                           args.warmup, args.steps, args.repeats, sync)
    print(f"  synthetic done: {statistics.median(synthetic['seconds']):.2f} s per {args.steps} steps", flush=True)
    del method, optimizer, batch

    # Real: the pipeline, one epoch long enough for the warm-up and every repeat.
    index = replicate(base, (args.warmup + args.repeats * args.steps + 4) * args.batch_size)
    it = build_iterator(args.pipeline, index, args.batch_size, args.device, args.seed, config, **options)
    method, optimizer = build_method(args)
    wait_for_idle(args.wait_idle)
    batches = iter(it)
    real = time_steps(make_step(method, optimizer, args.device, args.amp), batches, args.warmup, args.steps,
                      args.repeats, sync)
    batches.close()
    close(it)

    env["load_average_after"] = load_average()
    rate = {k: statistics.median(args.steps / s for s in v["seconds"])
            for k, v in (("real", real), ("synthetic", synthetic))}
    stall = 1.0 - rate["real"] / rate["synthetic"]
    return {"environment": env, "pipeline": args.pipeline, "backbone": args.backbone, "config": config,
            "frames_per_clip": args.frames, "size": size, "batch_size": args.batch_size, "workers": args.workers,
            "threads": args.threads, "decoder": args.decoder or ("dali" if args.device == "gpu" else "pyav"),
            "amp": bool(args.amp and args.device == "gpu"), "steps": args.steps, "warmup": args.warmup,
            "repeats": args.repeats, "data": os.path.abspath(data), "batch": shapes,
            "seconds": {"real": real["seconds"], "synthetic": synthetic["seconds"]},
            "other_load": {"real": real["other_load"], "synthetic": synthetic["other_load"]},
            "steps_per_s_real": rate["real"],
            "steps_per_s_synthetic": rate["synthetic"], "stall_percent": 100.0 * stall}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--pipeline", choices=methods(), default=methods()[-1])
    parser.add_argument("--backbone", default=None, help="default: tiny on cpu, r3d_18 on gpu")
    parser.add_argument("--data", default=None, help="a `path label` list (default: the generated benchmark data)")
    parser.add_argument("--decoder", choices=DECODERS, default=None,
                        help="default: pyav on cpu, dali (NVDEC) on gpu; torchcodec where installed")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 on cpu, 32 on gpu")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=None, help="clip size (default: the method's paper configuration's)")
    parser.add_argument("--workers", type=int, default=None, help="default: the usable cores on cpu, 8 on gpu")
    parser.add_argument("--threads", type=int, default=None, help="DALI threads (default: usable cores, at most 8)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 4 cpu, 50 gpu)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="on gpu, run in float32 "
                                                                          "(default: bfloat16 autocast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wait-idle", type=float, default=0.0,
                        help="on a shared machine: wait up to this many seconds for other processes to use "
                             "< 10%% of the CPU before each loop")
    parser.add_argument("--out", default=None,
                        help="JSON file (default: benchmarks/data_stall-<device>-<pipeline>.json)")
    args = parser.parse_args(argv)
    cores = usable_cores()
    gpu = args.device == "gpu"
    args.backbone = args.backbone or ("r3d_18" if gpu else "tiny")
    args.batch_size = args.batch_size or (32 if gpu else 8)
    args.workers = args.workers if args.workers is not None else (8 if gpu else cores)
    args.threads = args.threads or min(8, cores)
    args.steps = args.steps or (50 if gpu else 4)
    args.out = args.out or os.path.join(HERE, f"data_stall-{args.device}-{args.pipeline}.json")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = run(args)
    result["command"] = "python -m benchmarks.data_stall " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{result['pipeline']} / {result['backbone']}: {result['steps_per_s_real']:.3f} steps/s fed by the "
          f"pipeline, {result['steps_per_s_synthetic']:.3f} steps/s on a reused device batch -> "
          f"stall {result['stall_percent']:.1f} %  (stall = 1 - real / synthetic)")
    loads = [v for v in result["other_load"]["real"] + result["other_load"]["synthetic"] if v is not None]
    if loads:
        print(f"other processes used up to {100 * max(loads):.0f} % of the machine's CPU during a timed repeat")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
