"""The stages of the GPU check (:mod:`benchmarks.gpu_check`, whose docstring says what each verifies).

A stage is ``stage_<name>(args, limit) -> dict``: it runs its work in child processes
(:func:`~benchmarks.gpu_processes.run_child`) within ``limit`` seconds and returns its details
with a one-line ``figure``, or raises :class:`StageFailed` — ``out_of_time`` when it ran short
of time rather than found a fault.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Dict

from benchmarks.gpu_processes import DeviceSampler, run_child
from benchmarks.gpu_probes import size_verdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_OF_TIME = "out of time"
# The paper path's own plan, per method: train.py, then eval.py (its share of gpu_check.PLAN).
PAPER_PATH = {False: {"train": 35, "eval": 15}, True: {"train": 25, "eval": 10}}
STEADY_BATCHES = 50  # batches per epoch of the paper path's training list: no prefetch restarts


def paper_methods() -> Dict[str, str]:
    """The methods under study (not the baselines) and their paper configurations."""
    from motionssl.models.methods import METHODS

    return {m.name: f"configs/{m.paper_config}" for m in sorted(METHODS.values(), key=lambda m: m.name, reverse=True)
            if m.paper_config and not m.baseline}


class StageFailed(Exception):
    """A stage's failure; ``out_of_time`` when it ran short of time rather than found a fault."""

    def __init__(self, message: str, details: dict, figure: str = "", out_of_time: bool = False):
        super().__init__(message)
        self.details, self.figure, self.out_of_time = details, figure, out_of_time


def stage_environment(args, limit) -> dict:
    import av
    import nvidia.dali
    import torch

    from motionssl.runtime import nvidia_driver

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "dali": nvidia.dali.__version__, "pyav": av.__version__,
           "cpu_count": os.cpu_count(), "driver": nvidia_driver()}
    env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    env["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    env["figure"] = f"{env['gpus'][0]}, driver {env['driver']}, CUDA {env['torch_cuda']}"
    return env


def stage_pytest(args, limit) -> dict:
    log = os.path.join(args.out, "pytest-gpu.jsonl")
    if os.path.exists(log):
        os.remove(log)
    marks = "gpu and not slow" if args.quick else "gpu"
    cmd = [sys.executable, "-m", "pytest", "-m", marks, "-q", "-p", "no:cacheprovider", "-x" if args.fail_fast
           else "-ra"]
    run = run_child(cmd, limit, os.path.join(args.out, "pytest-gpu.log"), env=dict(os.environ, MOTIONSSL_TEST_LOG=log))
    cases = []
    if os.path.exists(log):
        with open(log) as f:
            cases = [json.loads(line) for line in f if line.strip()]
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
    figure = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    result = {**run, **counts, "cases": cases, "figure": figure}
    if run["returncode"] is None:
        raise StageFailed(f"pytest ran past {limit:.0f} s ({figure} so far)", result, figure, out_of_time=True)
    if run["returncode"] != 0 or counts["failed"] or counts["passed"] == 0:
        raise StageFailed(f"pytest -m '{marks}': {figure} (exit {run['returncode']})", result, figure)
    return result


def _in_child(args, limit, result: str, module: str, function: str, arguments: str, log: str) -> dict:
    """Run ``module.function(arguments)`` in a child process (its log in ``--out``), after removing a stale
    ``result`` file it would write."""
    if os.path.exists(result):
        os.remove(result)
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from {module} import {function}; {function}({arguments})"
    return run_child([sys.executable, "-c", code], limit, os.path.join(args.out, log))


def stage_nvdec_sizes(args, limit) -> dict:
    rows_path = os.path.join(args.out, "nvdec_sizes.jsonl")
    run = _in_child(args, limit, rows_path, "benchmarks.gpu_probes", "probe_sizes", repr(rows_path), "nvdec_sizes.log")
    rows = []
    if os.path.exists(rows_path):
        with open(rows_path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    mismatches, figure = size_verdict(rows)
    result = {**run, "rows": rows, "mismatches": mismatches, "figure": figure}
    if run["returncode"] is None:
        raise StageFailed(f"the NVDEC size probe ran past {limit:.0f} s: {figure}", result, figure, out_of_time=True)
    if run["returncode"] != 0 or mismatches or not any(r["outcome"] in ("decoded", "refused") for r in rows):
        why = f"crashed (exit {run['returncode']})" if run["returncode"] != 0 else "disagrees with this GPU"
        raise StageFailed(f"the NVDEC size table {why}: {figure}", result, figure)
    return result


def bench_data(args) -> str:
    from benchmarks.make_data import generate

    return generate(os.path.join(args.out, "data"), codecs=("h264",), videos=args.videos, seconds=4.0)["h264"]


def stage_throughput(args, limit) -> dict:
    data = bench_data(args)
    json_path = os.path.join(args.out, "throughput-gpu.json")
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--device", "gpu", "--data", data, "--batches", "4",
           "--repeats", "2", "--warmup", "2", "--no-reference", "--out", json_path]
    run = run_child(cmd, limit, os.path.join(args.out, "throughput.log"))
    if run["returncode"] != 0 or not os.path.exists(json_path):
        raise StageFailed("benchmarks.throughput --device gpu failed or ran past its limit", run)
    with open(json_path) as f:
        result = json.load(f)
    keep = ("producer", "window", "windows_per_s", "clips_per_s", "vs_peer", "nvdec_busy_percent")
    rows = {name: [{k: r.get(k) for k in keep} for r in entry["results"]]
            for name, entry in result["pipelines"].items()}
    best = {name: max((r["clips_per_s"] or 0) for r in entry) for name, entry in rows.items()}
    return {**run, "rows": rows, "figure": ", ".join(f"{n} {v:.0f} clips/s" for n, v in best.items())}


def paper_lists(args) -> tuple:
    """The benchmark videos as a training list, a gallery list (three quarters) and a query list (a quarter).

    The training list names the gallery's videos again and again, so that an epoch holds at least
    ``STEADY_BATCHES`` batches (one process) at the largest paper batch: timings then describe steady
    training, not DALI's prefetch restarting every step or two at an epoch's end.
    """
    from motionssl.training import load_config

    data = bench_data(args)
    with open(data) as f:
        lines = [line for line in f if line.strip()]
    folder = os.path.dirname(data)
    cut = len(lines) * 3 // 4
    batch = max(load_config([os.path.join(ROOT, config)], pipeline=name).batch_size
                for name, config in paper_methods().items())
    repeats = -(-STEADY_BATCHES * batch // cut)
    paths = {name: os.path.join(folder, f"{name}.txt") for name in ("train", "gallery", "queries")}
    for name, part in (("train", lines[:cut] * repeats), ("gallery", lines[:cut]), ("queries", lines[cut:])):
        with open(paths[name], "w") as f:
            f.writelines(part)
    return paths["train"], paths["gallery"], paths["queries"]


def prepare_data(out: str, videos: int) -> None:
    """In a child process: the benchmark videos and the paper path's lists, indexed (``data``); ``data.json``
    names the lists and their entries."""
    from motionssl.pipelines.index import load_index

    lists = paper_lists(argparse.Namespace(out=out, videos=videos))
    counts = {os.path.basename(path)[:-4]: len(load_index(path, num_probe_threads=os.cpu_count() or 8))
              for path in lists}
    with open(os.path.join(out, "data.json"), "w") as f:
        json.dump({"lists": list(lists), "videos": counts}, f)


def stage_data(args, limit) -> dict:
    done = os.path.join(args.out, "data.json")
    run = _in_child(args, limit, done, "benchmarks.gpu_stages", "prepare_data", f"{args.out!r}, {args.videos}",
                    "data.log")
    if run["returncode"] is None:
        raise StageFailed(f"writing and indexing the benchmark videos ran past {limit:.0f} s", run, out_of_time=True)
    if run["returncode"] != 0 or not os.path.exists(done):
        raise StageFailed(f"writing or indexing the benchmark videos failed (exit {run['returncode']}; data.log)", run)
    with open(done) as f:
        data = json.load(f)
    return {**run, **data, "figure": ", ".join(f"{n}: {c} entries" for n, c in data["videos"].items())}


def stage_nvdec_rate(args, limit) -> dict:
    rows_path = os.path.join(args.out, "nvdec_rate.jsonl")
    if os.path.exists(rows_path):
        os.remove(rows_path)
    measure = max(2.0, limit * 0.4)  # the rest: the child's imports, the pipeline build, the first batch
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from benchmarks.gpu_probes import decode_rate; " \
           f"decode_rate({bench_data(args)!r}, {rows_path!r}, {measure})"
    with DeviceSampler() as device:
        run = run_child([sys.executable, "-c", code], limit, os.path.join(args.out, "nvdec_rate.log"))
    rows = []
    if os.path.exists(rows_path):
        with open(rows_path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    result = {**run, "rows": rows, **device.summary()}
    if rows:
        result["frames_per_s"] = round(sum(r["frames"] for r in rows) / sum(r["seconds"] for r in rows))
        busy = f", NVDEC busy up to {result['nvdec_peak_percent']:.0f} %" if "nvdec_peak_percent" in result else ""
        result["figure"] = f"{result['frames_per_s']} frames/s (H.264 320x240, {len(rows)} blocks){busy}"
    if run["returncode"] is None:
        raise StageFailed(f"decoding ran past {limit:.0f} s ({len(rows)} blocks written)", result,
                          result.get("figure", ""), out_of_time=True)
    if run["returncode"] != 0 or not rows:
        raise StageFailed(f"NVDEC decoding failed (exit {run['returncode']}; nvdec_rate.log)", result)
    return result


def metrics(run_dir: str) -> Dict[int, dict]:
    """A run's ``metrics.jsonl`` by step (empty when it wrote none)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["step"]: r for r in map(json.loads, filter(str.strip, f))}


def stage_paper_path(args, limit) -> dict:
    deadline = time.time() + limit
    plan = PAPER_PATH[args.quick]
    train_list, gallery, queries = paper_lists(args)
    steps = 24 if args.quick else 60  # the meter leaves out 5 steps after each start (MoQuad's switch is one)
    result, failures, late = {}, [], []
    papers = paper_methods()
    for i, (name, config) in enumerate(papers.items()):
        later = (len(papers) - i - 1) * (plan["train"] + plan["eval"])  # kept for the methods after this one
        run_dir = os.path.join(args.out, "runs", name)
        if os.path.exists(os.path.join(run_dir, "config.yaml")):  # this check's own run, from an earlier check
            shutil.rmtree(run_dir)
        # One process, as torchrun --nproc_per_node 1 would run it, without torchrun's start (and its workers
        # in sessions of their own).
        cmd = [sys.executable, "train.py", "--pipeline", name, "--config", config, "--data", train_list, "--out", run_dir,
               f"steps={steps}", "log_every=4", f"checkpoint_every={steps}", "retrieval=false", "device=gpu",
               "sync_timing=true", "optim.warmup_epochs=0", "loader.num_workers=" + str(max(2, min(8, (os.cpu_count() or 4) - 2)))]
        seconds = deadline - time.time() - later - plan["eval"]
        with DeviceSampler() as device:  # DALI's pools and the CUDA context too, not PyTorch's peak alone
            train = run_child(cmd, seconds, os.path.join(args.out, f"paper-{name}-train.log"))
        entry = {"train": train, **device.summary()}
        rows = list(metrics(run_dir).values())
        if train["returncode"] is None:
            late.append(f"{name}: train.py ran past its {seconds:.0f} s")
        elif train["returncode"] != 0 or not rows:
            failures.append(f"{name}: train.py failed (exit {train['returncode']})")
        if train["returncode"] != 0 or not rows:
            result[name] = entry
            continue
        last = rows[-1]  # its figures: steady state, over the synchronised steps after the last warm-up
        entry.update(step_s=round(last.get("step_s", 0.0), 3), clips_per_s=round(last.get("clips_per_s", 0.0), 1),
                     data_wait=round(last.get("data_wait", 0.0), 3),
                     gpu_mem_gib=round(last.get("gpu_mem_gib", 0.0), 2), final_loss=round(last["loss"], 4))
        seconds = deadline - time.time() - later
        evaluation = run_child([sys.executable, "eval.py", "retrieval", "--checkpoint", run_dir, "--data", gallery,
                                "--test-data", queries, "--num-clips", "2", "--device", "gpu", "--out",
                                os.path.join(run_dir, "eval")], seconds,
                               os.path.join(args.out, f"paper-{name}-eval.log"))
        entry["eval"] = evaluation
        found = [os.path.join(run_dir, "eval", f) for f in os.listdir(os.path.join(run_dir, "eval"))
                 if f.endswith(".retrieval.json")] if os.path.isdir(os.path.join(run_dir, "eval")) else []
        if evaluation["returncode"] is None:
            late.append(f"{name}: eval.py retrieval ran past its {seconds:.0f} s")
        elif evaluation["returncode"] != 0 or not found:
            failures.append(f"{name}: eval.py retrieval failed (exit {evaluation['returncode']})")
        else:
            with open(found[0]) as f:
                entry["retrieval_top1"] = round(100 * json.load(f)["metrics"]["top1"], 1)
        result[name] = entry
    figure = "; ".join(f"{n}: {e['step_s']} s/step, {e['clips_per_s']} clips/s, {100 * e['data_wait']:.0f} % of "
                       f"step time waiting for data, {e['gpu_mem_gib']} GiB PyTorch peak, "
                       f"{e.get('device_mem_peak_gib', '–')} GiB on the device"
                       for n, e in result.items() if "clips_per_s" in e)
    result["figure"] = figure
    if failures or late:
        raise StageFailed("; ".join(failures + late), result, figure, out_of_time=not failures)
    return result


def stage_ddp(args, limit) -> dict:
    """Two ranks on the one GPU (``benchmarks.shared_gpu``: gloo, since NCCL takes one rank per GPU) train MCPNet
    as its paper configuration sets it (at batch 16 per rank: they share the GPU's memory), SyncBatchNorm
    converted, with a checkpoint mid-epoch; then the run resumed from it must repeat the uninterrupted run's
    losses step for step (``deterministic=true`` in both)."""
    from benchmarks.shared_gpu import SYNC_BN

    deadline = time.time() + limit
    train_list = paper_lists(args)[0]
    half = 4 if args.quick else 8
    name, config = "mcpnet", paper_methods()["mcpnet"]
    full, resumed = (os.path.join(args.out, "runs", f"ddp-{kind}") for kind in ("full", "resumed"))
    for folder in (full, resumed):
        if os.path.exists(os.path.join(folder, "config.yaml")):  # this check's own run, from an earlier check
            shutil.rmtree(folder)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "benchmarks.shared_gpu", "--pipeline", name]
    first = run_child(torchrun + ["--config", config, "--data", train_list, "--out", full, f"steps={2 * half}",
                                  "log_every=1", f"checkpoint_every={half}", "keep_checkpoints=4", "retrieval=false",
                                  "device=gpu", "optim.warmup_epochs=0", "deterministic=true", "loader.num_workers=2",
                                  "batch_size=16"],  # two ranks share the GPU's memory: a quarter of the paper batch
                      limit * 0.6, os.path.join(args.out, "ddp-train.log"))
    result = {"train": first}
    want = metrics(full)
    with open(os.path.join(args.out, "ddp-train.log"), errors="replace") as f:
        converted = [line.split(SYNC_BN, 1)[1].strip() for line in f if SYNC_BN in line]
    result["sync_batchnorm_layers"] = int(converted[-1]) if converted else 0
    if first["returncode"] is None:
        raise StageFailed(f"two ranks on one GPU ran past {limit * 0.6:.0f} s ({len(want)} steps)", result,
                          out_of_time=True)
    if first["returncode"] != 0 or sorted(want) != list(range(1, 2 * half + 1)):
        raise StageFailed(f"two ranks on one GPU (gloo) failed (exit {first['returncode']}; ddp-train.log)", result)
    if not result["sync_batchnorm_layers"]:
        raise StageFailed("two ranks trained, but no BatchNorm layer became SyncBatchNorm", result)
    shutil.copytree(full, resumed)  # the finished run, resumed from its mid-epoch checkpoint
    second = run_child(torchrun + ["--resume", os.path.join(resumed, "checkpoints", f"ckpt-{half:08d}.pt")],
                       deadline - time.time(), os.path.join(args.out, "ddp-resume.log"))
    result["resume"] = second
    got = metrics(resumed)
    if second["returncode"] is None:
        raise StageFailed("the resumed run ran past its limit", result, out_of_time=True)
    later = range(half + 1, 2 * half + 1)
    if second["returncode"] != 0 or any(step not in got for step in later):
        raise StageFailed(f"resuming two ranks from step {half} failed (exit {second['returncode']}; "
                          "ddp-resume.log)", result)
    differences = {step: abs(got[step]["loss"] - want[step]["loss"]) / max(abs(want[step]["loss"]), 1e-12)
                   for step in later}
    worst = max(differences, key=differences.get)
    result["resume_max_relative_difference"] = differences[worst]
    result["figure"] = (f"2 ranks on 1 GPU (gloo), {result['sync_batchnorm_layers']} SyncBatchNorm layers, "
                        f"{2 * half} steps; resumed from step {half} (mid-epoch): losses within "
                        f"{differences[worst]:.1e} of the uninterrupted run")
    epochs = [step for step in later if got[step]["epoch"] != want[step]["epoch"]]
    if differences[worst] > 1e-4 or epochs:
        raise StageFailed(f"the run resumed from step {half} departs from the uninterrupted one: step {worst}'s loss "
                          f"{got[worst]['loss']:.6f} against {want[worst]['loss']:.6f}"
                          + (f"; other epochs at steps {epochs}" if epochs else ""), result, result["figure"])
    return result
