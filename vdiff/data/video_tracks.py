"""The base of the synthetic video datamodules (vdiff/data/video.py): splits kept as tracks and
rendered into clips per batch, their loaders, reference clips and outputs.

Clip i of a split is a pure function of (seed, split, i): its tracks (where each object is in every
frame) are drawn at setup in chunks of CHUNK clips seeded by (seed, split, chunk); `Render` turns
tracks into uint8 frames (discs, or pasted digits), on the accelerator with on_device.
"""

import lightning as L
import torch
from torch.utils.data import DataLoader

from vdiff.contracts import DataDefaults
from vdiff.data.batches import IndexBatches, TensorBatches, batches_done, eval_loader, loader_batches
from vdiff.data.moving_mnist import paste_digits, render_discs
from vdiff.data.tokens import batch_seed
from vdiff.outputs import log_video, write_video

CHUNK = 1024
STREAMS = {"train": 1, "val": 2, "test": 3, "images": 4}  # "images": the pool of joint-training frames


class Render:
    """tracks -> uint8 clips (n, 1, T, size, size): discs when `digits` is None, else those digits pasted."""

    def __init__(self, size: int, diameter: int = 0, digits: torch.Tensor | None = None):
        self.size = size
        self.diameter = diameter
        self.digits = digits

    def to(self, device) -> "Render":
        return Render(self.size, self.diameter, None if self.digits is None else self.digits.to(device))

    def __call__(self, tracks: dict) -> torch.Tensor:
        if self.digits is None:
            return render_discs(tracks["corners"], self.size, self.diameter)
        return paste_digits(self.digits, tracks["which"], corners=tracks["corners"], size=self.size)


class _Split(torch.utils.data.Dataset):
    """Tracks of a split's clips (tensors indexed by clip) and `render(tracks) -> uint8 clips`;
    `__getitems__` renders a whole batch, or a (clips, images) pair of index batches."""

    def __init__(self, tracks: dict, render, conditional: bool = False, images: "_Split | None" = None):
        self.tracks = tracks
        self.render = render
        self.conditional = conditional
        self.images = images

    def __len__(self) -> int:
        return len(self.tracks["corners"])

    def to(self, device) -> "_Split":
        images = self.images.to(device) if self.images is not None else None
        tracks = {k: v.to(device) for k, v in self.tracks.items()}
        return _Split(tracks, self.render.to(device), conditional=self.conditional, images=images)

    def clips(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, device=self.tracks["corners"].device)
        return self.render({k: v[idx] for k, v in self.tracks.items()})

    def __getitems__(self, idx) -> dict:
        idx, image_idx = idx if isinstance(idx, tuple) else (idx, None)
        idx = torch.as_tensor(idx, device=self.tracks["corners"].device)
        batch = {"x": self.clips(idx).float() / 127.5 - 1}
        if "label" in self.tracks:
            batch["label"] = self.tracks["label"][idx]
        if self.conditional:
            batch["cond"] = batch["label"]
        if image_idx is not None:
            batch["x"] = [batch["x"], self.images.clips(image_idx).float() / 127.5 - 1]
        return batch

    def __getitem__(self, i):
        return self.__getitems__([i])


class _Joint:
    """Pairs of index batches: (clip indices, image indices), each its own resumable stream."""

    def __init__(self, clips: IndexBatches, images: IndexBatches):
        self.clips = clips
        self.images = images

    def __iter__(self):
        return zip(self.clips, self.images)


class VideoDataModule(DataDefaults, L.LightningDataModule):
    """Splits, loaders and outputs shared by the video datamodules. Subclasses set `self.shape`,
    `self.num_classes` and define `_tracks(n, num_frames, split, generator) -> dict` (long "corners",
    optional "label") and `_renderer(split) -> Render`."""

    def __init__(
        self,
        num_frames: int,
        size: int,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        on_device: bool,
        num_train: int,
        num_val: int,
        num_test: int,
        image_batch_size: int,
        conditional: bool,
        seed: int,
    ):
        super().__init__()
        for key, value, least in (
            ("num_frames", num_frames, 1),
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_train", num_train, 1),
            ("num_val", num_val, 1),
            ("num_test", num_test, 1),
            ("image_batch_size", image_batch_size, 0),
            ("num_workers", num_workers, 0),
        ):
            if value < least:
                raise ValueError(f"data.{key}={value} must be at least {least}")
        self.num_frames = num_frames
        self.size = size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.on_device = on_device
        self.image_batch_size = image_batch_size
        self.counts = {"train": num_train, "val": num_val, "test": num_test, "images": num_train}
        self.conditional = conditional
        self.seed = seed
        self.shape = (1, num_frames, size, size)  # of one example, (C, T, H, W)
        self.num_classes: int | None = None
        self.directions: torch.Tensor | None = None  # (K, 2) unit (dy, dx) of each labelled direction
        self.splits: dict[str, _Split] = {}

    def _draw(self, split: str, num_frames: int) -> dict:
        """Tracks of the split's clips, CHUNK at a time: clip i depends on (seed, split, i) only."""
        n = self.counts[split]
        chunks = []
        for c in range(-(-n // CHUNK)):
            g = torch.Generator().manual_seed(batch_seed(self.seed, k=c, rank=0, stream=STREAMS[split]))
            chunks.append(self._tracks(CHUNK, num_frames, split=split, generator=g))
        return {k: torch.cat([t[k] for t in chunks])[:n] for k in chunks[0]}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images = None
        if self.image_batch_size:
            images = _Split(self._draw("images", 1), self._renderer("train"))
        self.splits = {
            split: _Split(
                self._draw(split, self.num_frames),
                self._renderer(split),
                conditional=self.conditional,
                images=images if split == "train" else None,
            )
            for split in ("train", "val", "test")
        }

    def info(self) -> dict:
        return {"num_frames": self.num_frames, "size": self.size}

    def reference_clips(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The first n clips of a split as float (N, 1, T, H, W) in [0, 1], for metrics (n=None: all,
        3.3 GB for the standard 10000 training clips of 20 x 64 x 64)."""
        self.setup()
        idx = torch.arange(len(self.splits[split]))[:n]
        return torch.cat([self.splits[split].clips(i).float() / 255 for i in idx.split(self.eval_batch_size)])

    def reference_labels(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The (N,) long labels of `reference_clips(split, n)` (the directions, or the first digits' classes)."""
        self.setup()
        tracks = self.splits[split].tracks
        if "label" not in tracks:
            raise ValueError(f"data ({type(self).__name__}) has no labels; choose a labelled video data option")
        return tracks["label"][:n].cpu()

    def reference_images(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The frames of the first n clips, flattened to float (N * T, 1, H, W) in [0, 1]."""
        return self.reference_clips(split, n).transpose(1, 2).flatten(0, 1)

    def write_samples(self, samples: torch.Tensor, out_dir: str) -> list[str]:
        return write_video(samples, out_dir)

    def log_samples(self, trainer, samples: torch.Tensor) -> None:
        log_video(trainer, samples)

    def train_dataloader(self):
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        split = self.splits["train"]
        start = batches_done(trainer)
        index = IndexBatches(len(split), self.batch_size, seed=self.seed, rank=rank, world_size=world, start=start)
        if self.image_batch_size:
            images = IndexBatches(
                self.counts["images"],
                self.image_batch_size,
                seed=self.seed + 1,
                rank=rank,
                world_size=world,
                start=start,
            )
            index = _Joint(index, images)
        if self.on_device:
            device = trainer.strategy.root_device if trainer else torch.device("cpu")
            return TensorBatches(index, split.to(device).__getitems__)
        return loader_batches(index, split, self.num_workers, pin_memory=torch.cuda.is_available())

    def _eval_loader(self, split: str) -> DataLoader:
        return eval_loader(self.splits[split], self.eval_batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
