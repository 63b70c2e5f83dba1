"""Resumable random batches for step-based training.

Batch k of the stream is a pure function of (seed, k): epoch e = k // batches_per_epoch shuffles the
dataset with a generator seeded by (seed, e), and in DDP each rank takes its own slice of that epoch.
A resumed run starts the stream at the number of batches already trained on
(`batches_done(trainer)`), so it sees exactly the batches a straight run would have seen.
Every DataLoader here has its own `generator` (`own_generator()`): a DataLoader without one draws
its base seed from the global RNG each time an iterator is made, so a validation (or a validation
redone after a resume) would shift the training noise that follows it.
"""

import torch
from torch.utils.data import DataLoader


def _identity(batch):
    return batch


def own_generator() -> torch.Generator:
    """A fixed generator for a DataLoader's worker base seeds, apart from the global RNG."""
    return torch.Generator().manual_seed(0)


def batches_done(trainer) -> int:
    """Batches consumed so far: optimizer steps x gradient accumulation (restored on resume)."""
    if trainer is None:
        return 0
    return trainer.global_step * trainer.accumulate_grad_batches


class IndexBatches:
    """Infinite stream of (batch_size,) index tensors over range(n), starting at batch `start`."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        if batch_size * world_size > n:
            raise ValueError(f"data.batch_size={batch_size} (x {world_size} ranks) exceeds the {n} training examples")
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.per_epoch = n // (batch_size * world_size)
        self.start = start

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        k = self.start
        epoch = None
        perm = None
        while True:
            e, j = divmod(k, self.per_epoch)
            if e != epoch:
                epoch = e
                perm = self._perm(e)
            lo = (j * self.world_size + self.rank) * self.batch_size
            yield perm[lo : lo + self.batch_size]
            k += 1


class TensorBatches:
    """Batches made by indexing in-memory tensors directly: with the tensors on the accelerator
    (`on_device`) no DataLoader, worker or host-to-device copy is involved."""

    def __init__(self, index: IndexBatches, fetch):
        self.index = index
        self.fetch = fetch

    def __iter__(self):
        return (self.fetch(idx) for idx in self.index)


def loader_batches(index: IndexBatches, dataset, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """The same stream through a torch DataLoader (worker processes, pinned memory); `dataset`
    fetches a whole batch at once through `__getitems__`."""
    return DataLoader(
        dataset,
        batch_sampler=index,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=_identity,
        generator=own_generator(),
    )


def eval_loader(dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Every example once, in order, in batches fetched whole through `__getitems__` (val / test)."""
    sampler = torch.utils.data.BatchSampler(range(len(dataset)), batch_size, drop_last=False)
    return DataLoader(
        dataset, batch_sampler=sampler, collate_fn=_identity, num_workers=num_workers, generator=own_generator()
    )
