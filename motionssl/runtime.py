"""Where a process runs: its device, its place among torchrun's ranks, the few collective steps
the commands share, and how they stop on a signal.

``train.py`` and ``eval.py`` both call :func:`start`, which resolves ``auto|cpu|gpu``,
binds the process to its GPU *before* joining the process group (so NCCL's communicator
is created on the right device), and returns a :class:`Runtime`. :func:`rank_zero_first`
lets rank 0 write shared data (the demo dataset) before the others read it;
:func:`local_rank_zero_first` lets one process per machine fill a cache on its disk (the
video index) before the machine's other processes read it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, TypeVar

import torch
import torch.distributed as dist

DEVICE_CHOICES = ("auto", "cpu", "gpu")
T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    kind: str  # "cpu" or "gpu": the pipelines' device
    device: torch.device  # the torch device of this process
    rank: int
    world: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(choice: str) -> str:
    """``auto`` → ``gpu`` when CUDA is available, else ``cpu``; ``gpu`` without CUDA is an error.

    Asks torch about CUDA only for ``auto`` and ``gpu``: the question initialises the CUDA
    driver, which a CPU run must not do (its decoding workers are forked).
    """
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device={choice!r}; choose one of {list(DEVICE_CHOICES)}")
    if choice == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if not available:
        problem = cuda_problem(available)
        if problem:  # an NVIDIA GPU that CUDA cannot use: say why, never fall back to the CPU unasked
            raise ValueError(f"{problem}; or train on the CPU with device=cpu")
    if choice == "gpu" and not available:
        raise ValueError("device=gpu but CUDA is not available; use device=cpu")
    return "gpu" if available else "cpu"


# The oldest NVIDIA driver each CUDA major version runs on (NVIDIA's CUDA release notes:
# CUDA 12.x needs R525 or newer, CUDA 13.x R580 or newer).
DRIVER_FOR_CUDA = {12: 525, 13: 580}


def nvidia_driver() -> Optional[str]:
    """The NVIDIA driver version ``nvidia-smi`` reports (``"550.54.15"``), or ``None`` without an NVIDIA GPU."""
    import subprocess

    try:
        run = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = run.stdout.split()
    return lines[0] if run.returncode == 0 and lines else None


def cuda_problem(available: Optional[bool] = None) -> Optional[str]:
    """Why CUDA cannot be used on a machine that has an NVIDIA GPU, or ``None``.

    ``None`` also where there is no NVIDIA GPU at all (``nvidia-smi`` absent or failing): a
    CPU machine is not a problem. ``available`` is ``torch.cuda.is_available()`` when the
    caller knows it (asking initialises the CUDA driver, so the test suite asks in a child
    process). The usual cause is a driver older than the CUDA build of torch and DALI needs.
    """
    driver = nvidia_driver()
    if driver is None:
        return None
    if available is None:
        available = torch.cuda.is_available()
    if available:
        return None
    built = torch.version.cuda or "none (a CPU build of torch)"
    found = f"an NVIDIA GPU is present (driver {driver}) but CUDA cannot be used by torch {torch.__version__}"
    if torch.version.cuda is None:
        return f"{found}: this torch is a CPU build; install the CUDA build (README, Quick start)"
    major = int(torch.version.cuda.split(".")[0])
    needed = DRIVER_FOR_CUDA.get(major)
    try:
        too_old = needed is not None and int(driver.split(".")[0]) < needed
    except ValueError:
        too_old = False
    if too_old:
        return (f"{found}: it is built for CUDA {built}, which needs driver R{needed} or newer. Update the driver, or "
                "install the CUDA 12 builds of torch and DALI (README, 'Older NVIDIA drivers')")
    return f"{found} (built for CUDA {built}); check `nvidia-smi` and CUDA_VISIBLE_DEVICES"


def start(choice: str = "auto") -> Runtime:
    """Resolve the device and, under torchrun (``WORLD_SIZE`` > 1), join the process group.

    NCCL on GPU (after ``torch.cuda.set_device`` and with ``device_id``, so the
    communicator binds to this rank's GPU at once), gloo on CPU.
    """
    kind = resolve_device(choice)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cpu")
    if kind == "gpu":
        gpus = torch.cuda.device_count()
        if local >= gpus:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", local + 1))
            raise ValueError(f"{local_world} processes on this machine but {gpus} GPU(s) visible (LOCAL_RANK={local}): "
                             f"run `torchrun --nproc_per_node {gpus} ...`, one process per GPU (or device=cpu)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        if kind == "gpu":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return Runtime(kind, device, rank, world, local)


def stop(runtime: Runtime) -> None:
    """Leave the process group (all ranks together)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def rank_zero_first(runtime: Runtime, make: Callable[[], T]) -> T:
    """``make()`` on rank 0, then on every other rank once rank 0 is done (e.g. data written once)."""
    if not runtime.distributed:
        return make()
    result = make() if runtime.main else None
    dist.barrier()
    return result if runtime.main else make()


def local_rank_zero_first(runtime: Runtime, make: Callable[[], T]) -> T:
    """``make()`` on the first process of each machine (``LOCAL_RANK`` 0), then on the machine's other processes.

    For work whose result the first process leaves in a cache on the machine's disk (the
    video index: every video demuxed once per machine, not once per process); the others
    then read the cache. Every rank reaches the barrier even when the first process raises,
    so the others are not left waiting: they run ``make()`` themselves and meet the same
    error. One process: ``make()``.
    """
    if not runtime.distributed:
        return make()
    try:
        if runtime.local_rank == 0:
            return make()
    finally:
        dist.barrier()
    return make()


def any_rank(flag: bool, runtime: Runtime) -> bool:
    """True on every rank if ``flag`` is true on any rank (one tiny all-reduce under DDP).

    A rank that stops alone leaves the others waiting in the next collective until the
    process group times out; deciding together stops them all at the same step.
    """
    return agree(runtime, flag)[0]


def agree(runtime: Runtime, *flags: bool) -> List[bool]:
    """Each flag, true on every rank if it is true on any rank: several decisions in one all-reduce."""
    if not runtime.distributed:
        return [bool(f) for f in flags]
    value = torch.tensor([1.0 if f else 0.0 for f in flags], device=runtime.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return [bool(v) for v in value.tolist()]


class Termination:
    """SIGTERM and SIGINT: at once outside the training steps, at the next step boundary inside them.

    Outside :meth:`deferred` (setting up, the retrieval after training) a signal stops the
    process at once with ``128 + signal`` (143 for SIGTERM, 130 for SIGINT), as a process
    killed by that signal would report; whatever the run had to keep is already on disk.
    Inside it (the training loop) the first signal only sets :attr:`signal`; the loop then
    finishes its step, saves a checkpoint, stops its decoding workers and exits with the
    same status. The same signal often arrives twice — torchrun forwards it to workers that
    got it from the terminal or the job scheduler already — so repeats within ``grace``
    seconds are ignored; a signal after that exits at once. Outside the main thread (no
    signal handlers there) it does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, grace: float = 10.0):
        self.signal: Optional[int] = None
        self.grace = grace
        self._first = 0.0
        self._previous = {}
        self._defer = False

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame):
        if self.signal is None:
            self.signal, self._first = signum, time.monotonic()
            if self._defer:
                return
        elif time.monotonic() - self._first <= self.grace:
            return
        print(f"\nstopped by signal {signum}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    def check(self) -> None:
        """Stop now if a signal arrived: one raised inside a destructor (DALI's pipeline teardown) is
        swallowed by Python, so the code between long stages asks again."""
        if self.signal is not None and not self._defer:
            raise SystemExit(128 + self.signal)

    @contextlib.contextmanager
    def deferred(self):
        """Inside the block a signal waits for the loop to check :attr:`requested`."""
        self._defer = True
        try:
            yield self
        finally:
            self._defer = False

    def _unraisable(self, unraisable):
        """Our own stop, raised inside a destructor and swallowed there: quiet (:meth:`check` acts on it)."""
        if isinstance(unraisable.exc_value, SystemExit) and self.signal is not None:
            return
        self._previous_hook(unraisable)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self._previous:
            sys.unraisablehook = self._previous_hook
        self._previous = {}


@contextlib.contextmanager
def deterministic(enabled: bool = True):
    """Inside the block, the same run gives the same bits: deterministic kernels only.

    ``torch.use_deterministic_algorithms`` (an error names any op without a deterministic
    kernel), oneDNN's and cuDNN's deterministic modes with cuDNN's autotuner off, and the
    cuBLAS workspace setting its deterministic mode needs (set before cuBLAS starts). The
    samples are a pure function of the seed anyway; this pins the arithmetic. The settings
    before the block are restored after it. ``enabled=False`` changes nothing.
    """
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.mkldnn.deterministic,
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.deterministic = True
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.mkldnn.deterministic = previous[1]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2:]


def barrier(runtime: Runtime) -> None:
    """Wait for every rank (a no-op in one process)."""
    if runtime.distributed:
        dist.barrier()
