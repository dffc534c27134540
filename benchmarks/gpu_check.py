"""The GPU acceptance check: everything that can only be verified on a GPU, in one command, in minutes.

    python -m benchmarks.gpu_check --out gpu-report            # under 8 min on one H100/H200
    python -m benchmarks.gpu_check --out gpu-report --quick    # under 4 min

Stages, each with its own time limit and each (but the first) in a child process, so a
decoder that crashes or hangs costs that stage only; the report (``gpu_check.json`` and
``gpu_check.md``) is written again after every stage, so whatever happens the results so
far are on disk:

1. ``environment`` — GPU, driver, CUDA, library versions;
2. ``pytest`` — ``pytest -m gpu`` (``-m "gpu and not slow"`` with ``--quick``): every
   method's pipeline on the GPU, NVDEC- and PyAV-decoded, against the reference loader
   on coloured, textured, asymmetric, non-square videos (crop, flip, channel order, hue
   and saturation show there); NVDEC frame-exact and colour-measured at Kinetics' shapes
   and on H.264 with real B-frames; op parity; a ``train.py`` step per method; bf16 of
   every backbone. Each test's result is logged as it finishes; zero tests run is a fail;
3. ``nvdec_sizes`` — whether NVDEC decodes a video at the minimum frame size the toolkit
   assumes for each codec and refuses one below it (the table is measured, not trusted);
4. ``throughput`` — a short ``benchmarks.throughput --device gpu`` on H.264 data (not with
   ``--quick``);
5. ``paper_path`` — what researchers run, on one GPU: ``torchrun --nproc_per_node 1
   train.py`` with ``configs/moquad_r3d18.yaml`` and ``configs/mcpnet_r3d18.yaml`` (R3D-18,
   bf16 autocast, channels-last, the SyncBatchNorm conversion, MCPNet's residual clips with
   their own BatchNorm) for a few dozen steps on the benchmark data — steps/s, clips/s,
   the share of time waiting for data, peak GPU memory — then ``eval.py retrieval`` on the
   checkpoint it wrote.

The verdict table (stage, pass/fail, figure) is printed and written; the exit status is 0
only when every stage passed. On a machine with an NVIDIA GPU that CUDA cannot use (a
driver older than the CUDA build of torch and DALI needs) the check fails at once and
says why (exit 1); on a machine without any NVIDIA GPU it says so and exits 2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List, Optional

if __package__ in (None, ""):  # run as a file: the repository root is the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("environment", "pytest", "nvdec_sizes", "throughput", "paper_path")
QUICK_STAGES = ("environment", "pytest", "nvdec_sizes", "paper_path")
# Seconds each stage may take (full, quick); the whole check also keeps to its own budget.
LIMITS = {"environment": (60, 60), "pytest": (270, 100), "nvdec_sizes": (60, 45), "throughput": (90, 0),
          "paper_path": (250, 140)}
BUDGET = {False: 470, True: 230}  # under 8 and 4 minutes, with room for the start


def paper_methods() -> Dict[str, str]:
    """The methods under study (not the baselines) and their paper configurations."""
    from motionssl.models.methods import METHODS

    return {m.name: f"configs/{m.paper_config}" for m in sorted(METHODS.values(), key=lambda m: m.name, reverse=True)
            if m.paper_config and not m.baseline}


class StageFailed(Exception):
    def __init__(self, message: str, details: dict, figure: str = ""):
        super().__init__(message)
        self.details, self.figure = details, figure


def run_child(cmd: List[str], timeout: float, log_path: str, env: Optional[dict] = None) -> dict:
    """Run ``cmd`` with its output in ``log_path``; ``returncode`` (None when it ran past ``timeout``) and the tail."""
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the whole group: DALI's workers too
            proc.wait()
            code = None
    with open(log_path, errors="replace") as f:
        tail = f.read()[-3000:]
    return {"command": " ".join(cmd), "returncode": code, "seconds": round(time.time() - start, 1), "tail": tail}


# --- stages --------------------------------------------------------------------------------------
def stage_environment(args, limit) -> dict:
    import av
    import nvidia.dali
    import torch

    from motionssl.models.runtime import nvidia_driver

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
        raise StageFailed(f"pytest ran past {limit:.0f} s ({figure} so far)", result, figure)
    if run["returncode"] != 0 or counts["failed"] or counts["passed"] == 0:
        raise StageFailed(f"pytest -m '{marks}': {figure} (exit {run['returncode']})", result, figure)
    return result


def probe_sizes(out_path: str) -> None:
    """In a child process: one JSON line per (codec, size) — whether NVDEC decodes it (``nvdec_sizes``)."""
    import numpy as np

    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE, nvdec_probe
    from motionssl.pipelines.video_io import write_video

    encoders = {"h264": ".mkv", "vp9": ".webm", "vp8": ".webm", "mpeg4": ".mkv"}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for codec, (min_w, min_h) in sorted(NVDEC_MIN_SIZE.items()):
            for label, (w, h) in (("at the minimum", (min_w, min_h)),
                                  ("below it", (max(2, (min_w // 2) & ~1), max(2, (min_h // 2) & ~1)))):
                row = {"codec": codec, "case": label, "size": [w, h]}
                if codec not in encoders:
                    row["nvdec"] = "no encoder here; not measured"
                else:
                    path = os.path.join(tmp, f"{codec}-{w}x{h}{encoders[codec]}")
                    try:
                        write_video(path, rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8), codec=codec, gop=4)
                        row["nvdec"] = nvdec_probe(path) or "ok"
                    except Exception as exc:
                        row["nvdec"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
                with open(out_path, "a") as f:
                    f.write(json.dumps(row) + "\n")


def stage_nvdec_sizes(args, limit) -> dict:
    rows_path = os.path.join(args.out, "nvdec_sizes.jsonl")
    if os.path.exists(rows_path):
        os.remove(rows_path)
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from benchmarks.gpu_check import probe_sizes; " \
           f"probe_sizes({rows_path!r})"
    run = run_child([sys.executable, "-c", code], limit, os.path.join(args.out, "nvdec_sizes.log"))
    rows = []
    if os.path.exists(rows_path):
        with open(rows_path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    mismatches = []
    for row in rows:
        verdict = row["nvdec"]
        if row["case"] == "at the minimum" and verdict != "ok" and not verdict.startswith("no encoder"):
            mismatches.append(f"{row['codec']}: NVDEC refused {row['size']} ({verdict})")
        if row["case"] == "below it" and verdict == "ok":
            mismatches.append(f"{row['codec']}: NVDEC decoded {row['size']}, below the assumed minimum")
    result = {**run, "rows": rows, "mismatches": mismatches}
    figure = "the assumed minimum sizes hold" if not mismatches else "; ".join(mismatches)
    result["figure"] = figure
    if run["returncode"] != 0 or mismatches:
        why = "crashed or ran past its limit" if run["returncode"] != 0 else "disagrees with this GPU"
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
    """The benchmark videos as a gallery list (three quarters) and a query list (a quarter)."""
    data = bench_data(args)
    with open(data) as f:
        lines = [line for line in f if line.strip()]
    folder = os.path.dirname(data)
    cut = len(lines) * 3 // 4
    for name, part in (("gallery.txt", lines[:cut]), ("queries.txt", lines[cut:])):
        with open(os.path.join(folder, name), "w") as f:
            f.writelines(part)
    return os.path.join(folder, "gallery.txt"), os.path.join(folder, "queries.txt")


def stage_paper_path(args, limit) -> dict:
    gallery, queries = paper_lists(args)
    deadline = time.time() + limit
    steps = 16 if args.quick else 40
    result, failures = {}, []
    papers = paper_methods()
    for name, config in papers.items():
        run_dir = os.path.join(args.out, "runs", name)
        if os.path.exists(os.path.join(run_dir, "config.yaml")):  # this check's own run, from an earlier check
            shutil.rmtree(run_dir)
        share = max(10.0, (deadline - time.time()) / (len(papers) - list(papers).index(name)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               "train.py", "--pipeline", name, "--config", config, "--data", gallery, "--out", run_dir,
               f"steps={steps}", "log_every=4", f"checkpoint_every={steps}", "retrieval=false", "device=gpu",
               "optim.warmup_epochs=0", "loader.num_workers=" + str(max(2, min(8, (os.cpu_count() or 4) - 2)))]
        train = run_child(cmd, share * 0.75, os.path.join(args.out, f"paper-{name}-train.log"))
        entry = {"train": train}
        rows = []
        metrics = os.path.join(run_dir, "metrics.jsonl")
        if os.path.exists(metrics):
            with open(metrics) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        if train["returncode"] != 0 or not rows:
            failures.append(f"{name}: train.py {'ran past its limit' if train['returncode'] is None else 'failed'}")
            result[name] = entry
            continue
        last = rows[-1]
        timed = [r for r in rows if r["step"] > rows[0]["step"]]
        if len(timed) >= 1:
            entry["steps_per_s"] = round((timed[-1]["step"] - rows[0]["step"]) / (timed[-1]["time"] - rows[0]["time"]), 2)
        entry.update(clips_per_s=round(last.get("clips_per_s", 0.0), 1), data_wait=round(last.get("data_wait", 0.0), 3),
                     gpu_mem_gib=round(last.get("gpu_mem_gib", 0.0), 2), final_loss=round(last["loss"], 4))
        evaluation = run_child([sys.executable, "eval.py", "retrieval", "--checkpoint", run_dir, "--data", gallery,
                                "--test-data", queries, "--num-clips", "2", "--device", "gpu", "--out",
                                os.path.join(run_dir, "eval")], max(10.0, deadline - time.time() - 1),
                               os.path.join(args.out, f"paper-{name}-eval.log"))
        entry["eval"] = evaluation
        found = [os.path.join(run_dir, "eval", f) for f in os.listdir(os.path.join(run_dir, "eval"))
                 if f.endswith(".retrieval.json")] if os.path.isdir(os.path.join(run_dir, "eval")) else []
        if evaluation["returncode"] != 0 or not found:
            failures.append(f"{name}: eval.py retrieval failed")
        else:
            with open(found[0]) as f:
                entry["retrieval_top1"] = round(100 * json.load(f)["metrics"]["top1"], 1)
        result[name] = entry
    figure = "; ".join(f"{n}: {e.get('steps_per_s', '–')} steps/s, {e.get('clips_per_s', '–')} clips/s, "
                       f"{100 * e.get('data_wait', 0):.0f} % waiting for data, {e.get('gpu_mem_gib', '–')} GiB"
                       for n, e in result.items() if "clips_per_s" in e)
    result["figure"] = figure
    if failures:
        raise StageFailed("; ".join(failures), result, figure)
    return result


RUNNERS: Dict[str, Callable] = {"environment": stage_environment, "pytest": stage_pytest,
                                "nvdec_sizes": stage_nvdec_sizes, "throughput": stage_throughput,
                                "paper_path": stage_paper_path}


def run_stage(name: str, args, limit: float) -> dict:
    start = time.time()
    try:
        details, status, message = RUNNERS[name](args, limit), "passed", ""
    except StageFailed as exc:
        details, status, message = exc.details, "failed", str(exc)
    except Exception as exc:
        details, status = {"traceback": traceback.format_exc()[-4000:]}, "failed"
        message = f"{type(exc).__name__}: {exc}"
    return {"stage": name, "status": status, "message": message, "seconds": round(time.time() - start, 1),
            "limit": round(limit), "figure": details.get("figure", "") if isinstance(details, dict) else "",
            "details": details}


# --- the report ----------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    env = next((s["details"] for s in report["stages"] if s["stage"] == "environment" and s["status"] == "passed"),
               {})
    lines = ["## GPU acceptance check", "",
             f"`{report['command']}` on {', '.join(env.get('gpus', ['no usable GPU']))} (driver "
             f"{env.get('driver', '?')}, CUDA {env.get('torch_cuda', '?')}), torch {env.get('torch', '?')}, DALI "
             f"{env.get('dali', '?')}, {report['date']}; {report.get('seconds', 0):.0f} s"
             + ("" if report.get("finished") else " so far (the check did not finish)") + ".", "",
             "| stage | verdict | seconds (limit) | figure |", "|---|---|---|---|"]
    for s in report["stages"]:
        lines.append(f"| {s['stage']} | {'pass' if s['status'] == 'passed' else 'FAIL'} | {s['seconds']} "
                     f"({s.get('limit', '–')}) | {s['message'] or s.get('figure', '')} |")
    for s in report["stages"]:
        d = s["details"]
        if s["stage"] == "pytest" and d.get("cases"):
            lines += ["", "pytest:", ""] + [f"- {c['outcome']}: `{c['test']}` ({c['seconds']} s)" for c in d["cases"]]
        if s["stage"] == "nvdec_sizes" and d.get("rows"):
            lines += ["", "| codec | case | size | NVDEC |", "|---|---|---|---|"]
            lines += [f"| {r['codec']} | {r['case']} | {r['size'][0]}x{r['size'][1]} | {r['nvdec']} |" for r in d["rows"]]
        if s["stage"] == "paper_path":
            lines += ["", "| method | steps/s | clips/s | waiting for data | peak GPU memory | retrieval top-1 (toy data) |",
                      "|---|---|---|---|---|---|"]
            for name in paper_methods():
                e = d.get(name, {})
                if isinstance(e, dict) and "clips_per_s" in e:
                    lines.append(f"| {name} | {e.get('steps_per_s', '–')} | {e['clips_per_s']} | "
                                 f"{100 * e['data_wait']:.1f} % | {e['gpu_mem_gib']} GiB | {e.get('retrieval_top1', '–')} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: str) -> None:
    from motionssl.pipelines import files

    files.write_text(os.path.join(out, "gpu_check.json"), json.dumps(report, indent=1, default=str))
    files.write_text(os.path.join(out, "gpu_check.md"), markdown(report))


def cuda_gate() -> Optional[tuple]:
    """``None`` when CUDA works here; else ``(exit status, reason)`` (1: a GPU CUDA cannot use, 2: no GPU)."""
    import torch

    from motionssl.models.runtime import cuda_problem

    if torch.cuda.is_available():
        return None
    problem = cuda_problem(available=False)
    if problem:
        return 1, problem
    return 2, "no NVIDIA GPU on this machine (nvidia-smi finds none): nothing to check"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-report", help="folder for the report, logs, data and runs")
    parser.add_argument("--quick", action="store_true", help="the short check (under 4 minutes)")
    parser.add_argument("--stages", nargs="+", default=None, choices=STAGES)
    parser.add_argument("--videos", type=int, default=96, help="benchmark videos (H.264 320x240, 4 s); the paper "
                                                               "path trains on three quarters (MCPNet's batch: 64)")
    parser.add_argument("--fail-fast", action="store_true", help="stop pytest at its first failure")
    args = parser.parse_args(argv)
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
    for name in stages:
        remaining = BUDGET[args.quick] - (time.time() - start)
        limit = min(LIMITS[name][args.quick] or LIMITS[name][0], remaining)
        if limit < 5:
            report["stages"].append({"stage": name, "status": "failed", "seconds": 0.0, "limit": 0, "details": {},
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
