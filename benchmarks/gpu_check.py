"""The GPU acceptance check: everything that can only be verified on a GPU, in one command, in minutes.

    python -m benchmarks.gpu_check --out gpu-report            # under 8 min on one H100/H200
    python -m benchmarks.gpu_check --out gpu-report --quick    # under 4 min

Stages, each with its own time limit and each (but the first) in a child process, so a
decoder that crashes or hangs costs that stage only; the report (``gpu_check.json`` and
``gpu_check.md``) is written again after every stage, so whatever happens the results so
far are on disk:

1. ``environment`` — GPU, driver, CUDA, library versions;
2. ``data`` — the benchmark videos (H.264 320x240, 4 s; 32 with ``--quick``, else 96) and the
   paper path's lists, indexed, so that ``train.py`` and ``eval.py`` read the index's cache;
3. ``pytest`` — ``pytest -m gpu`` (``-m "gpu and not slow"`` with ``--quick``): every
   method's pipeline on the GPU, NVDEC- and PyAV-decoded, against the reference loader
   on coloured, textured, asymmetric, non-square videos (crop, flip, channel order, hue
   and saturation show there); NVDEC frame-exact and colour-measured at Kinetics' shapes
   and on H.264 with real B-frames; op parity; a ``train.py`` step per method; bf16 of
   every backbone. Each test's result is logged as it finishes; zero tests run is a fail;
4. ``nvdec_sizes`` — whether NVDEC decodes a video at the minimum frame size the toolkit
   assumes for each codec and refuses (itself, not by an error) one below it; a codec this
   machine cannot encode is named "not measured", never counted as holding;
5. ``nvdec_rate`` — NVDEC's decoded frames/s on the benchmark videos (16-frame windows, the
   device synchronised), one line per block written as it goes, and NVDEC utilisation (NVML);
6. ``throughput`` — a short ``benchmarks.throughput --device gpu`` on H.264 data (not with
   ``--quick``);
7. ``paper_path`` — what researchers run, in one process on one GPU: ``train.py`` with
   ``configs/moquad_r3d18.yaml`` and ``configs/mcpnet_r3d18.yaml`` (R3D-18, bf16 autocast,
   channels-last, MoQuad's phase switch, MCPNet's residual clips with their own BatchNorm:
   ``residual_bn: own``, as the configuration sets it) for a few dozen steps on a training
   list of at least 50 batches per epoch — steady-state seconds per synchronised step,
   clips/s and the share of step time waiting for data (after a 5-step warm-up), PyTorch's
   peak and the device memory in use at the peak (NVML: DALI's pools and every CUDA context
   included) — then ``eval.py retrieval`` on the checkpoint it wrote;
8. ``ddp`` — two torchrun ranks on the one GPU (``benchmarks.shared_gpu``: gloo, since NCCL takes
   one rank per GPU) train MCPNet as its paper configuration sets it: DDP, the SyncBatchNorm
   conversion (its layers counted), the gradient-carrying gather; then the run resumed from
   its mid-epoch checkpoint must repeat the uninterrupted run's losses step for step
   (``deterministic=true``). NCCL itself needs a machine with two GPUs.

Each stage has its own seconds (``PLAN``), adding up to the check's budget; a stage also
gets what the stages before it left unused. A stage cut short by its time says "out of
time", apart from one that failed; nothing a stage started (torchrun's workers, DALI's)
outlives it.

The verdict table (stage, pass / FAIL / OUT OF TIME, figure) is printed and written; the exit
status is 0 only when every stage passed. On a machine with an NVIDIA GPU that CUDA cannot use
(a driver older than the CUDA build of torch and DALI needs; a loaded kernel driver while
``nvidia-smi`` fails) the check fails at once and says why (exit 1); on a machine without any
NVIDIA GPU it says so and exits 2.

This module is the command, its plan and the gate; the stages are :mod:`benchmarks.gpu_stages`,
what they start and sample :mod:`benchmarks.gpu_processes`, the NVDEC measurements their children
run :mod:`benchmarks.gpu_probes`, and the report :mod:`benchmarks.gpu_report`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import traceback
from typing import Callable, Dict, Optional

if __package__ in (None, ""):  # run as a file: the repository root is the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The parts of the check; what this module does not use itself is re-exported under the command's name.
from benchmarks.gpu_processes import DeviceSampler, run_child  # noqa: E402,F401
from benchmarks.gpu_probes import ENCODERS, decode_rate, probe_sizes  # noqa: E402,F401
from benchmarks.gpu_report import markdown, write_report  # noqa: E402
from benchmarks.gpu_stages import (  # noqa: E402,F401
    OUT_OF_TIME, PAPER_PATH, STEADY_BATCHES, StageFailed, metrics, paper_lists, paper_methods, prepare_data,
    stage_data, stage_ddp, stage_environment, stage_nvdec_rate, stage_nvdec_sizes, stage_paper_path, stage_pytest,
    stage_throughput)

STAGES = ("environment", "data", "pytest", "nvdec_sizes", "nvdec_rate", "throughput", "paper_path", "ddp")
QUICK_STAGES = ("environment", "data", "pytest", "nvdec_sizes", "nvdec_rate", "paper_path", "ddp")
BUDGET = {False: 470, True: 230}  # seconds: under 8 and 4 minutes, with room for the start
# Each stage's own seconds (full plan, quick plan): they add up to the budget, and a stage also gets what the
# stages before it left unused, never what the later ones need (tests/test_gpu_gate.py asserts both).
PLAN = {False: {"environment": 20, "data": 30, "pytest": 170, "nvdec_sizes": 30, "nvdec_rate": 15, "throughput": 60,
                "paper_path": 100, "ddp": 45},
        True: {"environment": 15, "data": 20, "pytest": 60, "nvdec_sizes": 15, "nvdec_rate": 15, "paper_path": 70,
               "ddp": 35}}
# Fixed costs measured on a shared 2-core CPU: `train.py --help` 9 s and `eval.py --help` 11 s (imports); the
# benchmark videos 1.7 s each (96 in 160 s; 0 s on a second run: kept), so about 7 s for the quick plan's 32 on a
# 16-core GPU host; indexing a 3,200-line training list 19 s the first time and 0.05 s from the cache (the
# ``data`` stage indexes the lists, so train.py and eval.py find them cached). A GPU adds CUDA's start, cuDNN's
# autotuning and DALI's pipeline build: the first of the 5 warm-up steps the step meter leaves out.
# The paper path's own share: gpu_stages.PAPER_PATH (per method, train.py then eval.py).
VIDEOS = {False: 96, True: 32}  # benchmark videos (H.264 320x240, 4 s) unless --videos says otherwise

RUNNERS: Dict[str, Callable] = {"environment": stage_environment, "data": stage_data, "pytest": stage_pytest,
                                "nvdec_sizes": stage_nvdec_sizes, "nvdec_rate": stage_nvdec_rate,
                                "throughput": stage_throughput, "paper_path": stage_paper_path, "ddp": stage_ddp}


def run_stage(name: str, args, limit: float) -> dict:
    start = time.time()
    try:
        details, status, message = RUNNERS[name](args, limit), "passed", ""
    except StageFailed as exc:
        details, status, message = exc.details, OUT_OF_TIME if exc.out_of_time else "failed", str(exc)
    except Exception as exc:
        details, status = {"traceback": traceback.format_exc()[-4000:]}, "failed"
        message = f"{type(exc).__name__}: {exc}"
    return {"stage": name, "status": status, "message": message, "seconds": round(time.time() - start, 1),
            "limit": round(limit), "figure": details.get("figure", "") if isinstance(details, dict) else "",
            "details": details}


NVIDIA_KERNEL_VERSION = "/proc/driver/nvidia/version"  # the kernel driver's own word, whatever nvidia-smi says
NVIDIA_DEVICES = "/dev/nvidia[0-9]*"


def kernel_driver() -> Optional[str]:
    """Signs of a loaded NVIDIA kernel driver (its version, or its device nodes), or ``None``."""
    import glob
    import re

    try:
        with open(NVIDIA_KERNEL_VERSION, errors="replace") as f:
            found = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", f.readline())
        return f"kernel driver {found.group(1)}" if found else f"{NVIDIA_KERNEL_VERSION} exists"
    except OSError:
        pass
    nodes = sorted(glob.glob(NVIDIA_DEVICES))
    return ", ".join(nodes) if nodes else None


def nvidia_smi_failure() -> str:
    """How ``nvidia-smi`` fails here, in a few words."""
    try:
        run = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "nvidia-smi is not on PATH"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi does not run ({type(exc).__name__})"
    lines = (run.stdout + run.stderr).strip().splitlines()
    return f"nvidia-smi fails (exit {run.returncode}: {lines[0].strip() if lines else 'no output'})"


def gpu_problem(available: bool = False) -> Optional[str]:
    """Why the GPU checks cannot run on a machine that has an NVIDIA GPU, in one line, or ``None`` (also where
    there is none). Beyond ``cuda_problem``: a loaded kernel driver while ``nvidia-smi`` fails or is missing (a
    driver updated without a reboot: "Driver/library version mismatch") is a GPU host too, not a CPU machine."""
    from motionssl.runtime import cuda_problem

    problem = cuda_problem(available)
    if problem or available:
        return problem
    signs = kernel_driver()  # cuda_problem found no driver through nvidia-smi
    if signs:
        return (f"an NVIDIA GPU is present ({signs}) but {nvidia_smi_failure()}: the driver's libraries are missing "
                "or do not match the loaded kernel module; reinstall the driver or reboot, then check `nvidia-smi`")
    return None


def cuda_gate() -> Optional[tuple]:
    """``None`` when CUDA works here; else ``(exit status, reason)`` (1: a GPU CUDA cannot use, 2: no GPU)."""
    import torch

    if torch.cuda.is_available():
        return None
    problem = gpu_problem(available=False)
    if problem:
        return 1, problem
    return 2, "no NVIDIA GPU on this machine (nvidia-smi finds none): nothing to check"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-report", help="folder for the report, logs, data and runs")
    parser.add_argument("--quick", action="store_true", help="the short check (under 4 minutes)")
    parser.add_argument("--stages", nargs="+", default=None, choices=STAGES)
    parser.add_argument("--videos", type=int, default=None, help="benchmark videos (H.264 320x240, 4 s; default 96, "
                        "32 with --quick); the paper path trains on three quarters, each named often enough for "
                        f"{STEADY_BATCHES} batches per epoch")
    parser.add_argument("--fail-fast", action="store_true", help="stop pytest at its first failure")
    args = parser.parse_args(argv)
    args.videos = VIDEOS[args.quick] if args.videos is None else args.videos
    if args.videos < 4:
        parser.error(f"--videos {args.videos}: need at least 4 (three quarters train, a quarter are queries)")
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    report = {"command": "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M"), "stages": [], "finished": False}
    gate = cuda_gate()
    stages = list(args.stages or (QUICK_STAGES if args.quick else STAGES))
    if gate is not None:
        report["stages"].append({"stage": "cuda", "status": "failed", "seconds": 0.0, "limit": 0, "details": {},
                                 "message": gate[1]})
        stages = []
    plan = PLAN[args.quick]
    for i, name in enumerate(stages):
        later = sum(plan.get(s, PLAN[False][s]) for s in stages[i + 1:])  # kept for the stages after this one
        limit = BUDGET[args.quick] - (time.time() - start) - later  # its own time and what earlier ones left
        if limit < 5:
            report["stages"].append({"stage": name, "status": OUT_OF_TIME, "seconds": 0.0, "limit": 0, "details": {},
                                     "message": "not run: the check's time budget is spent"})
        else:
            report["stages"].append(run_stage(name, args, limit))
        report["seconds"] = time.time() - start
        write_report(report, args.out)  # after every stage: a later crash keeps these
        s = report["stages"][-1]
        print(f"{name}: {s['status']} ({s['seconds']} s) {s['message'] or s.get('figure', '')}", flush=True)
    report["seconds"] = time.time() - start
    report["finished"] = True
    report["passed"] = bool(report["stages"]) and all(s["status"] == "passed" for s in report["stages"])
    write_report(report, args.out)
    print(markdown(report))
    print(f"wrote {os.path.join(args.out, 'gpu_check.json')} and gpu_check.md")
    if gate is not None:
        return gate[0]
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
