"""Synthetic video datamodules: bouncing discs and Moving MNIST (generators in vdiff.data.moving_mnist).

Batch: {"x": (B, 1, T, H, W) float in [-1, 1], "label": (B,) long (the direction with labelled
directions, else the first digit's class; none for free discs), "cond" = label when `conditional`}.
With labelled directions `directions` is their (K, 2) unit (dy, dx), y down (metrics.direction_accuracy).
With image_batch_size > 0 a training batch's "x" is [clips (B, 1, T, H, W), images (B_img, 1, 1, H, W)]:
independent frames of the same recipe with num_frames = 1, from a pool of their own; val/test
batches are clips only. Clip i of a split is a pure function of (seed, split, i): its tracks (where
each object is in every frame; a few MB even for 10000 clips of 20 frames) are drawn at setup in
chunks seeded by (seed, split, chunk), and frames are rendered per batch (on the accelerator with
on_device; both in their base, vdiff/data/video_tracks.py). No split is ever held as frames, so the 64x64x20 recipe, 820 MB as
uint8 frames, costs only its tracks and the MNIST digits.
"""

import math

import torch
import torch.nn.functional as F

from vdiff.data.mnist import load_split
from vdiff.data.moving_mnist import blob_tracks, digit_clip_tracks
from vdiff.data.video_tracks import Render, VideoDataModule

VAL_DIGITS = 5000  # val clips use the last 5000 MNIST training digits, train clips the rest (as MNISTDataModule)


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

    def _renderer(self, split: str) -> Render:
        return Render(self.size, self.diameter)


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

    def _renderer(self, split: str) -> Render:
        return Render(self.size, digits=self.digits["train" if split == "images" else split][0])
