"""CIFAR-10 from torchvision's python batches, as in-memory uint8 splits (vdiff/data/images.py).

Files: `<root>/cifar-10-batches-py/data_batch_1` .. `data_batch_5` (10000 images each) and
`test_batch`, Python pickles of {b"data": (N, 3072) uint8 rows (R, G, B planes of 32x32),
b"labels": N ints}, and `batches.meta` for the class names (numbers when it is absent). Splits:
train = the first 50000 - val_size training images, val = the last val_size, test = test_batch.
With `download` and no files there, torchvision downloads and extracts the archive in a temporary
folder, and only a complete cifar-10-batches-py is moved into root: a failed download (offline)
leaves root as it was and is a FileNotFoundError saying where to put the files.

The batches are pickles, which can run code when loaded: read only files you trust (torchvision does
the same). Batch: {"x": (B, 3, 32, 32) in [-1, 1], "label", "cond" when `conditional`}, horizontal
flips drawn per batch from (seed, rank, batch number) with `random_flip` (DDPM's CIFAR-10 recipe).
"""

import os
import pickle
import shutil
import tempfile

import numpy as np
import torch

from vdiff.data.images import ImageDataModule, ImageSplit

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]


def _read_batch(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and long labels (N,) of one python batch; ValueError naming a bad file."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(
            f"data file {path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); replace it with a fresh copy"
        ) from e
    if len(labels) != len(images) or (len(labels) and not (labels.min() >= 0 and labels.max() < 10)):
        raise ValueError(f"data file {path} holds {len(images)} images but labels that do not match them")
    return images, torch.from_numpy(labels)


def _class_names(folder: str) -> list[str]:
    path = os.path.join(folder, "batches.meta")
    if os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                names = pickle.load(f, encoding="latin1").get("label_names")
            if names and len(names) == 10:
                return [str(n) for n in names]
        except Exception as e:
            raise ValueError(f"data file {path} cannot be read ({type(e).__name__}: {e})") from e
    return [str(i) for i in range(10)]


def download(root: str) -> None:
    """torchvision's CIFAR-10 download into a temporary folder; on success its cifar-10-batches-py is
    moved into root. On failure nothing is left in root and a FileNotFoundError names what to put where."""
    import torchvision

    tmp = tempfile.mkdtemp(prefix="vdiff-cifar10-")
    try:
        torchvision.datasets.CIFAR10(tmp, train=True, download=True)
        os.makedirs(root, exist_ok=True)
        shutil.move(os.path.join(tmp, FOLDER), os.path.join(root, FOLDER))
    except Exception as e:  # offline, or a server refused
        raise FileNotFoundError(
            f"could not download CIFAR-10 ({type(e).__name__}); put the extracted python batches "
            f"(data_batch_1..5, test_batch) in {os.path.join(root, FOLDER)}/, the folder cifar-10-python.tar.gz unpacks to"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class CIFAR10DataModule(ImageDataModule):
    def __init__(
        self,
        root: str = "data",
        val_size: int = 5000,
        random_flip: bool = True,
        conditional: bool = False,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
    ):
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            on_device=on_device,
            conditional=conditional,
            seed=seed,
        )
        self.root = os.path.abspath(os.path.expanduser(str(root)))
        self.val_size = val_size
        self.random_flip = random_flip
        self.download = download
        self.shape = (3, 32, 32)
        self._arrays: tuple | None = None  # train images, labels, test images, labels once read

    @property
    def folder(self) -> str:
        return os.path.join(self.root, FOLDER)

    def _missing(self) -> list[str]:
        return [f for f in TRAIN_FILES + TEST_FILES if not os.path.isfile(os.path.join(self.folder, f))]

    def _read(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_batch(os.path.join(self.folder, n)) for n in names]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def prepare_data(self) -> None:
        """Check the files (downloading them with `download` when absent) and the classes."""
        if self._missing() and self.download:
            download(self.root)
        missing = self._missing()
        if missing:
            raise FileNotFoundError(
                f"{os.path.join(self.folder, missing[0])} not found: point data.root (or VDIFF_DATA_DIR) at a "
                f"folder holding {FOLDER}/ (data_batch_1..5, test_batch)"
            )
        self.class_names = _class_names(self.folder)
        self.check_classes()
        if self._arrays is None:
            self._arrays = (*self._read(TRAIN_FILES), *self._read(TEST_FILES))  # bad files fail here, at start-up
        n_train = len(self._arrays[1])
        if not 1 <= self.val_size < n_train:
            raise ValueError(f"data.val_size={self.val_size} must leave some of the {n_train} training images")
        if self.batch_size > n_train - self.val_size:
            raise ValueError(
                f"data.batch_size={self.batch_size} exceeds the {n_train - self.val_size} training images of {self.folder}"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self._arrays is None:
            self.prepare_data()
        images, labels, test_images, test_labels = self._arrays
        n = len(labels) - self.val_size
        split = {"seed": self.seed}
        self.splits = {
            "train": ImageSplit(images[:n], labels[:n], self.conditional, flip=self.random_flip, **split),
            "val": ImageSplit(images[n:], labels[n:], self.conditional, **split),
            "test": ImageSplit(test_images, test_labels, self.conditional, **split),
        }
