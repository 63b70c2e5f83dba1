"""MNIST and Fashion-MNIST as a LightningDataModule of dict batches.

Batch: {"x": (B, 1, 28, 28) float in [-1, 1], "label": (B,) long, and "cond" = label when
`conditional`}. Files are read from `<root>/<dataset>/raw/*-ubyte[.gz]` (torchvision's layout);
with `download` and no files there, torchvision fetches them into root. The .gz files are checked
against torchvision's published MD5s on first use (`vdiff.data.verify`). Splits: train = the first
60000 - val_size training images, val = the last val_size, test = the 10000 test images.
"""

import math
import os
import shutil

import lightning as L
import torch
from torch.utils.data import DataLoader

from vdiff.contracts import DataDefaults
from vdiff.data.batches import IndexBatches, TensorBatches, batches_done, eval_loader, loader_batches
from vdiff.data.idx import find_idx, read_idx
from vdiff.data.verify import verify
from vdiff.outputs import log_grid, write_images

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_split(root: str, dataset: str, split: str, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 28, 28) and long labels (N,) of the 'train' or 'test' file pair."""
    folder = os.path.join(root, dataset, "raw")
    paths = [find_idx(folder, stem) for stem in _FILES[split]]
    if None in paths and download:
        _download(root, dataset)
        paths = [find_idx(folder, stem) for stem in _FILES[split]]
    for stem, path in zip(_FILES[split], paths):
        if path is None:
            raise FileNotFoundError(
                f"{os.path.join(folder, stem)}[.gz] not found: point data.root (or VDIFF_DATA_DIR) at a folder holding {dataset}/raw/"
            )
    for path in paths:
        verify(path, os.path.relpath(path, root))
    images, labels = (read_idx(p) for p in paths)
    return images[:, None], labels.long()


def _first_missing(path: str) -> str | None:
    """The outermost folder of `path` (itself included) that does not exist yet, or None."""
    path = os.path.abspath(path)
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _download(root: str, dataset: str) -> None:
    """torchvision's download into <root>/<dataset>/raw; on failure the folders it made are removed again,
    so a wrong data.root is left as it was."""
    import torchvision

    created = _first_missing(os.path.join(root, dataset))
    try:
        getattr(torchvision.datasets, dataset)(root, train=True, download=True)
        getattr(torchvision.datasets, dataset)(root, train=False, download=True)
    except Exception as e:  # offline, or a server refused: say where the files are expected
        if created:
            shutil.rmtree(created, ignore_errors=True)
        raise FileNotFoundError(
            f"could not download {dataset} into {root} ({e}); put the IDX files in {root}/{dataset}/raw/"
        ) from e


class _Split(torch.utils.data.Dataset):
    """uint8 images + labels; `__getitems__` fetches a whole batch with one indexing op."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, conditional: bool):
        self.images = images
        self.labels = labels
        self.conditional = conditional

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, idx) -> dict:
        idx = torch.as_tensor(idx, device=self.images.device)
        batch = {"x": self.images[idx].float() / 127.5 - 1, "label": self.labels[idx]}
        if self.conditional:
            batch["cond"] = batch["label"]
        return batch

    def __getitem__(self, i):
        return self.__getitems__([i])


class MNISTDataModule(DataDefaults, L.LightningDataModule):
    def __init__(
        self,
        root: str = "data",
        dataset: str = "MNIST",
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        on_device: bool = False,
        val_size: int = 5000,
        conditional: bool = False,
        download: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if dataset not in ("MNIST", "FashionMNIST"):
            raise ValueError(f"data.dataset={dataset!r} is not one of MNIST, FashionMNIST")
        self.root = root
        self.dataset = dataset
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.on_device = on_device
        self.val_size = val_size
        self.conditional = conditional
        self.download = download
        self.seed = seed
        self.shape = (1, 28, 28)  # of one example, (C, H, W)
        self.num_classes = 10 if conditional else None  # classes of batch["cond"], None when unconditional
        self.splits: dict[str, _Split] = {}

    def prepare_data(self) -> None:
        for split in _FILES:
            load_split(self.root, self.dataset, split=split, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, labels = load_split(self.root, self.dataset, "train")
        n = len(labels) - self.val_size
        test_images, test_labels = load_split(self.root, self.dataset, "test")
        self.splits = {
            "train": _Split(images[:n], labels[:n], self.conditional),
            "val": _Split(images[n:], labels[n:], self.conditional),
            "test": _Split(test_images, test_labels, self.conditional),
        }

    def reference_images(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The first n images of a split as float (N, 1, 28, 28) in [0, 1], for metrics."""
        self.setup()
        return self.splits[split].images[:n].float() / 255

    def reference_labels(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The (N,) long labels of `reference_images(split, n)`."""
        self.setup()
        return self.splits[split].labels[:n]

    def write_samples(self, samples: torch.Tensor, out_dir: str) -> list[str]:
        return write_images(samples, out_dir)

    def log_samples(self, trainer, samples: torch.Tensor) -> None:
        log_grid(trainer, "samples", samples, nrow=int(math.sqrt(len(samples))))

    def train_dataloader(self):
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        split = self.splits["train"]
        index = IndexBatches(
            len(split), self.batch_size, seed=self.seed, rank=rank, world_size=world, start=batches_done(trainer)
        )
        if self.on_device:
            device = trainer.strategy.root_device if trainer else torch.device("cpu")
            split = _Split(split.images.to(device), split.labels.to(device), split.conditional)
            return TensorBatches(index, split.__getitems__)
        return loader_batches(index, split, self.num_workers, pin_memory=torch.cuda.is_available())

    def _eval_loader(self, split: str) -> DataLoader:
        return eval_loader(self.splits[split], self.eval_batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
