"""Run a few DALI ops on NumPy batches, on CPU or GPU, and get NumPy back."""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np
from nvidia.dali import fn, pipeline_def


def run_ops(build: Callable, inputs: Dict[str, Sequence[np.ndarray]], device: str = "cpu",
            layouts: Dict[str, str] = None) -> List[List[np.ndarray]]:
    """``build(**nodes) -> tuple of DataNodes`` on external-source nodes fed with ``inputs``.

    ``inputs[name]`` is a batch (a list of per-sample arrays). Nodes named in ``layouts``
    carry that layout and, on ``device="gpu"``, live on the GPU; other inputs (per-sample
    parameters) stay on the CPU, as argument inputs do in the real pipelines.
    """
    layouts = layouts or {}
    batch_size = len(next(iter(inputs.values())))

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=0 if device == "gpu" else None,
                  exec_dynamic=True)
    def pipe():
        nodes = {}
        for name, batch in inputs.items():
            node = fn.external_source(source=_feeder(batch), batch=True, layout=layouts.get(name, ""))
            nodes[name] = node.gpu() if device == "gpu" and name in layouts else node
        out = build(**nodes)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    p = pipe()
    p.build()
    results = p.run()
    return [[np.array(t.as_cpu() if hasattr(t, "as_cpu") else t) for t in _samples(r)] for r in results]


def _feeder(batch):
    return lambda: list(batch)


def _samples(tensor_list):
    tl = tensor_list.as_cpu() if hasattr(tensor_list, "as_cpu") else tensor_list
    return [tl[i] for i in range(len(tl))]


def decode_windows(index, samples, length: int, decoder: str, device: str = "cpu"):
    """The decoded windows ``(length, H, W, 3)`` uint8 of ``samples`` ``[(video, start), ...]``, in order,
    through the pipeline's window source and ``decoder`` on ``device`` (NumPy on the host)."""
    from motionssl.pipelines import build_pipeline
    from motionssl.pipelines.planners.base import Planner
    from motionssl.pipelines.sources import WindowSource

    class Window(Planner):
        outputs = ("window",)
        window = length

        def draw(self, *args):
            return {}

        def graph(self, window, params, dtype):
            return {"window": window}

    batch = 2 if len(samples) % 2 == 0 else 1
    source = WindowSource(index, Window(), batch_size=batch, shuffle=False, samples=samples, decoder=decoder)
    pipe = build_pipeline(source, source.planner, device=device, num_workers=0)
    pipe.build()
    out = []
    for _ in range(len(source)):
        windows = pipe.run()[0]
        windows = windows.as_cpu() if hasattr(windows, "as_cpu") else windows
        out += [np.array(windows[i]) for i in range(batch)]
    return out[:len(samples)]
