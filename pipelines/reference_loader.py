"""The reference loader: PyTorch ``Dataset`` + ``DataLoader`` building the same samples in NumPy.

It draws exactly what the DALI pipeline draws (the same :class:`~.sources.WindowSource`
plans every sample), decodes with PyAV and builds the clips with the planner's NumPy twin
of its graph (:meth:`~.planners.base.Planner.reference`), so the two producers yield the
same batch contract (:mod:`.contract`, devices included) and — up to uint8 rounding — the
same pixels. The tests use it as the oracle; the benchmarks
use it as the baseline that a plain NumPy loader would be. Items are whole batches,
because a RAD "inter" clip reads another sample's window.

:func:`reference_batch` is the one assembler of a reference batch; the evaluation views
(:mod:`.evaluation`) use it too. :class:`DeviceLoader` — a ``DataLoader`` whose batches land on
the iterator's device — and :func:`stack_ids` are the plain PyTorch around it, which the
benchmarks' peer loader shares.
"""
from __future__ import annotations

from typing import Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .contract import CLIP_DTYPES, to_device, torch_device
from .planners.base import Planner
from .sources import WindowSource


def reference_batch(source: WindowSource, planner: Planner, epoch: int, iteration: int) -> Dict[str, torch.Tensor]:
    """Batch ``iteration`` of ``epoch`` of a PyAV ``source``, built with ``planner.reference``, on the CPU.

    Keys: ``planner.outputs``, ``label``, ``index`` (the pipeline's output names).
    """
    if source.decoder != "pyav":
        raise ValueError("the reference batch decodes with PyAV: give a source with decoder='pyav'")
    samples = [dict(zip(source.keys, source.sample(epoch, iteration, slot))) for slot in range(source.batch_size)]
    windows = [s["frames"] for s in samples]
    built = [planner.reference(windows, samples, slot) for slot in range(len(samples))]
    batch = {name: torch.from_numpy(np.stack([np.asarray(b[name]) for b in built])) for name in planner.outputs}
    batch.update(stack_ids(samples))
    return batch


def stack_ids(samples: Sequence[Mapping]) -> Dict[str, torch.Tensor]:
    """``label`` and ``index`` of a batch's samples, stacked as int64 tensors."""
    return {key: torch.as_tensor(np.stack([s[key] for s in samples]).astype(np.int64)) for key in ("label", "index")}


class ReferenceBatches(Dataset):
    """Batch ``i`` of one epoch of ``iterator``'s shard, built with NumPy, on the CPU."""

    def __init__(self, iterator, epoch: int = 0):
        self.source = iterator.make_source(decoder="pyav")
        self.planner = iterator.planner
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, iteration: int) -> Dict[str, torch.Tensor]:
        return reference_batch(self.source, self.planner, self.epoch, iteration)


class DeviceLoader:
    """A ``DataLoader`` over ``dataset``, in order, whose batches land on ``device``.

    On GPU the workers' batches are pinned and copied asynchronously, and floating-point
    clips become float16, as the DALI iterator yields them. ``options`` go to the
    ``DataLoader`` (``batch_size``, ``collate_fn``, ``drop_last``).
    """

    def __init__(self, dataset: Dataset, device: torch.device, num_workers: int = 2,
                 prefetch_factor: Optional[int] = 2, **options):
        self.device = device
        self.gpu = device.type == "cuda"
        self.loader = DataLoader(dataset, shuffle=False, num_workers=num_workers, pin_memory=self.gpu,
                                 prefetch_factor=prefetch_factor if num_workers > 0 else None, **options)
        self.clip_dtype = CLIP_DTYPES["gpu"] if self.gpu else None

    def on_device(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """A batch from the workers, on the loader's device."""
        return batch if self.device.type == "cpu" else to_device(batch, self.device, self.clip_dtype)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        for batch in self.loader:
            yield self.on_device(batch)


class ReferenceLoader(DeviceLoader):
    """A :class:`DeviceLoader` over :class:`ReferenceBatches` (whole batches: no batching of its own)."""

    def __init__(self, iterator, epoch: int = 0, num_workers: int = 2, prefetch_factor: Optional[int] = 2):
        super().__init__(ReferenceBatches(iterator, epoch), torch_device(iterator.device, iterator.device_id),
                         num_workers, prefetch_factor, batch_size=None)


def reference_loader(iterator, epoch: int = 0, num_workers: int = 2,
                     prefetch_factor: Optional[int] = 2) -> ReferenceLoader:
    """The reference loader of ``iterator``'s epoch ``epoch``, with ``num_workers`` processes."""
    return ReferenceLoader(iterator, epoch, num_workers, prefetch_factor)
