"""The one DALI pipeline definition: window source + planner + device → pipeline.

Training (:mod:`.iterators`), evaluation (:mod:`.evaluation`), the benchmarks and the
tests all build their pipelines here, so there is one place that decides how a sample
becomes a batch:

    window source (external source; PyAV, torchcodec or DALI decoder) → planner.graph → outputs

and one place that writes the **batch contract** into the graph (docs/design.md, "Batch
contract"): the planner's outputs, then ``label`` and ``index``; clips in float16 on the
GPU and float32 on the CPU; and *every* output on the pipeline's device. DALI would
otherwise hand per-sample values that never touched the GPU (labels, speeds, flags) to
torch as CPU tensors next to GPU clips; here they are copied to the GPU inside the graph,
so a consumer never mixes devices.

    pipe = build_pipeline(source, planner, device="gpu", num_workers=8, num_threads=4)
    names = output_names(planner)            # the order of pipe's outputs
"""
from __future__ import annotations

import glob
import importlib.util
import logging
import os
import sys
from typing import Dict, Optional, Tuple

from nvidia.dali import backend, fn, pipeline_def, types

from .contract import CLIP_DTYPES
from .decoders import DECODERS, DEVICES
from .planners.base import Planner
from .sources import WindowSource

log = logging.getLogger(__name__)


def clip_dtype(device: str) -> types.DALIDataType:
    """DALI's dtype of the clips on ``device``: the batch contract's (``contract.CLIP_DTYPES``), in DALI's terms."""
    return types.to_dali_type(CLIP_DTYPES[device])


def output_names(planner: Planner) -> Tuple[str, ...]:
    """Names of a pipeline's outputs, in order: the planner's outputs, then ``label`` and ``index``."""
    return tuple(planner.outputs) + ("label", "index")


def windows(source: WindowSource, device: str = "cpu", num_workers: int = 2,
            prefetch: int = 2) -> Dict[str, object]:
    """Graph op: the external source plus the decoder; returns DataNodes by name.

    ``"window"`` is ``(F, H, W, 3)`` uint8 ``FHWC`` on ``device`` (``F = W`` frames, or only those the clips
    read when the planner names them, ``Planner.window_keys``); ``"label"`` and
    ``"index"`` are int64 scalars; every planner key is a per-sample CPU array.
    ``num_workers=0`` runs the callback in the main process (debugging, tiny tests).
    """
    if device not in DEVICES:
        raise ValueError(f"device={device!r}; choose one of {DEVICES}")
    keys = source.keys
    layouts = ["FHWC" if k == "frames" else "" for k in keys]
    parallel = {"parallel": True, "prefetch_queue_depth": prefetch} if num_workers > 0 else {}
    outputs = fn.external_source(source=source, num_outputs=len(keys), batch=False, layout=layouts, **parallel)
    nodes = dict(zip(keys, outputs))
    decoder = DECODERS[source.decoder]
    if decoder.in_graph:
        window = decoder.graph(nodes.pop("encoded"), nodes.pop("window_start"), source.window, device,
                               rotation=nodes.pop("rotation", None))
    else:
        window = nodes.pop("frames")
        if device == "gpu":
            window = window.gpu()
    nodes["window"] = window
    return nodes


def method_graph(source: WindowSource, planner: Planner, device: str = "cpu", num_workers: int = 2,
                 prefetch: int = 2) -> Dict[str, object]:
    """The graph of one pipeline, inside a pipeline's scope: DataNodes by :func:`output_names`."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r}; choose one of {DEVICES}")
    nodes = windows(source, device, num_workers, prefetch)
    window = nodes.pop("window")
    built = planner.graph(window, nodes, clip_dtype(device))
    missing = [k for k in planner.outputs if k not in built]
    if missing:
        raise KeyError(f"planner {type(planner).__name__}.graph did not build {missing}")
    out = {k: built[k] for k in planner.outputs}
    out.update(label=nodes["label"], index=nodes["index"])
    if device == "gpu":  # the contract: every key on the pipeline's device
        out = {k: v.gpu() if v.device == "cpu" else v for k, v in out.items()}
    return out


@pipeline_def
def _method_pipeline(source: WindowSource, planner: Planner, device: str, num_workers: int, prefetch: int):
    return tuple(method_graph(source, planner, device, num_workers, prefetch).values())


DEFAULT_THREADS = {"cpu": 2, "gpu": 4}
"""DALI threads when none are given: on GPU they also drive the NVDEC decoder, which feeds
several sessions at once; on CPU the decoding workers need the remaining cores."""


def build_pipeline(source: WindowSource, planner: Planner, *, device: str = "cpu", num_workers: int = 2,
                   num_threads: Optional[int] = None, prefetch: int = 2, device_id: int = 0,
                   seed: Optional[int] = None):
    """The DALI pipeline of ``planner`` over ``source`` on ``device`` (not yet built; iterators build it).

    ``num_workers`` decoding processes (0: the source runs in this process), ``num_threads``
    DALI threads (default :data:`DEFAULT_THREADS`; on GPU also the thread pool of the NVDEC
    decoder), ``prefetch`` batches queued.

    Parameters
    ----------
    source : WindowSource
        The samples (its batch size is the pipeline's).
    planner : Planner
        The method's graph.
    device : {"cpu", "gpu"}, default "cpu"
        Where the graph runs.
    num_workers : int, default 2
        Decoding processes (0: the source runs in this process).
    num_threads : int, optional
        DALI threads. Default :data:`DEFAULT_THREADS` (on GPU also NVDEC's thread pool).
    prefetch : int, default 2
        Batches queued.
    device_id : int, default 0
        The GPU.
    seed : int, optional
        DALI's own seed (the planner draws every random parameter itself).
    """
    if device not in DEVICES:
        raise ValueError(f"device={device!r}; choose one of {DEVICES}")
    check_counts(num_workers, num_threads, prefetch)
    if device == "cpu":
        announce_compilation()
    threads = num_threads or DEFAULT_THREADS[device]
    return _method_pipeline(source, planner, device, num_workers, prefetch, batch_size=source.batch_size,
                            num_threads=threads, device_id=device_id if device == "gpu" else None,
                            py_num_workers=max(1, num_workers), py_start_method=start_method(device),
                            prefetch_queue_depth=prefetch, seed=seed)


def check_counts(num_workers: int, num_threads: Optional[int], prefetch: int) -> None:
    """A ``ValueError`` naming ``num_workers`` (>= 0), ``num_threads`` (>= 1 or None) or ``prefetch`` (>= 1) when
    the pipeline cannot use it (checked where an iterator is made, before anything is read)."""
    for name, value, least in (("num_workers", num_workers, 0), ("num_threads", num_threads, 1),
                               ("prefetch", prefetch, 1)):
        if not (value is None and name == "num_threads") and (
                isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"{name}={value!r}; expected a whole number >= {least}"
                             + (" or None (the default)" if name == "num_threads" else ""))


def start_method(device: str) -> str:
    """How DALI starts the decoding workers: ``fork`` (fast) unless CUDA forbids it.

    A forked child of a process whose CUDA *driver* is initialised cannot use CUDA, and
    DALI refuses to fork then. ``torch.cuda.is_available()`` alone may initialise the
    driver, so the test is DALI's own (``backend.IsDriverInitialized``), not torch's
    ``is_initialized``. A GPU pipeline always spawns: the training loop initialises CUDA
    before the pipeline's workers would start.
    """
    if device == "gpu" or backend.IsDriverInitialized():
        return "spawn"
    return "fork"


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_codec_threads(num_workers: int) -> int:
    """PyAV codec threads per window for ``num_workers`` decoding processes: 1 once they fill the cores."""
    return 1 if num_workers >= usable_cores() else 0


KERNELS = "motionssl.pipelines.ops._kernels"
COMPILE_SECONDS = 20
"""About how long the first process on a machine compiles the CPU clip operators (benchmarks/first_batch.py)."""
_announced = False


def kernels_cached() -> bool:
    """Whether Numba's cache holds compiled CPU clip operators at least as new as their source.

    Numba writes them beside the source (``ops/__pycache__``) or under ``NUMBA_CACHE_DIR``;
    where it has fallen back elsewhere (a read-only install), this says ``False`` and the
    message below is said once per process although nothing is compiled.
    """
    spec = importlib.util.find_spec(KERNELS)
    if spec is None or not spec.origin:
        return False
    source = spec.origin
    root = os.environ.get("NUMBA_CACHE_DIR")
    pattern = (os.path.join(root, "**", "_kernels.*.nbi") if root
               else os.path.join(os.path.dirname(source), "__pycache__", "_kernels.*.nbi"))
    stamp = os.path.getmtime(source)
    return any(os.path.getmtime(f) >= stamp for f in glob.glob(pattern, recursive=True))


def announce_compilation() -> None:
    """Say in one line, once per process, that the first CPU batch waits for Numba to compile the clip operators.

    Only when they will be compiled: Numba is installed, the fused operators are not turned
    off (``MOTIONSSL_FUSED=0``), this process has not loaded them yet and the cache holds none.
    """
    global _announced
    if _announced or KERNELS in sys.modules or os.environ.get("MOTIONSSL_FUSED", "1") == "0":
        return
    _announced = True
    if importlib.util.find_spec("numba") is None or kernels_cached():
        return
    log.warning("compiling the CPU clip operators once, about %d s; cached for later runs", COMPILE_SECONDS)
