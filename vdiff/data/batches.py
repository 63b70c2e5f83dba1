"""Resumable random batches for step-based training.

Batch k of the stream is a pure function of (seed, k): epoch e = k // batches_per_epoch shuffles the
dataset with a generator seeded by (seed, e), and in DDP each rank takes its own slice of that epoch.
The loaders count the batches they hand out and save that count through `state_dict`, which
Lightning stores in the checkpoint (stateful loaders) and gives back on resume, so a resumed run sees
exactly the batches a straight run would have seen.
"""
import torch
from torch.utils.data import DataLoader


def _identity(batch):
    return batch


class IndexBatches:
    """Infinite stream of (batch_size,) index tensors over range(n), starting at batch `start`."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size * world_size > n:
            raise ValueError(f"data.batch_size={batch_size} (x {world_size} ranks) exceeds the {n} training examples")
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.per_epoch = n // (batch_size * world_size)
        self.start = 0

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        k, epoch, perm = self.start, None, None
        while True:
            e, j = divmod(k, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self._perm(e)
            lo = (j * self.world_size + self.rank) * self.batch_size
            yield perm[lo : lo + self.batch_size]
            k += 1


class _Counting:
    """Counts consumed batches; the count is the loader's checkpointed state."""

    def __init__(self, index: IndexBatches):
        self.index = index
        self.consumed = 0

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])


class TensorBatches(_Counting):
    """Draws batches by indexing in-memory tensors directly: on the accelerator (`on_device`) no
    DataLoader, worker or host-to-device copy is involved."""

    def __init__(self, index: IndexBatches, collate):
        super().__init__(index)
        self.collate = collate

    def __iter__(self):
        self.index.start = self.consumed
        for idx in self.index:
            self.consumed += 1
            yield self.collate(idx)


class LoaderBatches(_Counting):
    """The same stream through a torch DataLoader with worker processes and pinned memory."""

    def __init__(self, index: IndexBatches, dataset, num_workers: int = 0, pin_memory: bool = False):
        super().__init__(index)
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory

    def __iter__(self):
        self.index.start = self.consumed
        loader = DataLoader(
            self.dataset, batch_sampler=self.index, num_workers=self.num_workers, collate_fn=_identity,
            pin_memory=self.pin_memory, persistent_workers=False,
        )
        for batch in loader:
            self.consumed += 1
            yield batch
