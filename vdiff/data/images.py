"""Image datasets held in memory as uint8, shared by the image-folder and CIFAR-10 datamodules.

A subclass of `ImageDataModule` reads or decodes its files once (`prepare_data` / `setup`) into
uint8 arrays (N, C, S, S) and labels (N,) per split; batches are then indexed in memory, or on the
accelerator with `on_device`, exactly like MNIST's: {"x": (B, C, R, R) float in [-1, 1], "label":
(B,) long, and "cond" = label when `conditional`}.

Augmentation stays a pure function of the batch number so a resumed run sees the batches a straight
run would: training batch k (`NumberedBatches` hands the split (k, indices)) draws its random crop
offsets and horizontal flips from a generator seeded by (seed, rank, k), never from the global RNG.
When the stored side S is larger than the resolution R (`crop_size` = R < S), training batches take
a random R x R window per example and validation, test and the reference images take the centre one.
"""

import math
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from vdiff.contracts import DataDefaults
from vdiff.data.batches import IndexBatches, TensorBatches, batches_done, eval_loader, loader_batches
from vdiff.outputs import log_grid, write_images


class Numbered(NamedTuple):
    """A training batch's number in the stream (its augmentation seed) and its example indices."""

    k: int
    idx: torch.Tensor


class NumberedBatches(IndexBatches):
    """IndexBatches that also say which batch of the stream each one is: Numbered(k, indices)."""

    def __iter__(self):
        for i, idx in enumerate(super().__iter__()):
            yield Numbered(self.start + i, idx)


def batch_generator(seed: int, rank: int, k: int) -> torch.Generator:
    """The CPU generator of training batch k's augmentation on `rank`, apart from the global RNG."""
    state = np.random.SeedSequence([seed, rank, k, 0x1F11D]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


class ImageSplit(torch.utils.data.Dataset):
    """uint8 images (N, C, S, S) and long labels (N,); `__getitems__` fetches a whole batch with one
    indexing op. Given Numbered(k, indices) (a training batch) it augments: a random `crop_size`
    window per example when S > crop_size, and a horizontal flip with probability 1/2 when `flip`,
    both drawn from `batch_generator(seed, rank, k)`; given plain indices it takes the centre window."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        conditional: bool,
        crop_size: int | None = None,
        flip: bool = False,
        seed: int = 0,
        rank: int = 0,
    ):
        self.images = images
        self.labels = labels
        self.conditional = conditional
        self.crop_size = crop_size or images.shape[-1]
        self.flip = flip
        self.seed = seed
        self.rank = rank

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device, rank: int = 0) -> "ImageSplit":
        """The same split with its arrays on `device`, augmenting as `rank`."""
        return ImageSplit(
            self.images.to(device),
            self.labels.to(device),
            self.conditional,
            crop_size=self.crop_size,
            flip=self.flip,
            seed=self.seed,
            rank=rank,
        )

    def center(self, images: torch.Tensor) -> torch.Tensor:
        """The centre crop_size x crop_size window of (B, C, S, S) images."""
        lo = (images.shape[-1] - self.crop_size) // 2
        return images[..., lo : lo + self.crop_size, lo : lo + self.crop_size]

    def _augment(self, images: torch.Tensor, k: int) -> torch.Tensor:
        b, c, s, _ = images.shape
        r = self.crop_size
        g = batch_generator(self.seed, self.rank, k)
        offsets = torch.randint(0, s - r + 1, (b, 2), generator=g)  # drawn first, whatever the flag: fixed order
        flips = torch.rand(b, generator=g) < 0.5
        if s > r:
            steps = torch.arange(r)
            rows = (offsets[:, :1] + steps).to(images.device)  # (B, R)
            cols = (offsets[:, 1:] + steps).to(images.device)
            batch = torch.arange(b, device=images.device)[:, None, None, None]
            chans = torch.arange(c, device=images.device)[None, :, None, None]
            images = images[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]
        if self.flip:
            images = torch.where(flips.to(images.device)[:, None, None, None], images.flip(-1), images)
        return images

    def __getitems__(self, idx) -> dict:
        k = None
        if isinstance(idx, Numbered):
            k, idx = idx
        idx = torch.as_tensor(idx, device=self.images.device)
        images = self.images[idx]
        images = self._augment(images, k) if k is not None else self.center(images)
        batch = {"x": images.float() / 127.5 - 1, "label": self.labels[idx]}
        if self.conditional:
            batch["cond"] = batch["label"]
        return batch

    def __getitem__(self, i):
        return self.__getitems__([i])


class ImageDataModule(DataDefaults, L.LightningDataModule):
    """In-memory uint8 image splits ("train", "val", "test") with MNIST's loaders, metrics hooks and
    sample writers. A subclass sets `shape` (C, R, R) and `classes` (the class names, or None) and
    fills `self.splits` with ImageSplit objects in `setup()`; `classes` is kept in the checkpoint
    (`state_dict`), and `check_classes` refuses data whose classes differ from the checkpoint's."""

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        on_device: bool = False,
        conditional: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.on_device = on_device
        self.conditional = conditional
        self.seed = seed
        self.shape: tuple = ()  # of one example, (C, R, R); the subclass sets it
        self.class_names: list[str] | None = None  # class names of labels 0..K-1, once known
        self.checkpoint_classes: list[str] | None = None  # the classes a restored checkpoint was trained on
        self.splits: dict[str, ImageSplit] = {}

    @property
    def num_classes(self) -> int | None:
        """Classes of batch["cond"]: None when unconditional or before the classes are known."""
        classes = self.class_names if self.class_names is not None else self.checkpoint_classes
        return len(classes) if self.conditional and classes else None

    def label_names(self) -> list[str] | None:
        """The names of labels 0..K-1 (the data's, else the checkpoint's); None when unconditional."""
        classes = self.class_names if self.class_names is not None else self.checkpoint_classes
        return list(classes) if self.conditional and classes else None

    def info(self) -> dict:
        """`${data_info.channels}`, `.resolution` and `.num_classes` for the model configs."""
        return {"channels": self.shape[0], "resolution": self.shape[-1], "num_classes": self.num_classes}

    def data_name(self) -> str:
        """How an error names this data's location (e.g. `data.root=/path`)."""
        return f"data.root={getattr(self, 'root', '?')}"

    def check_classes(self) -> None:
        """ValueError when both the data's classes and a checkpoint's are known and differ."""
        if not self.conditional or self.class_names is None or self.checkpoint_classes is None:
            return
        if list(self.class_names) != list(self.checkpoint_classes):
            raise ValueError(
                f"{self.data_name()} holds the classes {list(self.class_names)} but the checkpoint was trained on "
                f"{list(self.checkpoint_classes)}; point data.root at the checkpoint's data"
            )

    def state_dict(self) -> dict:
        classes = self.class_names if self.class_names is not None else self.checkpoint_classes
        return {"class_names": list(classes) if classes is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """The checkpoint's class names: they give `num_classes` without reading the data (sample.py), and
        must equal the data's once it is read."""
        if state.get("class_names") is not None:
            self.checkpoint_classes = list(state["class_names"])
        self.check_classes()

    def reference_images(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The first n images of a split (centre windows) as float (N, C, R, R) in [0, 1], for metrics."""
        self.setup()
        s = self.splits[split]
        return s.center(s.images[:n]).float() / 255

    def reference_labels(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The (N,) long labels of `reference_images(split, n)`."""
        self.setup()
        return self.splits[split].labels[:n]

    def write_samples(self, samples: torch.Tensor, out_dir: str) -> list[str]:
        return write_images(samples, out_dir)

    def log_samples(self, trainer, samples: torch.Tensor) -> None:
        log_grid(trainer, "samples", samples, nrow=math.ceil(math.sqrt(len(samples))))

    def train_dataloader(self):
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        split = self.splits["train"]
        index = NumberedBatches(
            len(split), self.batch_size, seed=self.seed, rank=rank, world_size=world, start=batches_done(trainer)
        )
        if self.on_device:
            device = trainer.strategy.root_device if trainer else torch.device("cpu")
            return TensorBatches(index, split.to(device, rank=rank).__getitems__)
        return loader_batches(index, split.to("cpu", rank=rank), self.num_workers, pin_memory=torch.cuda.is_available())

    def _eval_loader(self, split: str) -> DataLoader:
        return eval_loader(self.splits[split], self.eval_batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
