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
# The paper path's own plan, per method: train.py, then eval.py.
PAPER_PATH = {False: {"train": 35, "eval": 15}, True: {"train": 25, "eval": 10}}
VIDEOS = {False: 96, True: 32}  # benchmark videos (H.264 320x240, 4 s) unless --videos says otherwise
OUT_OF_TIME = "out of time"


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


STAGE_MARK = "MOTIONSSL_GPU_CHECK_STAGE"  # in the environment of everything a stage starts: what to stop after it


def stage_processes(mark: str, root: Optional[int] = None) -> list:
    """The running processes a stage started: whatever carries ``mark`` in its environment (a worker torchrun put
    in a session of its own, one re-parented to PID 1 after its launcher exited) and ``root``'s tree."""
    import psutil

    found = {}
    if root is not None:
        try:
            top = psutil.Process(root)
            found.update((p.pid, p) for p in [top] + top.children(recursive=True))
        except psutil.Error:
            pass
    for proc in psutil.process_iter():
        try:
            if proc.pid not in found and proc.environ().get(STAGE_MARK) == mark:
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            pass
    return [p for p in found.values() if p.pid != os.getpid()]


def running(proc) -> bool:
    """Whether a ``psutil.Process`` still runs (a killed process PID 1 has not reaped yet does not)."""
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_processes(procs: list, mark: str) -> int:
    """Kill ``procs`` and, until none is left, whatever else carries ``mark``; how many were killed."""
    killed = set()
    for _ in range(10):  # a launcher being killed may still start a worker: look again until nothing is left
        for proc in procs:
            try:
                if running(proc):
                    proc.kill()
                    killed.add(proc.pid)
            except psutil.Error:
                pass
        deadline = time.time() + 5
        while time.time() < deadline and any(running(p) for p in procs):  # a zombie PID 1 does not reap is gone
            time.sleep(0.05)
        procs = [p for p in stage_processes(mark) if p.pid not in killed and running(p)]
        if not procs:
            break
    return len(killed)


def run_child(cmd: List[str], timeout: float, log_path: str, env: Optional[dict] = None) -> dict:
    """Run ``cmd`` with its output in ``log_path``; ``returncode`` (None when it ran past ``timeout``) and the tail.

    Nothing the command started outlives it: past its limit the whole tree is killed (torchrun's workers, in
    sessions of their own, and DALI's), and whatever it left running when it exited is stopped too (a worker
    holding GPU memory would skew every later stage)."""
    import uuid

    start = time.time()
    mark = uuid.uuid4().hex
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**(os.environ if env is None else env), STAGE_MARK: mark}, start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, timeout))
            tree = []
        except subprocess.TimeoutExpired:
            tree = stage_processes(mark, proc.pid)  # before the launcher dies: its children are still its own
            proc.kill()
            proc.wait()
            code = None
    leftovers = stop_processes([p for p in tree if p.pid != proc.pid], mark)
    with open(log_path, errors="replace") as f:
        tail = f.read()[-3000:]
    result = {"command": " ".join(cmd), "returncode": code, "seconds": round(time.time() - start, 1), "tail": tail}
    if leftovers:
        result["stopped"] = f"{leftovers} process(es) it started were still running and were killed"
    return result


class DeviceSampler:
    """Device memory used — everything on the GPU: PyTorch's cache, DALI's pools, every CUDA context — and
    NVDEC utilisation, read through NVML (``nvidia-smi``) from this process while a stage runs.

    ``sample()`` reads once; as a context manager it reads every ``every`` seconds in a thread. Pools
    and caches keep their high-water mark, so the peak is seen. Without ``nvidia-smi`` nothing is read
    and ``summary()`` says "not measured"."""

    QUERY = "memory.used,memory.total,utilization.decoder"

    def __init__(self, every: float = 0.5):
        self.every, self.rows, self.before = every, [], None

    def sample(self) -> Optional[dict]:
        try:
            run = subprocess.run(["nvidia-smi", "-i", "0", f"--query-gpu={self.QUERY}", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10)
            used, total, decoder = (field.strip() for field in run.stdout.splitlines()[0].split(","))
            row = {"used_mib": float(used), "total_mib": float(total),
                   "nvdec_percent": float(decoder) if decoder.replace(".", "").isdigit() else None}
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            return None
        self.rows.append(row)
        return row

    def __enter__(self):
        import threading

        self.before = self.sample()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(self.every):
            self.sample()

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def summary(self) -> dict:
        if not self.rows:
            return {"device_memory": "not measured (no nvidia-smi)"}
        gib = 2 ** 10
        out = {"device_mem_peak_gib": round(max(r["used_mib"] for r in self.rows) / gib, 2),
               "device_mem_total_gib": round(self.rows[0]["total_mib"] / gib, 1), "samples": len(self.rows)}
        if self.before:
            out["device_mem_before_gib"] = round(self.before["used_mib"] / gib, 2)
        busy = [r["nvdec_percent"] for r in self.rows if r["nvdec_percent"] is not None]
        if busy:
            out.update(nvdec_peak_percent=max(busy), nvdec_mean_percent=round(sum(busy) / len(busy), 1))
        return out


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
        raise StageFailed(f"pytest ran past {limit:.0f} s ({figure} so far)", result, figure, out_of_time=True)
    if run["returncode"] != 0 or counts["failed"] or counts["passed"] == 0:
        raise StageFailed(f"pytest -m '{marks}': {figure} (exit {run['returncode']})", result, figure)
    return result


# How the size probe writes each codec: write_video's codec, or a PyAV encoder of its own (write_video has
# none for HEVC and AV1), and the file's extension.
ENCODERS = {"h264": ("h264", ".mkv"), "vp9": ("vp9", ".webm"), "vp8": ("vp8", ".webm"), "mpeg4": ("mpeg4", ".mkv"),
            "hevc": ("libx265", ".mkv"), "av1": ("libsvtav1", ".mkv")}


def encode(path: str, frames, codec: str) -> None:
    """Write ``(T, H, W, 3)`` uint8 frames as ``codec`` (see ``ENCODERS``)."""
    import av

    from motionssl.pipelines.video_io import write_video

    name = ENCODERS[codec][0]
    if name == codec:
        write_video(path, frames, codec=codec, gop=4)
        return
    with av.open(path, mode="w", format="matroska") as container:
        stream = container.add_stream(name, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def probe_sizes(out_path: str) -> None:
    """In a child process: one JSON line per (codec, size) — whether NVDEC decodes it (``nvdec_sizes``).

    ``outcome``: ``decoded``; ``refused`` (NVDEC's own refusal, ``nvdec`` says why); ``error`` (a failure that
    says nothing about the size: out of memory, a driver error); ``not measured`` (no encoder here)."""
    import numpy as np

    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE, nvdec_probe

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for codec, (min_w, min_h) in sorted(NVDEC_MIN_SIZE.items()):
            for label, (w, h) in (("at the minimum", (min_w, min_h)),
                                  ("below it", (max(2, (min_w // 2) & ~1), max(2, (min_h // 2) & ~1)))):
                row = {"codec": codec, "case": label, "size": [w, h]}
                path = os.path.join(tmp, f"{codec}-{w}x{h}{ENCODERS.get(codec, ('', '.mkv'))[1]}")
                try:
                    encode(path, rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8), codec)
                except Exception as exc:
                    row.update(outcome="not measured", nvdec=f"no encoder here ({type(exc).__name__}: {exc})"[:300])
                else:
                    try:
                        refused = nvdec_probe(path)
                        row.update(outcome="refused" if refused else "decoded", nvdec=refused or "ok")
                    except Exception as exc:
                        row.update(outcome="error", nvdec=f"{type(exc).__name__}: {str(exc)[:200]}")
                with open(out_path, "a") as f:
                    f.write(json.dumps(row) + "\n")


def size_verdict(rows: List[dict]) -> tuple:
    """``(mismatches, figure)`` of the size probe's rows: a codec holds only where both of its rows were measured
    and NVDEC decoded the minimum and refused (itself, not by an error) the size below it."""
    from motionssl.pipelines.decoders.dali import NVDEC_MIN_SIZE

    mismatches, held, unmeasured = [], [], []
    for codec in sorted(NVDEC_MIN_SIZE):
        cases = {r["case"]: r for r in rows if r["codec"] == codec}
        at, below = cases.get("at the minimum"), cases.get("below it")
        if at is None or below is None or "not measured" in (at["outcome"], below["outcome"]):
            unmeasured.append(codec)
            continue
        wrong = []
        if at["outcome"] != "decoded":
            wrong.append(f"NVDEC {'refused' if at['outcome'] == 'refused' else 'failed on'} {at['size']} "
                         f"({at['nvdec']})")
        if below["outcome"] == "decoded":
            wrong.append(f"NVDEC decoded {below['size']}, below the assumed minimum")
        elif below["outcome"] == "error":
            wrong.append(f"the probe of {below['size']} failed ({below['nvdec']}), which says nothing about size")
        mismatches += [f"{codec}: {w}" for w in wrong]
        if not wrong:
            held.append(codec)
    figure = "; ".join(mismatches) if mismatches else (
        f"the assumed minimum sizes hold for {', '.join(held)}" if held else "no codec measured")
    if unmeasured:
        figure += f"; not measured: {', '.join(unmeasured)}"
    return mismatches, figure


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


STEADY_BATCHES = 50  # batches per epoch of the paper path's training list: no prefetch restarts


def paper_lists(args) -> tuple:
    """The benchmark videos as a training list, a gallery list (three quarters) and a query list (a quarter).

    The training list names the gallery's videos again and again, so that an epoch holds at least
    ``STEADY_BATCHES`` batches (one process) at the largest paper batch: timings then describe steady
    training, not DALI's prefetch restarting every step or two at an epoch's end.
    """
    from motionssl.models.training import load_config

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
    if os.path.exists(done):
        os.remove(done)
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from benchmarks.gpu_check import prepare_data; " \
           f"prepare_data({args.out!r}, {args.videos})"
    run = run_child([sys.executable, "-c", code], limit, os.path.join(args.out, "data.log"))
    if run["returncode"] is None:
        raise StageFailed(f"writing and indexing the benchmark videos ran past {limit:.0f} s", run, out_of_time=True)
    if run["returncode"] != 0 or not os.path.exists(done):
        raise StageFailed(f"writing or indexing the benchmark videos failed (exit {run['returncode']}; data.log)", run)
    with open(done) as f:
        data = json.load(f)
    return {**run, **data, "figure": ", ".join(f"{n}: {c} entries" for n, c in data["videos"].items())}


def decode_rate(list_path: str, out_path: str, seconds: float, device: str = "gpu", decoder: str = "dali",
                batch_size: int = 8, block: int = 4) -> None:
    """In a child process: decode ``list_path``'s videos (16-frame windows, nothing else: the decode-only
    pipeline) for about ``seconds`` after the first batch, and write one JSON line per ``block`` batches as it
    goes (``nvdec_rate``: ``device="gpu"``, ``decoder="dali"`` is NVDEC)."""
    from benchmarks.common import close, replicate, synchronizer
    from benchmarks.decode_only import build_iterator
    from motionssl.pipelines.index import load_index

    index = replicate(load_index(list_path), batch_size * 4096)  # one epoch outlasts the measurement
    it = build_iterator("decode", index, batch_size, device, 0, {"window": 16}, decoder=decoder,
                        num_workers=0 if decoder == "dali" else 2)
    sync = synchronizer(device)
    batches = iter(it)
    next(batches)  # the build and the first batch: not timed
    frames = batch_size * it.planner.window
    end = time.perf_counter() + seconds
    while True:
        sync()
        start = time.perf_counter()
        for _ in range(block):
            next(batches)
        sync()
        took = time.perf_counter() - start
        with open(out_path, "a") as f:
            f.write(json.dumps({"frames": block * frames, "seconds": took, "frames_per_s": block * frames / took}) + "\n")
        if time.perf_counter() >= end:
            break
    batches.close()
    close(it)


def stage_nvdec_rate(args, limit) -> dict:
    rows_path = os.path.join(args.out, "nvdec_rate.jsonl")
    if os.path.exists(rows_path):
        os.remove(rows_path)
    measure = max(2.0, limit * 0.4)  # the rest: the child's imports, the pipeline build, the first batch
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from benchmarks.gpu_check import decode_rate; " \
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
        verdict = {"passed": "pass", OUT_OF_TIME: "OUT OF TIME"}.get(s["status"], "FAIL")
        lines.append(f"| {s['stage']} | {verdict} | {s['seconds']} "
                     f"({s.get('limit', '–')}) | {s['message'] or s.get('figure', '')} |")
    for s in report["stages"]:
        d = s["details"]
        if s["stage"] == "pytest" and d.get("cases"):
            lines += ["", "pytest:", ""] + [f"- {c['outcome']}: `{c['test']}` ({c['seconds']} s)" for c in d["cases"]]
        if s["stage"] == "nvdec_sizes" and d.get("rows"):
            lines += ["", "| codec | case | size | NVDEC |", "|---|---|---|---|"]
            lines += [f"| {r['codec']} | {r['case']} | {r['size'][0]}x{r['size'][1]} | {r.get('outcome', '')}"
                      f"{'' if r['nvdec'] == 'ok' else ': ' + r['nvdec']} |" for r in d["rows"]]
        if s["stage"] == "nvdec_rate" and d.get("rows"):
            lines += ["", f"NVDEC: {d['frames_per_s']} frames/s decoded (16-frame windows of H.264 320x240, batch 8, "
                          f"synchronised, after the first batch); NVDEC utilisation "
                          + (f"{d['nvdec_mean_percent']} % mean, {d['nvdec_peak_percent']:.0f} % peak"
                             if "nvdec_peak_percent" in d else "not reported by NVML here") + "."]
        if s["stage"] == "paper_path":
            lines += ["", "Steady state: the synchronised steps after a 5-step warm-up (and after MoQuad's phase switch).",
                      "Device memory: all of it in use at the peak (NVML: PyTorch's cache, DALI's pools, every CUDA "
                      "context), and before the run.", "",
                      "| method | s/step | clips/s | waiting for data (share of step time) | PyTorch peak | device "
                      "memory at peak (before) | retrieval top-1 (toy data) |", "|---|---|---|---|---|---|---|"]
            for name in paper_methods():
                e = d.get(name, {})
                if isinstance(e, dict) and "clips_per_s" in e:
                    lines.append(f"| {name} | {e['step_s']} | {e['clips_per_s']} | "
                                 f"{100 * e['data_wait']:.1f} % | {e['gpu_mem_gib']} GiB | "
                                 f"{e.get('device_mem_peak_gib', '–')} GiB ({e.get('device_mem_before_gib', '–')}) | "
                                 f"{e.get('retrieval_top1', '–')} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: str) -> None:
    from motionssl.pipelines import files

    files.write_text(os.path.join(out, "gpu_check.json"), json.dumps(report, indent=1, default=str))
    files.write_text(os.path.join(out, "gpu_check.md"), markdown(report))


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
    from motionssl.models.runtime import cuda_problem

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
