"""The batch contract: what every producer of training batches yields, written once and checked.

A batch is a dict of torch tensors, the same from the DALI iterator
(:func:`pipelines.make_iterator`) and from the reference loader
(:mod:`.reference_loader`):

=================  ====================  ============================  ==========================
key                shape                 dtype                         device
=================  ====================  ============================  ==========================
each clip          ``(B, C, T, H, W)``   float16 on GPU, float32 CPU   the pipeline's device
each value         ``(B,)``              as the planner declares       the pipeline's device
``label``          ``(B,)``              int64 (−1: unlabelled)        the pipeline's device
``index``          ``(B,)``              int64 (row of the index)      the pipeline's device
=================  ====================  ============================  ==========================

The clips and values of each method are its planner's ``outputs`` (``values`` names the
per-sample values, e.g. MoQuad ``speed_n, speed_m`` int64, MCPNet ``speed_rgb,
speed_diff`` int64 and ``cip_same`` bool). *Every* key lives on the pipeline's device,
so ``torch.where(batch["cip_same"], ...)`` next to GPU features never mixes devices.

:func:`check_batch` checks a batch against the contract (tests, the GPU acceptance
check); :func:`to_device` moves a CPU batch to a device the way the contract asks (the
reference loader on GPU); :func:`expected` lists what a planner's batch must hold.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Optional, Union

import torch

from .planners.base import Planner

CLIP_DTYPES = {"cpu": torch.float32, "gpu": torch.float16}
"""Dtype of the clips by pipeline device, for torch and the DALI graph (``pipeline.clip_dtype``): float16
halves the GPU memory traffic; CPU math is float32."""
COMMON_VALUES = {"label": torch.int64, "index": torch.int64}


class Entry(NamedTuple):
    """One key of a batch: ``kind`` is ``"clip"`` (B, C, T, H, W) or ``"value"`` (B,)."""

    kind: str
    dtype: torch.dtype


def torch_device(device: str, device_id: int = 0) -> torch.device:
    """The torch device of a pipeline on ``device`` (``"cpu"`` or ``"gpu"``) with ``device_id``."""
    if device == "gpu":
        return torch.device("cuda", device_id)
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device={device!r}; choose 'cpu' or 'gpu'")


def expected(planner: Planner, device: str) -> Dict[str, Entry]:
    """Every key of ``planner``'s batch on a pipeline on ``device``, with its kind and dtype."""
    out = {}
    for name in planner.outputs:
        if name in planner.values:
            out[name] = Entry("value", getattr(torch, planner.values[name]))
        else:
            out[name] = Entry("clip", CLIP_DTYPES[device])
    out.update({k: Entry("value", v) for k, v in COMMON_VALUES.items()})
    return out


def violations(batch: Mapping[str, torch.Tensor], planner: Planner, device: str,
               on: Optional[Union[str, torch.device]] = None, batch_size: Optional[int] = None) -> List[str]:
    """Every way ``batch`` breaks the contract of ``planner`` on ``device`` (empty: it keeps it).

    ``on`` is the torch device every tensor must be on (default: ``"cuda"`` for a GPU
    pipeline, ``"cpu"`` otherwise; a stand-in such as ``"meta"`` where CUDA is absent).
    """
    want = expected(planner, device)
    target = torch.device(on) if on is not None else torch.device("cuda" if device == "gpu" else "cpu")
    problems = []
    missing, extra = sorted(set(want) - set(batch)), sorted(set(batch) - set(want))
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    sizes = set()
    for name, entry in want.items():
        if name not in batch:
            continue
        value = batch[name]
        if not isinstance(value, torch.Tensor):
            problems.append(f"{name}: a {type(value).__name__}, not a torch tensor")
            continue
        if value.device.type != target.type or (target.index is not None and value.device != target):
            problems.append(f"{name}: on {value.device}, the contract says {target}")
        if value.dtype != entry.dtype:
            problems.append(f"{name}: {value.dtype}, the contract says {entry.dtype}")
        ndim = 5 if entry.kind == "clip" else 1
        if value.ndim != ndim:
            problems.append(f"{name}: shape {tuple(value.shape)}, the contract says {ndim} dimensions")
        elif entry.kind == "clip" and value.shape[1] != 3:
            problems.append(f"{name}: {value.shape[1]} channels in (B, C, T, H, W), expected 3")
        if value.ndim:
            sizes.add(value.shape[0])
    if batch_size is not None and sizes - {batch_size}:
        problems.append(f"batch sizes {sorted(sizes)}, expected {batch_size}")
    elif len(sizes) > 1:
        problems.append(f"keys disagree on the batch size: {sorted(sizes)}")
    return problems


def check_batch(batch: Mapping[str, torch.Tensor], planner: Planner, device: str,
                on: Optional[Union[str, torch.device]] = None, batch_size: Optional[int] = None) -> None:
    """Raise ``ValueError`` listing every way ``batch`` breaks the contract (see :func:`violations`).

    Parameters
    ----------
    batch : mapping of str to torch.Tensor
        One batch of an iterator.
    planner : Planner
        The planner that built it (its outputs are expected).
    device : {"cpu", "gpu"}
        The pipeline's device.
    on : str or torch.device, optional
        The torch device every tensor must be on. Default: any device of ``device``'s kind.
    batch_size : int, optional
        The expected first dimension. Default: not checked.
    """
    problems = violations(batch, planner, device, on, batch_size)
    if problems:
        raise ValueError(f"batch breaks the {type(planner).__name__} contract on {device}: " + "; ".join(problems))


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device, clip_dtype: Optional[torch.dtype] = None,
              non_blocking: bool = True) -> Dict[str, torch.Tensor]:
    """``batch`` with every tensor on ``device``; clips (5-D, floating point) cast to ``clip_dtype`` when given.

    From pinned CPU memory the copies are asynchronous (``non_blocking``).
    """
    out = {}
    for name, value in batch.items():
        dtype = clip_dtype if clip_dtype is not None and value.ndim == 5 and value.is_floating_point() else None
        out[name] = value.to(device=device, dtype=dtype, non_blocking=non_blocking)
    return out
