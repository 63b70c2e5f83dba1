"""Synthetic video datamodules: bouncing discs and Moving MNIST (generators in vdiff.data.moving_mnist).

Batch: {"x": (B, 1, T, H, W) float in [-1, 1], "label": (B,) long (the direction with labelled
directions, else the first digit's class; none for free discs), "cond" = label when `conditional`}.
With labelled directions `directions` is their (K, 2) unit (dy, dx), y down (metrics.direction_accuracy).
With image_batch_size > 0 a training batch's "x" is [clips (B, 1, T, H, W), images (B_img, 1, 1, H, W)]:
independent frames of the same recipe with num_frames = 1, from a pool of their own; val/test
batches are clips only. Clip i of a split is a pure function of (seed, split, i): its tracks (where
each object is in every frame; a few MB even for 10000 clips of 20 frames) are drawn at setup in
chunks of CHUNK clips seeded by (seed, split, chunk), and frames are rendered per batch (on the
accelerator with on_device). No split is ever held as frames, so the 64x64x20 recipe, 820 MB as
uint8 frames, costs only its tracks and the MNIST digits.
"""

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vdiff.contracts import DataDefaults
from vdiff.data.batches import IndexBatches, TensorBatches, batches_done, eval_loader, loader_batches
from vdiff.data.mnist import load_split
from vdiff.data.moving_mnist import blob_tracks, digit_clip_tracks, paste_digits, render_discs
from vdiff.data.tokens import batch_seed

CHUNK = 1024
VAL_DIGITS = 5000  # val clips use the last 5000 MNIST training digits, train clips the rest (as MNISTDataModule)
STREAMS = {"train": 1, "val": 2, "test": 3, "images": 4}  # "images": the pool of joint-training frames


class _Render:
    """tracks -> uint8 clips (n, 1, T, size, size): discs when `digits` is None, else those digits pasted."""

    def __init__(self, size: int, diameter: int = 0, digits: torch.Tensor | None = None):
        self.size = size
        self.diameter = diameter
        self.digits = digits

    def to(self, device) -> "_Render":
        return _Render(self.size, self.diameter, None if self.digits is None else self.digits.to(device))

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
    optional "label") and `_renderer(split) -> _Render`."""

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
        from vdiff.outputs import write_video

        return write_video(samples, out_dir)

    def log_samples(self, trainer, samples: torch.Tensor) -> None:
        from vdiff.callbacks.video import log_video

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


class BouncingBlobsDataModule(VideoDataModule):
    """One filled disc per clip, bouncing off the borders. Unlabelled (speeds per axis in
    {-2, -1, 1, 2} px/frame) unless `directions` lists unit (dy, dx) steps: then clip i moves at
    `speed` px/frame along directions[label] with label uniform in 0..K-1, starting where its first
    `clear_frames` frames reach no border, and `conditional` makes the label batch["cond"]."""

    def __init__(
        self,
        num_frames: int = 8,
        size: int = 32,
        diameter: int = 12,
        directions: list | None = None,
        speed: int = 2,
        clear_frames: int = 1,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        on_device: bool = False,
        num_train: int = 10000,
        num_val: int = 500,
        num_test: int = 1000,
        image_batch_size: int = 0,
        conditional: bool = False,
        seed: int = 0,
    ):
        super().__init__(
            num_frames=num_frames,
            size=size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            on_device=on_device,
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            image_batch_size=image_batch_size,
            conditional=conditional,
            seed=seed,
        )
        if not 1 <= diameter < size:
            raise ValueError(f"data.diameter={diameter} must be at least 1 and smaller than data.size={size}")
        if conditional and not directions:
            raise ValueError("data.conditional=true needs data.directions, the labelled (dy, dx) steps")
        if directions is not None:
            steps = torch.as_tensor([list(d) for d in directions], dtype=torch.long)
            if steps.dim() != 2 or steps.shape[1] != 2 or (steps.abs() > 1).any() or not steps.abs().sum(1).all():
                raise ValueError(f"data.directions={directions} must be a list of [dy, dx] steps in -1..1, not [0, 0]")
            if speed < 1 or clear_frames < 1 or speed * (clear_frames - 1) > size - diameter:
                raise ValueError(
                    f"data.speed={speed} and data.clear_frames={clear_frames} must be at least 1 with a travel of "
                    f"speed x (clear_frames - 1) within data.size - data.diameter = {size - diameter} px"
                )
            self.steps = steps
            self.directions = steps.double() / steps.double().norm(dim=1, keepdim=True)
            self.num_classes = len(steps) if conditional else None
        self.diameter = diameter
        self.speed = speed
        self.clear_frames = clear_frames

    def _tracks(self, n: int, num_frames: int, split: str, generator: torch.Generator) -> dict:
        if self.directions is None:
            corners = blob_tracks(
                n=n, num_frames=num_frames, size=self.size, diameter=self.diameter, generator=generator
            )
            return {"corners": corners}
        label = torch.randint(0, len(self.steps), (n,), generator=generator)
        corners = blob_tracks(
            n=n,
            num_frames=num_frames,
            size=self.size,
            diameter=self.diameter,
            generator=generator,
            velocity=self.steps[label] * self.speed,
            clear_frames=min(self.clear_frames, num_frames),
        )
        return {"corners": corners, "label": label}

    def _renderer(self, split: str) -> _Render:
        return _Render(self.size, self.diameter)


class MovingMNISTDataModule(VideoDataModule):
    """Moving MNIST: train clips from the first 55000 MNIST training digits, val clips from the last
    5000, test clips from the t10k digits; digits resized to digit_size (area averaging) first."""

    def __init__(
        self,
        root: str = "data",
        dataset: str = "MNIST",
        num_frames: int = 20,
        size: int = 64,
        num_digits: int = 2,
        digit_size: int = 28,
        step_length: float = 0.1,
        num_directions: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        on_device: bool = False,
        num_train: int = 10000,
        num_val: int = 500,
        num_test: int = 1000,
        image_batch_size: int = 0,
        conditional: bool = False,
        download: bool = True,
        seed: int = 0,
    ):
        super().__init__(
            num_frames=num_frames,
            size=size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            on_device=on_device,
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            image_batch_size=image_batch_size,
            conditional=conditional,
            seed=seed,
        )
        if dataset not in ("MNIST", "FashionMNIST"):
            raise ValueError(f"data.dataset={dataset!r} is not one of MNIST, FashionMNIST")
        if not 1 <= digit_size < size:
            raise ValueError(f"data.digit_size={digit_size} must be at least 1 and smaller than data.size={size}")
        if num_digits < 1:
            raise ValueError(f"data.num_digits={num_digits} must be at least 1")
        if not step_length > 0:
            raise ValueError(
                f"data.step_length={step_length} must be positive (a fraction of data.size - data.digit_size per frame)"
            )
        if num_directions < 0 or num_directions == 1:
            raise ValueError(f"data.num_directions={num_directions} must be 0 (random angles) or at least 2")
        self.root = root
        self.dataset = dataset
        self.download = download
        self.num_digits = num_digits
        self.digit_size = digit_size
        self.step_length = step_length
        self.num_directions = num_directions
        self.num_classes = (num_directions or 10) if conditional else None  # directions, else the first digit's class
        if num_directions:
            theta = torch.arange(num_directions, dtype=torch.float64) * (2 * math.pi / num_directions)
            self.directions = torch.stack([theta.sin(), theta.cos()], 1)  # (K, 2) unit (dy, dx), y down
        self.digits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare_data(self) -> None:
        for split in ("train", "test"):
            load_split(self.root, self.dataset, split=split, download=self.download)

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = load_split(self.root, self.dataset, split)
        if self.digit_size != images.shape[-1]:
            images = F.interpolate(images.float(), size=(self.digit_size,) * 2, mode="area").round().to(torch.uint8)
        return images[:, 0], labels

    def setup(self, stage: str | None = None) -> None:
        if not self.digits:
            images, labels = self._load("train")
            test = self._load("test")
            n = len(labels) - VAL_DIGITS
            self.digits = {"train": (images[:n], labels[:n]), "val": (images[n:], labels[n:]), "test": test}
        super().setup(stage)

    def _tracks(self, n: int, num_frames: int, split: str, generator: torch.Generator) -> dict:
        digits, labels = self.digits["train" if split == "images" else split]
        directions = torch.randint(0, self.num_directions, (n,), generator=generator) if self.num_directions else None
        which, corners = digit_clip_tracks(
            num_available=len(digits),
            n=n,
            num_frames=num_frames,
            span=self.size - self.digit_size,
            num_digits=self.num_digits,
            generator=generator,
            step_length=self.step_length,
            directions=directions,
            num_directions=self.num_directions,
        )
        return {"corners": corners, "which": which, "label": labels[which[:, 0]] if directions is None else directions}

    def _renderer(self, split: str) -> _Render:
        return _Render(self.size, digits=self.digits["train" if split == "images" else split][0])
