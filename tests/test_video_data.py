"""Bouncing discs, Moving MNIST (the Srivastava et al. recipe) and the video datamodules."""

import math
from pathlib import Path

import pytest
import torch
from conftest import DATA, need_mnist
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vdiff.data import BouncingBlobsDataModule, MovingMNISTDataModule
from vdiff.data.mnist import load_split
from vdiff.data.moving_mnist import blob_tracks, bouncing_blobs, digit_tracks, moving_mnist, paste_digits

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"


def data_config(name: str):
    """configs/data/<name>.yaml composed with the options it inherits from (its `defaults` list)."""
    with initialize_config_dir(config_dir=str(CONFIGS.parent), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={name}"])
    return OmegaConf.create(OmegaConf.to_container(cfg.data))


TINY = {"num_train": 16, "num_val": 8, "num_test": 8, "batch_size": 4, "eval_batch_size": 8}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def solid_digits(d: int = 5, s: int = 28) -> torch.Tensor:
    """Digits without a zero pixel: any cropping at a border would lose mass."""
    return torch.randint(1, 256, (d, s, s), generator=gen(9), dtype=torch.uint8)


def test_blobs_stay_whole_and_bounce():
    corners = blob_tracks(256, 16, 32, 12, gen(0))
    assert corners.min() == 0 and corners.max() == 20  # reaches every border, never beyond
    steps = corners.diff(dim=1).abs()
    assert steps.max() <= 2 and (steps > 0).float().mean() > 0.9  # speeds in {1, 2}, slowed only at a bounce
    clips = bouncing_blobs(256, 16, generator=gen(0))
    assert clips.shape == (256, 1, 16, 32, 32) and clips.dtype == torch.uint8
    area = (clips > 0).sum((1, 3, 4))
    assert (area == area[0, 0]).all() and area[0, 0] == 112  # the full disc of diameter 12 in every frame
    assert torch.equal(clips, bouncing_blobs(256, 16, generator=gen(0)))
    assert not torch.equal(clips, bouncing_blobs(256, 16, generator=gen(1)))


def test_digits_stay_whole_inside_the_canvas():
    digits = solid_digits()
    out = moving_mnist(digits, 64, num_frames=20, size=64, num_digits=1, generator=gen(0))
    assert out.clips.shape == (64, 1, 20, 64, 64) and out.corners.shape == (64, 20, 1, 2)
    assert out.corners.min() == 0 and out.corners.max() == 36
    mass = out.clips.double().sum((1, 3, 4))  # (n, T)
    assert torch.equal(mass, digits.double().sum((1, 2))[out.which[:, 0]][:, None].expand_as(mass))


def test_recipe_statistics():
    span, speed = 36, 0.1 * 36  # 3.6 px/frame on 64x64 with 28x28 digits
    tracks = digit_tracks(4000, 20, span, 1, gen(0))[:, :, 0]  # (n, T, 2) float
    assert tracks.min() >= 0 and tracks.max() <= span
    assert abs(tracks[:, 0].mean().item() - span / 2) < 0.5  # uniform starts
    steps = tracks.diff(dim=1).norm(dim=-1)
    assert (
        steps.max() <= speed + 1e-4 and (steps - speed).abs().lt(1e-4).float().mean() > 0.8
    )  # shorter only at bounces
    clear = ((tracks[:, 0] > speed) & (tracks[:, 0] < span - speed)).all(-1)  # no bounce in the first step
    assert torch.allclose(steps[clear, 0], torch.tensor(speed), atol=1e-4)
    dy, dx = (tracks[clear, 1] - tracks[clear, 0]).unbind(-1)
    theta = torch.atan2(dy, dx)
    assert torch.polar(torch.ones_like(theta), theta).mean().abs() < 0.05  # directions uniform on the circle
    assert torch.histc(theta, 4, -math.pi, math.pi).min() > 0.22 * len(theta)
    fast = digit_tracks(100, 2, span, 1, gen(0), step_length=0.2)[:, :, 0]
    assert fast.diff(dim=1).norm(dim=-1).max() == pytest.approx(7.2, abs=1e-4)


def test_overlaps_take_the_pixelwise_max():
    digits = solid_digits(3, 6)
    which = torch.tensor([[0, 1], [2, 2]])
    corners = torch.randint(0, 5, (2, 3, 2, 2), generator=gen(1))
    clips = paste_digits(digits, which, corners, 10)
    for n in range(2):
        for t in range(3):
            ref = torch.zeros(10, 10, dtype=torch.uint8)
            for d in range(2):
                y, x = corners[n, t, d].tolist()
                ref[y : y + 6, x : x + 6] = torch.maximum(ref[y : y + 6, x : x + 6], digits[which[n, d]])
            assert torch.equal(clips[n, 0, t], ref)


def test_directions_move_the_digit_the_labelled_way():
    digits = solid_digits(4, 14)
    for k in (4, 8):
        labels = torch.arange(64) % k
        out = moving_mnist(
            digits, 64, num_frames=8, size=32, num_digits=1, generator=gen(k), directions=labels, num_directions=k
        )
        frames = out.clips[:, 0].double()
        grid = torch.arange(32, dtype=torch.double)
        mass = frames.sum((-2, -1))
        com = torch.stack([(frames.sum(-1) * grid).sum(-1), (frames.sum(-2) * grid).sum(-1)], -1) / mass[..., None]
        dy, dx = (com[:, -1] - com[:, 0]).unbind(-1)  # moved 7 x 1.8 = 12.6 px, never bouncing
        assert torch.hypot(dy, dx).sub(12.6).abs().max() < 1.5
        error = torch.remainder(torch.atan2(dy, dx) - labels * 2 * math.pi / k + math.pi, 2 * math.pi) - math.pi
        assert error.abs().max() < math.radians(10)


@pytest.fixture(scope="module")
def small():
    """A 32x32 one-digit Moving MNIST module with full-size digits (so crops compare to the files)."""
    need_mnist()
    dm = MovingMNISTDataModule(root=str(DATA), download=False, size=32, num_digits=1, num_frames=4, **TINY)
    dm.setup()
    return dm


def test_splits_draw_from_their_own_digit_files(small):
    files = {s: load_split(small.root, "MNIST", s) for s in ("train", "test")}
    sources = {"train": (files["train"], 0), "val": (files["train"], 55000), "test": (files["test"], 0)}
    for split, ((images, labels), offset) in sources.items():
        tracks = small.splits[split].tracks
        clips, batch = small.splits[split].clips([0, 1]), small.splits[split].__getitems__([0, 1])
        for i in range(2):
            (y, x), digit = tracks["corners"][i, 0, 0].tolist(), offset + tracks["which"][i, 0]
            assert torch.equal(clips[i, 0, 0, y : y + 28, x : x + 28], images[digit, 0])
            assert batch["label"][i] == labels[digit]
    assert (
        batch["x"].shape == (2, 1, 4, 32, 32)
        and batch["x"].min() == -1
        and batch["x"].max() <= 1
        and "cond" not in batch
    )
    ref = small.reference_images("val", 3)
    assert ref.shape == (12, 1, 32, 32) and torch.equal(ref[4:8], small.reference_clips("val", 3)[1, 0, :, None])


def test_clips_are_a_function_of_seed_split_and_index(small):
    def tracks(seed=0, n=16, split="train"):
        dm = MovingMNISTDataModule(
            root=small.root, size=32, num_digits=1, num_frames=4, seed=seed, **{**TINY, "num_train": n}
        )
        dm.digits = small.digits  # skip re-reading the files
        return dm._draw(split, 4)["corners"]

    assert torch.equal(tracks(n=4), tracks()[:4]) and torch.equal(tracks(), small.splits["train"].tracks["corners"])
    assert not torch.equal(tracks(seed=1), tracks()) and not torch.equal(tracks(split="val")[:8], tracks()[:8])


def test_batches_joint_layout_and_on_device():
    dm = BouncingBlobsDataModule(num_frames=4, image_batch_size=3, **TINY)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    clips, images = batch["x"]
    assert clips.shape == (4, 1, 4, 32, 32) and images.shape == (3, 1, 1, 32, 32) and "label" not in batch
    assert set(images.unique().tolist()) == {-1.0, 1.0} and ((images > 0).sum((1, 3, 4)) == 112).all()
    dm.on_device = True
    again = next(iter(dm.train_dataloader()))
    assert all(torch.equal(a, b) for a, b in zip(again["x"], batch["x"]))
    val = next(iter(dm.val_dataloader()))
    assert val["x"].shape == (8, 1, 4, 32, 32)
    assert dm.shape == (1, 4, 32, 32) and dm.num_classes is None and dm.info() == {"num_frames": 4, "size": 32}


def test_write_samples(tmp_path):
    paths = BouncingBlobsDataModule(num_frames=2, size=16, diameter=4).write_samples(
        torch.rand(2, 1, 2, 16, 16), str(tmp_path)
    )
    assert paths and all(Path(p).exists() for p in paths)


@pytest.mark.parametrize(
    "key, value", [("num_frames", 0), ("diameter", 32), ("image_batch_size", -1), ("num_train", 0)]
)
def test_bad_blob_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=f"data.{key}={value}"):
        BouncingBlobsDataModule(**{key: value})


@pytest.mark.parametrize(
    "key, value",
    [("digit_size", 64), ("num_digits", 0), ("step_length", 0), ("num_directions", 1), ("dataset", "CIFAR")],
)
def test_bad_moving_mnist_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=f"data.{key}="):
        MovingMNISTDataModule(**{key: value})


@pytest.mark.parametrize(
    "name, shape, num_classes",
    [
        ("bouncing_blobs", (1, 8, 32, 32), None),
        ("moving_mnist", (1, 20, 64, 64), None),
        ("moving_mnist_small", (1, 8, 32, 32), None),
        ("moving_mnist_directions", (1, 8, 32, 32), 4),
    ],
)
def test_yaml_instantiates(name, shape, num_classes):
    cfg = data_config(name)
    cfg.seed = 0
    if "root" in cfg:
        need_mnist()
        cfg.root, cfg.download = str(DATA), False
    dm = instantiate(cfg, **TINY)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert dm.shape == shape and dm.num_classes == num_classes and batch["x"].shape == (4, *shape)
    assert ("cond" in batch) == (num_classes is not None)
    if num_classes:  # real digits move the labelled way: centre of mass from the first to the last frame
        assert torch.equal(batch["cond"], batch["label"]) and batch["cond"].max() < num_classes
        frames, grid = batch["x"][:, 0].double() + 1, torch.arange(32, dtype=torch.double)
        com = (
            torch.stack([(frames.sum(-1) * grid).sum(-1), (frames.sum(-2) * grid).sum(-1)], -1)
            / frames.sum((-2, -1))[..., None]
        )
        dy, dx = (com[:, -1] - com[:, 0]).unbind(-1)
        error = (
            torch.remainder(torch.atan2(dy, dx) - batch["label"] * 2 * math.pi / num_classes + math.pi, 2 * math.pi)
            - math.pi
        )
        assert error.abs().max() < math.radians(10)
