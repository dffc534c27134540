"""The GPU acceptance check: everything that can only be verified on a GPU, in one command, in minutes.

    python -m benchmarks.gpu_check --out gpu-report        # ≈ 6–8 min on one GPU

Stages (each recorded as passed / failed / skipped with its figures; a failing stage never
stops the next one, and the report is written whatever happens):

1. ``environment`` — GPU, driver, CUDA, library versions;
2. ``pytest`` — ``pytest -m gpu``: every method's pipeline on the GPU (NVDEC and PyAV
   decoding) against the reference loader with the batch contract checked (every key on
   the GPU, clips float16), the GPU op parity tests, NVDEC decoding H.264 with B-frames
   frame-exactly, one ``train.py`` step of each method on NVDEC-decoded data, bf16
   backward of every backbone, two NCCL ranks when there are two GPUs;
3. ``nvdec_sizes`` — for each codec the encoder here can write, whether NVDEC decodes a
   video at the minimum frame size the toolkit assumes (``pipelines.decoding.NVDEC_MIN_SIZE``)
   and refuses one below it: the table is measured, not trusted;
4. ``throughput`` — a short ``benchmarks.throughput --device gpu`` run on H.264 data;
5. ``data_stall`` — a short ``benchmarks.data_stall --device gpu`` run for each method.

It writes ``<out>/gpu_check.json`` and ``<out>/gpu_check.md``; paste the Markdown into
``benchmarks/RESULTS.md``. Exit status 0 when no stage failed. On a machine without CUDA
it writes a report saying so and exits 2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from typing import Callable, Dict, List

import numpy as np

if __package__ in (None, ""):  # run as a file: the repository root is the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("environment", "pytest", "nvdec_sizes", "throughput", "data_stall")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def stage_environment(args) -> dict:
    import av
    import nvidia.dali
    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "dali": nvidia.dali.__version__, "pyav": av.__version__,
           "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        env["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        env["nvidia_smi"] = f"not run: {exc}"
    return env


def stage_pytest(args) -> dict:
    xml = os.path.join(args.out, "pytest-gpu.xml")
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.pytest_timeout)
    cases = []
    if os.path.exists(xml):
        for case in ElementTree.parse(xml).iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped":
                    outcome = "skipped"
            cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                          "seconds": float(case.get("time") or 0)})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
    result = {"command": " ".join(cmd), "returncode": run.returncode, **counts, "cases": cases,
              "output_tail": run.stdout[-4000:]}
    if run.returncode != 0:
        raise StageFailed(f"pytest -m gpu: {counts['failed']} failed, {counts['passed']} passed", result)
    return result


def _probe_decode(path: str) -> str:
    """``"ok"`` if NVDEC decodes the file's first frames, else the error's first line."""
    from pipelines.decoding import nvdec_probe

    return nvdec_probe(path) or "ok"


def stage_nvdec_sizes(args) -> dict:
    from pipelines.decoding import NVDEC_MIN_SIZE
    from pipelines.video_io import write_video

    encoders = {"h264": "h264", "vp9": "vp9", "vp8": "vp8", "mpeg4": "mpeg4"}
    rows, mismatches = [], []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for codec, (min_w, min_h) in sorted(NVDEC_MIN_SIZE.items()):
            if codec not in encoders:
                rows.append({"codec": codec, "min": [min_w, min_h], "note": "no encoder here; not measured"})
                continue
            below = (max(2, (min_w // 2) & ~1), max(2, (min_h // 2) & ~1))
            sizes = {"at the minimum": (min_w, min_h), "below it": below}
            row = {"codec": codec, "min": [min_w, min_h]}
            for label, (w, h) in sizes.items():
                path = os.path.join(tmp, f"{codec}-{w}x{h}" + (".webm" if codec in ("vp8", "vp9") else ".mkv"))
                try:
                    write_video(path, rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8), codec=encoders[codec], gop=4)
                    row[label] = {"size": [w, h], "nvdec": _probe_decode(path)}
                except Exception as exc:
                    row[label] = {"size": [w, h], "nvdec": f"not encoded here: {exc}"}
            at, below = row["at the minimum"]["nvdec"], row["below it"]["nvdec"]
            if at != "ok" and not at.startswith("not encoded"):
                mismatches.append(f"{codec}: NVDEC refused {min_w}x{min_h} ({at})")
            if below == "ok":
                mismatches.append(f"{codec}: NVDEC decoded {row['below it']['size']}, below the assumed minimum")
            rows.append(row)
    result = {"rows": rows, "mismatches": mismatches}
    if mismatches:
        raise StageFailed("the NVDEC size table disagrees with this GPU: " + "; ".join(mismatches), result)
    return result


def _bench_data(args) -> str:
    from benchmarks.make_data import generate

    return generate(os.path.join(args.out, "data"), codecs=("h264",), videos=args.videos, seconds=4.0)["h264"]


def stage_throughput(args) -> dict:
    from benchmarks import throughput

    data = _bench_data(args)
    argv = ["--device", "gpu", "--data", data, "--batches", "4", "--repeats", "2", "--warmup", "2",
            "--out", os.path.join(args.out, "throughput-gpu.json")]
    return _summary(throughput.main(argv))


def _summary(result: dict) -> dict:
    keep = ("producer", "window", "windows_per_s", "clips_per_s", "decoded_frames_per_s", "vs_peer", "vs_reference",
            "vs_ceiling", "nvdec_busy_percent")
    return {name: [{k: r.get(k) for k in keep} for r in entry["results"]]
            for name, entry in result["pipelines"].items()}


def stage_data_stall(args) -> dict:
    from benchmarks import data_stall

    data = _bench_data(args)
    out = {}
    for name in ("simclr", "mcpnet", "moquad"):
        result = data_stall.main(["--device", "gpu", "--pipeline", name, "--data", data, "--steps", "10",
                                  "--repeats", "2", "--out", os.path.join(args.out, f"data_stall-gpu-{name}.json")])
        out[name] = {k: result[k] for k in ("backbone", "size", "batch_size", "steps_per_s_real",
                                            "steps_per_s_synthetic", "stall_percent")}
    return out


class StageFailed(Exception):
    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


RUNNERS: Dict[str, Callable] = {"environment": stage_environment, "pytest": stage_pytest,
                                "nvdec_sizes": stage_nvdec_sizes, "throughput": stage_throughput,
                                "data_stall": stage_data_stall}


def run_stage(name: str, args) -> dict:
    start = time.time()
    try:
        details, status, message = RUNNERS[name](args), "passed", ""
    except StageFailed as exc:
        details, status, message = exc.details, "failed", str(exc)
    except Exception as exc:
        details, status = {"traceback": traceback.format_exc()[-4000:]}, "failed"
        message = f"{type(exc).__name__}: {exc}"
    return {"stage": name, "status": status, "message": message, "seconds": round(time.time() - start, 1),
            "details": details}


def markdown(report: dict) -> str:
    env = report["stages"][0]["details"] if report["stages"] and report["stages"][0]["stage"] == "environment" else {}
    lines = ["## GPU acceptance check", "",
             f"`{report['command']}` on {', '.join(env.get('gpus', ['no GPU']))} (driver: {env.get('nvidia_smi', '?')}), "
             f"torch {env.get('torch')}, DALI {env.get('dali')}, {report['date']}; {report['seconds']:.0f} s.", "",
             "| stage | status | seconds | result |", "|---|---|---|---|"]
    for s in report["stages"]:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s['message'] or _brief(s)} |")
    for s in report["stages"]:
        if s["stage"] == "pytest" and s["details"].get("cases"):
            lines += ["", "pytest -m gpu:", ""] + [f"- {c['outcome']}: `{c['test']}`" for c in s["details"]["cases"]]
        if s["stage"] == "throughput" and s["status"] == "passed":
            lines += ["", "| pipeline | producer | windows/s | clips/s | frames/s | vs reference | NVDEC busy |",
                      "|---|---|---|---|---|---|---|"]
            for name, rows in s["details"].items():
                for r in rows:
                    lines.append(f"| {name} | {r['producer']} | {_num(r['windows_per_s'])} | {_num(r['clips_per_s'])} "
                                 f"| {_num(r['decoded_frames_per_s'])} | {_num(r['vs_reference'])} "
                                 f"| {_num(r['nvdec_busy_percent'])} |")
        if s["stage"] == "data_stall" and s["status"] == "passed":
            lines += ["", "| method | backbone | size | batch | steps/s real | steps/s synthetic | stall % |",
                      "|---|---|---|---|---|---|---|"]
            for name, r in s["details"].items():
                lines.append(f"| {name} | {r['backbone']} | {r['size']} | {r['batch_size']} "
                             f"| {_num(r['steps_per_s_real'])} | {_num(r['steps_per_s_synthetic'])} "
                             f"| {_num(r['stall_percent'])} |")
    return "\n".join(lines) + "\n"


def _brief(stage: dict) -> str:
    d = stage["details"]
    if stage["stage"] == "pytest":
        return f"{d.get('passed', 0)} passed, {d.get('failed', 0)} failed, {d.get('skipped', 0)} skipped"
    if stage["stage"] == "nvdec_sizes":
        return "the assumed minimum sizes hold" if not d.get("mismatches") else "; ".join(d["mismatches"])
    return "see JSON"


def _num(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-report", help="folder for the report, logs and benchmark data")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--videos", type=int, default=24, help="benchmark videos (H.264 320x240, 4 s)")
    parser.add_argument("--pytest-timeout", type=int, default=300, help="seconds for pytest -m gpu")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    report = {"command": "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M"), "stages": []}
    stages: List[str] = list(args.stages)
    has_gpu = cuda_available()
    if not has_gpu:
        report["stages"].append(run_stage("environment", args))
        report["stages"].append({"stage": "gpu", "status": "failed", "seconds": 0.0, "details": {},
                                 "message": "no CUDA GPU on this machine: nothing else to check"})
        stages = []
    for name in stages:
        report["stages"].append(run_stage(name, args))
        print(f"{name}: {report['stages'][-1]['status']} ({report['stages'][-1]['seconds']} s) "
              f"{report['stages'][-1]['message']}", flush=True)
    report["seconds"] = time.time() - start
    report["passed"] = all(s["status"] != "failed" for s in report["stages"])
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
        f.write(markdown(report))
    print(markdown(report))
    print(f"wrote {os.path.join(args.out, 'gpu_check.json')} and gpu_check.md")
    return 0 if report["passed"] else (1 if has_gpu else 2)


if __name__ == "__main__":
    sys.exit(main())
