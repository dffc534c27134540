"""What a stage of the GPU check (:mod:`benchmarks.gpu_check`) starts, and what it uses of the device.

:func:`run_child` runs a stage's command with a time limit and leaves nothing it started
running (torchrun's workers in sessions of their own, DALI's); :class:`DeviceSampler` reads
the device's memory in use and NVDEC's utilisation through NVML while a stage runs.
"""
from __future__ import annotations

import os
import subprocess
import time
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    import psutil

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
