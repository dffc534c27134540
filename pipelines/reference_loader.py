"""The reference loader: PyTorch ``Dataset`` + ``DataLoader`` building the same samples in NumPy.

It draws exactly what the DALI pipeline draws (the same :class:`~.sources.WindowSource`
plans every sample), decodes with PyAV and builds the clips with :mod:`.reference`, so
the two producers yield the same batch contract and — up to uint8 rounding — the same
pixels. The tests use it as the oracle; the benchmarks use it as the baseline that a
plain PyTorch data loader would be. Items are whole batches, because a RAD "inter" clip
reads another sample's window.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .iterators import VideoIterator


class ReferenceBatches(Dataset):
    """Batch ``i`` of the current epoch of ``iterator``'s shard, built with NumPy."""

    def __init__(self, iterator: VideoIterator, epoch: int = 0):
        self.source = iterator.make_source(decoder="pyav")
        self.planner = iterator.planner
        self.outputs = iterator.output_names
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, iteration: int) -> Dict[str, torch.Tensor]:
        keys = self.source.keys
        samples = [dict(zip(keys, self.source.sample(self.epoch, iteration, slot)))
                   for slot in range(self.source.batch_size)]
        windows = [s["frames"] for s in samples]
        built = [self.planner.reference(windows, samples, slot) for slot in range(len(samples))]
        batch = {name: torch.from_numpy(np.stack([np.asarray(b[name]) for b in built]))
                 for name in self.planner.outputs}
        batch["label"] = torch.from_numpy(np.stack([s["label"] for s in samples]))
        batch["index"] = torch.from_numpy(np.stack([s["index"] for s in samples]))
        return batch


def reference_loader(iterator: VideoIterator, epoch: int = 0, num_workers: int = 2,
                     prefetch_factor: Optional[int] = 2) -> DataLoader:
    """A ``DataLoader`` over :class:`ReferenceBatches` with ``num_workers`` processes."""
    return DataLoader(ReferenceBatches(iterator, epoch), batch_size=None, shuffle=False, num_workers=num_workers,
                      prefetch_factor=prefetch_factor if num_workers > 0 else None,
                      persistent_workers=False)
