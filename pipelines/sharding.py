"""Which samples each batch of an epoch holds on one shard: equal shard sizes, the epoch's order, padding.

An epoch is an order of the sample ids (videos, or rows of an evaluation's explicit
``(video, window_start)`` pairs): a permutation drawn from ``(seed, epoch)`` alone, or
index order when not shuffled. It is cut into ``num_shards`` equal parts, so every rank
sees the same number of batches: shuffled training drops the remainder (a different few
videos each epoch), evaluation pads by wrapping around. An incomplete last batch is
dropped or padded with the shard's first samples (``last_batch="pad"``), so the repeats
are distinct within the batch.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

LAST_BATCH = ("drop", "pad")


class EpochPlan:
    """The sample ids of every batch of every epoch on shard ``shard_id`` of ``num_shards``.

    Picklable: DALI's worker processes get a copy with the window source. It keeps the
    last epoch's order, so the order is computed once per epoch and process.

    Parameters
    ----------
    total : the number of sample ids (``0 .. total-1``).
    batch_size, seed, shard_id, num_shards : as their names say.
    shuffle : a new permutation every epoch, or index order.
    last_batch : ``"drop"`` the shard's incomplete last batch, or ``"pad"`` it.
    """

    def __init__(self, total: int, batch_size: int, *, seed: int = 0, shard_id: int = 0, num_shards: int = 1,
                 shuffle: bool = True, last_batch: str = "drop"):
        if last_batch not in LAST_BATCH:
            raise ValueError(f"last_batch={last_batch!r}; choose one of {LAST_BATCH}")
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id={shard_id} must lie in [0, num_shards={num_shards})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.total, self.batch_size, self.seed = total, batch_size, int(seed)
        self.shard_id, self.num_shards, self.shuffle = shard_id, num_shards, shuffle
        self.shard_size = total // num_shards if shuffle else -(-total // num_shards)
        if self.shard_size < batch_size:
            raise ValueError(f"each of the {num_shards} shards holds {self.shard_size} samples, fewer than "
                             f"batch_size={batch_size}; lower the batch size or add videos")
        full, rest = divmod(self.shard_size, batch_size)
        self.batches_per_epoch = full + (1 if rest and last_batch == "pad" else 0)
        self._order_epoch: Optional[int] = None
        self._order: Optional[np.ndarray] = None

    def shard_order(self, epoch: int) -> np.ndarray:
        """Sample ids of this shard for ``epoch``, in order (``shard_size`` of them)."""
        if self._order_epoch != epoch:
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch]).permutation(self.total)
            else:
                order = np.arange(self.total)
            need = self.shard_size * self.num_shards
            order = np.resize(order, need) if need > self.total else order
            self._order = order[self.shard_id * self.shard_size:(self.shard_id + 1) * self.shard_size]
            self._order_epoch = epoch
        return self._order

    def batch_ids(self, epoch: int, iteration: int) -> np.ndarray:
        """Sample ids of batch ``iteration`` of ``epoch`` (padding wraps to the shard's start)."""
        pos = iteration * self.batch_size + np.arange(self.batch_size)
        return self.shard_order(epoch)[pos % self.shard_size]
