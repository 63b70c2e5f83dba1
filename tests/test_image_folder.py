"""A user's own images (data=image_folder), CIFAR-10's python batches, the RGB presets, FID in
Inception features, coloured MNIST and the data benchmark."""

import os
import pickle
import shutil
import subprocess
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import DATA, ROOT, need_mnist, run
from PIL import Image
from test_dit import startup_error

from vdiff.data import CIFAR10DataModule, ImageFolderDataModule
from vdiff.data import cifar10 as cifar10_module
from vdiff.data.image_folder import decode
from vdiff.data.images import Numbered
from vdiff.metrics import fid_inception
from vdiff.models import UNet
from vdiff.outputs import write_images

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def solid(path: Path, color, size=(20, 12), mode="RGB", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def noise(path: Path, seed: int, size=(24, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


@pytest.fixture
def two_classes(tmp_path) -> Path:
    """a/: 6 red images, b/: 6 blue ones, in png, jpg and webp, landscape, portrait and with alpha."""
    root = tmp_path / "images"
    for i in range(6):
        ext = ["png", "jpg", "webp"][i % 3]
        size = [(20, 12), (12, 20), (16, 16)][i % 3]
        solid(root / "a" / f"{i}.{ext}", RED, size)
        solid(root / "b" / "deeper" / f"{i}.{ext}", BLUE, size)
    solid(root / "a" / "alpha.png", (255, 0, 0, 255), mode="RGBA")
    (root / "b" / "notes.txt").write_text("not an image")
    return root


def folder(root, **kw) -> ImageFolderDataModule:
    args = {"resolution": 8, "batch_size": 4, "eval_batch_size": 4, "val_size": 2, "seed": 0} | kw
    return ImageFolderDataModule(str(root), **args)


def fake_trainer(step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        global_rank=0,
        world_size=1,
        global_step=step,
        accumulate_grad_batches=1,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )


def stream(dm, step: int, n: int) -> list[dict]:
    dm.setup()
    dm.trainer = fake_trainer(step)
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


# --- decoding, labels, splits --------------------------------------------------------------------


def test_batches_are_in_range_with_labels_from_subfolders(two_classes):
    dm = folder(two_classes, conditional=True)
    dm.prepare_data()
    dm.setup()
    assert dm.class_names == ["a", "b"] and dm.num_classes == 2 and dm.shape == (3, 8, 8)
    assert dm.info() == {"channels": 3, "resolution": 8, "num_classes": 2}
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [11, 2, 2]
    assert sorted(dm.reference_labels("train").tolist() + dm.reference_labels("val").tolist()) == [0] * 7 + [1] * 6
    batch = stream(dm, 0, 1)[0]
    assert batch["x"].shape == (4, 3, 8, 8) and batch["x"].dtype == torch.float32
    assert torch.equal(batch["cond"], batch["label"])
    for x, label in zip(batch["x"], batch["label"]):  # class a is red, class b blue: labels follow the folders
        want = torch.tensor([1.0, -1.0, -1.0] if label == 0 else [-1.0, -1.0, 1.0])
        torch.testing.assert_close(x.mean((1, 2)), want, atol=0.05, rtol=0)  # jpg and webp are lossy
    assert batch["x"].min() >= -1 and batch["x"].max() <= 1
    ref = dm.reference_images("val")
    assert ref.shape == (2, 3, 8, 8) and ref.min() >= 0 and ref.max() <= 1
    grey = folder(two_classes, channels=1)
    grey.setup()
    assert grey.reference_images("train").shape == (11, 1, 8, 8) and grey.num_classes is None
    assert "cond" not in stream(grey, 0, 1)[0]


def test_short_side_resize_then_centre_crop(tmp_path):
    """A 96x32 image in green | red | blue thirds, at 16 px: resized to 48x16, its centre 16x16 is the red third."""
    pixels = np.zeros((32, 96, 3), dtype=np.uint8)
    pixels[:, :32], pixels[:, 32:64], pixels[:, 64:] = GREEN, RED, BLUE
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    x = decode(str(tmp_path / "wide.png"), 16, 3)
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    inner = x[:, :, 2:14].float()  # the outer columns blend with the neighbours under the antialiasing filter
    assert inner[0].min() >= 250 and inner[1:].max() <= 5
    assert decode(str(tmp_path / "wide.png"), 16, 1).shape == (1, 16, 16)


def test_val_split_is_fixed_by_file_names(two_classes):
    a, b = folder(two_classes, val_size=3), folder(two_classes, val_size=3, seed=7)
    a.setup()
    b.setup()
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)
    frac = folder(two_classes, val_size=None, val_fraction=0.25)
    frac.setup()
    assert len(frac.splits["val"]) == 3  # round(0.25 x 13)


# --- the cache -----------------------------------------------------------------------------------


def test_cache_is_reused_and_rebuilt_when_a_file_changes(two_classes, monkeypatch):
    built = []
    original = ImageFolderDataModule._build
    monkeypatch.setattr(ImageFolderDataModule, "_build", lambda self, files: built.append(1) or original(self, files))
    first = folder(two_classes)
    first.prepare_data()
    path = Path(first.cache_path)
    assert path.parent == two_classes.parent / ".vdiff_cache" and path.is_file() and len(built) == 1
    again = folder(two_classes)
    again.setup()
    assert len(built) == 1 and again.cache_path == first.cache_path and len(again.splits["train"]) == 11
    first.setup()
    assert torch.equal(again.reference_images("train"), first.reference_images("train"))
    touched = two_classes / "a" / "0.png"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rebuilt = folder(two_classes)
    rebuilt.prepare_data()
    assert len(built) == 2 and rebuilt.cache_path != first.cache_path
    assert not path.exists() and Path(rebuilt.cache_path).is_file()  # the stale cache is removed
    folder(two_classes, resolution=4).prepare_data()  # other settings: a cache of their own, both kept
    assert len(built) == 3 and Path(rebuilt.cache_path).is_file()


def test_cache_falls_back_when_root_is_read_only(two_classes, tmp_path, monkeypatch):
    monkeypatch.setenv("VDIFF_CACHE_DIR", str(tmp_path / "user_cache"))

    def writable(path):  # root is read-only: its .vdiff_cache cannot be made
        if ".vdiff_cache" in path:
            return False
        os.makedirs(path, exist_ok=True)
        return True

    monkeypatch.setattr("vdiff.data.image_folder._writable_dir", writable)
    dm = folder(two_classes)
    dm.prepare_data()
    assert Path(dm.cache_path).parent == tmp_path / "user_cache" / "image_folder"
    assert not (two_classes.parent / ".vdiff_cache").exists()


# --- augmentation and resume ---------------------------------------------------------------------


def test_resumed_stream_repeats_batch_k_exactly(tmp_path):
    root = tmp_path / "noise"
    for i in range(24):
        noise(root / f"{i:02d}.png", seed=i)
    kw = {"resolution": 16, "crop": "random", "random_flip": True, "batch_size": 4}
    straight = stream(folder(root, **kw), 0, 7)
    resumed = stream(folder(root, **kw), 4, 3)  # restarted at step 4: batches 4, 5, 6
    for a, b in zip(straight[4:], resumed):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["label"], b["label"])
    on_device = stream(folder(root, on_device=True, **kw), 4, 1)[0]  # the DataLoader-free path: same batch
    assert torch.equal(on_device["x"], straight[4]["x"])
    assert not torch.equal(straight[0]["x"], stream(folder(root, **kw | {"seed": 1}), 0, 1)[0]["x"])


def test_flips_are_drawn_per_batch_number(tmp_path):
    root = tmp_path / "noise"
    for i in range(40):
        noise(root / f"{i:02d}.png", seed=i, size=(8, 8))
    dm = folder(root, random_flip=True, batch_size=32)
    dm.setup()
    split = dm.splits["train"]
    idx = torch.arange(32)
    plain = split.__getitems__(idx)["x"]
    flipped = split.__getitems__(Numbered(5, idx))["x"]
    is_flip = [torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain)]
    is_same = [torch.equal(f, p) for f, p in zip(flipped, plain)]
    assert all(a != b for a, b in zip(is_flip, is_same))  # each example either flipped or untouched
    assert 0 < sum(is_flip) < 32
    assert torch.equal(flipped, split.__getitems__(Numbered(5, idx))["x"])  # batch 5 again: the same flips
    assert not torch.equal(flipped, split.__getitems__(Numbered(6, idx))["x"])
    no_flip = folder(root, random_flip=False, batch_size=32)
    no_flip.setup()
    assert torch.equal(no_flip.splits["train"].__getitems__(Numbered(5, idx))["x"], plain)


def test_random_crop_takes_windows_of_the_larger_square(tmp_path):
    root = tmp_path / "noise"
    for i in range(12):
        noise(root / f"{i:02d}.png", seed=i, size=(40, 40))
    dm = folder(root, resolution=16, crop="random", random_flip=False, batch_size=8)
    dm.setup()
    split = dm.splits["train"]
    assert split.images.shape[-1] == 18  # ceil(16 x 9/8)
    x = split.__getitems__(Numbered(0, torch.arange(8)))["x"]
    assert x.shape == (8, 3, 16, 16)
    stored = split.images[:8].float() / 127.5 - 1
    for window, full in zip(x, stored):  # each window is some 16x16 window of its stored square
        assert any(torch.equal(window, full[:, i : i + 16, j : j + 16]) for i in range(3) for j in range(3))
    assert dm.reference_images("train").shape == (10, 3, 16, 16)
    torch.testing.assert_close(dm.reference_images("train")[:1], split.images[:1, :, 1:17, 1:17].float() / 255)


# --- bad input -----------------------------------------------------------------------------------


def test_missing_and_empty_folders_name_data_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.root=.*nowhere is not a folder"):
        folder(tmp_path / "nowhere").prepare_data()
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(FileNotFoundError, match=r"data.root=.*empty holds no images"):
        folder(tmp_path / "empty").prepare_data()


def test_truncated_image_fails_or_is_skipped_and_counted(two_classes, caplog):
    bad = two_classes / "a" / "broken.png"
    noise(bad, seed=0, size=(64, 64))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"a/broken.png cannot be read as an image .*data.skip_bad_files=true"):
        folder(two_classes).prepare_data()
    assert not list((two_classes.parent / ".vdiff_cache").glob("*.pt"))  # no cache written on failure
    with caplog.at_level("WARNING", logger="vdiff.data"):
        dm = folder(two_classes, skip_bad_files=True)
        dm.setup()
    assert dm.skipped == ["a/broken.png"] and len(dm.splits["train"]) + len(dm.splits["val"]) == 13
    assert "skipped 1 unreadable image" in caplog.text
    with pytest.raises(ValueError, match=r"broken.png cannot be read as an image \(left out of the cache"):
        folder(two_classes).prepare_data()  # the cache remembers it: still refused without skip_bad_files


def test_other_bad_settings_are_one_sentence(two_classes):
    solid(two_classes / "loose.png", GREEN)
    with pytest.raises(ValueError, match=r"data.conditional=true .*/loose.png lies directly in it"):
        folder(two_classes, conditional=True).prepare_data()
    folder(two_classes).prepare_data()  # unconditional: a file in root is class "."
    with pytest.raises(ValueError, match="data.channels=2 must be 1"):
        folder(two_classes, channels=2)
    with pytest.raises(ValueError, match="data.crop='edge' must be center or random"):
        folder(two_classes, crop="edge")
    with pytest.raises(ValueError, match=r"data.batch_size=64 exceeds the 12 training images"):
        folder(two_classes, batch_size=64).prepare_data()
    with pytest.raises(ValueError, match=r"data.val_size=14 leaves no training images"):
        folder(two_classes, val_size=14).prepare_data()


def test_a_checkpoint_with_other_classes_is_refused(two_classes):
    trained = folder(two_classes, conditional=True)
    trained.prepare_data()
    state = trained.state_dict()
    assert state == {"class_names": ["a", "b"]}
    sampler_side = folder(two_classes / "elsewhere", conditional=True)  # sample.py: classes from the checkpoint only
    sampler_side.load_state_dict(state)
    assert sampler_side.num_classes == 2
    solid(two_classes / "c" / "0.png", GREEN)
    resumed = folder(two_classes, conditional=True)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match=r"data.root=.*images holds the classes \['a', 'b', 'c'\] but the checkpoint"):
        resumed.prepare_data()
    prepared = folder(two_classes, conditional=True)
    prepared.prepare_data()
    with pytest.raises(ValueError, match="data.root="):
        prepared.load_state_dict(state)  # the order Lightning's restore takes


def test_unet_refuses_images_it_does_not_fit():
    net = UNet(in_channels=3, image_size=32, channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, groups=4)
    net.check_input((3, 32, 32))
    with pytest.raises(ValueError, match=r"^in_channels=3 but the data's images have 1 channel"):
        net.check_input((1, 32, 32))
    with pytest.raises(
        ValueError, match=r"30x30 images are not divisible by 4, the downsampling of channel_mult=\[1, 2, 2\]"
    ):
        net.check_input((3, 30, 30))
    with pytest.raises(ValueError, match=r"^image_size=32 but the data's images are 16x16"):
        net.check_input((3, 16, 16))


def test_the_start_up_error_names_the_key_of_a_network_that_does_not_fit_the_images(tmp_path):
    need_mnist()
    assert startup_error(tmp_path, "experiment=mnist_ddpm", "model.net.in_channels=3") == (
        "model.net: in_channels=3 but the data's images have 1 channel(s); set in_channels to match "
        "(the RGB presets take it from the data)"
    )


def test_three_channel_samples_are_written_in_colour(tmp_path):
    samples = torch.zeros(4, 3, 8, 8)
    samples[:, 0] = 1  # red
    paths = write_images(samples, str(tmp_path))
    grid = np.asarray(Image.open(paths[1]))
    assert grid.ndim == 3 and grid.shape[2] == 3 and tuple(grid[3, 3]) == RED


# --- train.py and sample.py ----------------------------------------------------------------------

FAST = [
    "experiment=image_folder_ddpm",
    "data.resolution=16",
    "schedule.num_steps=50",
    "sampler.steps=5",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "+data.val_size=4",
    "trainer.limit_val_batches=1",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "callbacks.samples.num_samples=4",
    "callbacks.progress_bar=null",
]


def one_sentence(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory) -> Path:
    """24 noisy RGB images of 20x20 in two class folders (resized to 16 px by the runs)."""
    root = tmp_path_factory.mktemp("rgb") / "images"
    for i in range(24):
        noise(root / ("left" if i % 2 else "right") / f"{i:02d}.png", seed=i, size=(20, 20))
    return root


@pytest.fixture(scope="module")
def conditional_run(rgb_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image_folder_run")
    run(
        "train.py",
        *FAST,
        f"data.root={rgb_folder}",
        "data.conditional=true",
        "task.cond_drop_prob=0.1",
        f"hydra.run.dir={out}",
    )
    return out


def test_debug_run_of_the_experiment(rgb_folder, tmp_path):
    run(
        "train.py",
        "experiment=image_folder_ddpm",
        f"data.root={rgb_folder}",
        "trainer=debug",
        f"hydra.run.dir={tmp_path}",
    )
    grids = sorted((tmp_path / "samples").glob("*.png"))
    assert grids and Image.open(grids[0]).mode == "RGB"


def test_conditional_run_samples_the_requested_labels(conditional_run, tmp_path):
    ckpt = torch.load(conditional_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["ImageFolderDataModule"] == {"class_names": ["left", "right"]}
    net = ckpt["config"]["model"]["net"]
    assert (net["in_channels"], net["image_size"], net["num_classes"]) == (3, 16, 2)
    run(
        "sample.py",
        f"ckpt_path={conditional_run / 'checkpoints' / 'last.ckpt'}",
        "num_samples=4",
        "labels=[1,0]",
        "sampler.steps=2",
        "progress=false",
        f"out_dir={tmp_path / 'out'}",
    )
    samples = torch.load(tmp_path / "out" / "samples.pt")
    assert samples.shape == (4, 3, 16, 16) and samples.min() >= 0 and samples.max() <= 1
    assert Image.open(tmp_path / "out" / "samples.png").mode == "RGB"


def test_labels_may_be_the_class_names_kept_in_the_checkpoint(conditional_run, tmp_path):
    ckpt = f"ckpt_path={conditional_run / 'checkpoints' / 'last.ckpt'}"
    common = ["num_samples=2", "sampler.steps=2", "progress=false", "paths.data_dir=/nonexistent"]  # no files read
    by_name = run("sample.py", ckpt, *common, "labels=[right,left]", f"out_dir={tmp_path / 'names'}")
    by_index = run("sample.py", ckpt, *common, "labels=[1,0]", f"out_dir={tmp_path / 'indices'}")
    assert by_name.returncode == by_index.returncode == 0
    assert torch.equal(torch.load(tmp_path / "names" / "samples.pt"), torch.load(tmp_path / "indices" / "samples.pt"))
    proc = run("sample.py", ckpt, *common, "labels=[rigth]", f"out_dir={tmp_path / 'typo'}", check=False)
    assert proc.returncode == 2 and not (tmp_path / "typo").exists()
    assert proc.stderr.strip() == (
        "error: labels: 'rigth' is not a class of this checkpoint's data; did you mean right? (its classes: left, right)"
    )


def test_resume_with_other_classes_is_refused(conditional_run, rgb_folder, tmp_path):
    other = tmp_path / "images"
    shutil.copytree(rgb_folder, other, ignore=shutil.ignore_patterns(".vdiff_cache"))
    noise(other / "middle" / "0.png", seed=99, size=(20, 20))
    proc = run(
        "train.py",
        *FAST,
        f"data.root={other}",
        "data.conditional=true",
        "task.cond_drop_prob=0.1",
        f"ckpt_path={conditional_run / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    line = one_sentence(proc)
    assert f"data.root={other} holds the classes ['left', 'middle', 'right']" in line


def test_bad_resolution_and_folder_fail_at_start_up(rgb_folder, tmp_path):
    proc = run(
        "train.py",
        *FAST,
        f"data.root={rgb_folder}",
        "data.resolution=18",
        f"hydra.run.dir={tmp_path / 'a'}",
        check=False,
    )
    assert "18x18 images are not divisible by 4" in one_sentence(proc)
    proc = run("train.py", *FAST, f"data.root={tmp_path / 'none'}", f"hydra.run.dir={tmp_path / 'b'}", check=False)
    assert f"data.root={tmp_path / 'none'} is not a folder" in one_sentence(proc)
    assert not (tmp_path / "none").exists()


def test_fid_inception_without_its_weights_file_is_one_sentence(conditional_run, tmp_path):
    missing = tmp_path / "weights.pth"
    proc = run(
        "sample.py",
        f"ckpt_path={conditional_run / 'checkpoints' / 'last.ckpt'}",
        "metrics=[fid_inception]",
        f"metrics.fid_inception.weights={missing}",
        f"out_dir={tmp_path / 'out'}",
        check=False,
    )
    line = one_sentence(proc)
    assert f"metrics.fid_inception.weights={missing}: no such file" in line and fid_inception.WEIGHTS_FILE in line


# --- FID in Inception features -------------------------------------------------------------------


def test_fid_inception_offline_names_the_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fid_inception.urllib.request, "urlopen", offline)
    with pytest.raises(ValueError) as e:
        fid_inception.InceptionFID()
    hub = tmp_path / "torch" / "hub" / "checkpoints" / fid_inception.WEIGHTS_FILE
    message = str(e.value)
    assert message == (
        f"metrics.fid_inception: the Inception weights are not at {hub} and could not be downloaded (URLError); "
        f"place torch-fidelity's {fid_inception.WEIGHTS_FILE} ({fid_inception.WEIGHTS_URL}) there or pass "
        "metrics.fid_inception.weights=PATH"
    )
    assert not (tmp_path / "torch").exists() or not any((tmp_path / "torch").rglob("*.part"))


class ChannelStats(torch.nn.Module):
    """A stand-in for the Inception: uint8 RGB (N, 3, H, W) -> per-channel means and the RGB covariance."""

    num_features = 9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        return features(x)


def features(x: torch.Tensor) -> torch.Tensor:
    x = x.double() / 255
    means = x.mean((2, 3))
    centred = x - means[..., None, None]
    cross = (centred[:, [0, 0, 1]] * centred[:, [1, 2, 2]]).mean((2, 3))
    return torch.cat([means, x.std((2, 3)), cross], 1).float()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


@pytest.mark.parametrize("channels", [3, 1])
def test_fid_inception_computes_the_frechet_distance_of_the_features(channels, monkeypatch):
    monkeypatch.setattr(fid_inception, "load_inception", lambda weights: ChannelStats())
    g = torch.Generator().manual_seed(0)
    splits = {
        "train": torch.rand(60, channels, 8, 8, generator=g),
        "val": torch.rand(30, channels, 8, 8, generator=g) * 0.9 + 0.05,
    }
    data = SimpleNamespace(shape=(channels, 8, 8), reference_images=lambda split, n=None: splits[split][:n])
    samples = torch.rand(40, channels, 8, 8, generator=g) ** 2  # darker than the reference
    metric = fid_inception.InceptionFID(num_reference=50, batch_size=16)
    result = metric(samples, data, "cpu")

    def feats(images):  # what the metric should see: [0, 1] -> uint8, grey repeated to RGB
        rgb = (images * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
        return features(rgb).double().numpy()

    reference = feats(splits["train"][:50])
    assert result["fid"] == pytest.approx(frechet(feats(samples), reference), rel=2e-3)
    assert result["fid_floor"] == pytest.approx(frechet(feats(splits["val"]), reference), rel=2e-3)
    assert (result["num_samples"], result["num_reference"], result["floor_num"]) == (40, 50, 30)
    assert result["fid"] > result["fid_floor"] > 0
    assert metric(samples, data, "cpu")["fid"] == pytest.approx(
        result["fid"]
    )  # reference stats kept, sample side reset


# --- CIFAR-10 ------------------------------------------------------------------------------------


def fake_cifar(root: Path, per_batch: int = 6) -> Path:
    """A cifar-10-batches-py in torchvision's pickle format: image i of a batch has red = i, green = 0,
    blue = 255 everywhere and label i % 10; the meta file names the classes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        data[:, 0] = np.arange(per_batch)[:, None, None]
        data[:, 2] = 255
        entry = {
            "batch_label": name,
            "data": data.reshape(per_batch, 3072),
            "labels": [i % 10 for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


def test_cifar10_reads_the_python_batches(tmp_path):
    dm = CIFAR10DataModule(root=str(fake_cifar(tmp_path)), val_size=5, batch_size=4, conditional=True, download=False)
    dm.prepare_data()
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [25, 5, 6]
    assert dm.class_names == [f"class{i}" for i in range(10)] and dm.num_classes == 10
    assert dm.reference_labels("train", 7).tolist() == [0, 1, 2, 3, 4, 5, 0]
    ref = dm.reference_images("test")
    assert ref.shape == (6, 3, 32, 32)
    assert torch.equal(ref[:, 0, 0, 0], torch.arange(6) / 255) and ref[:, 1].max() == 0 and ref[:, 2].min() == 1
    batch = stream(dm, 0, 1)[0]
    assert batch["x"].shape == (4, 3, 32, 32) and torch.equal(batch["cond"], batch["label"])
    assert batch["x"][:, 2].min() == 1 and batch["x"][:, 1].max() == -1


def test_cifar10_missing_files_create_nothing(tmp_path, monkeypatch):
    import torchvision

    def offline(root, train=True, download=False):
        Path(root, "cifar-10-python.tar.gz").write_bytes(b"partial")  # what a cut download leaves
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    root = tmp_path / "data"
    with pytest.raises(
        FileNotFoundError, match=r"could not download CIFAR-10 \(RuntimeError\); put .* in .*data/cifar-10-batches-py/"
    ):
        CIFAR10DataModule(root=str(root)).prepare_data()
    assert not root.exists()
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py/data_batch_1 not found: point data.root"):
        CIFAR10DataModule(root=str(root), download=False).prepare_data()
    bad = fake_cifar(tmp_path / "bad")
    (bad / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match=r"test_batch is not a CIFAR-10 python batch"):
        CIFAR10DataModule(root=str(bad), val_size=5, batch_size=4, download=False).prepare_data()


def test_cifar10_download_moves_the_folder_into_root(tmp_path, monkeypatch):
    import torchvision

    def fetched(root, train=True, download=False):
        fake_cifar(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fetched)
    root = tmp_path / "data"
    dm = CIFAR10DataModule(root=str(root), val_size=5, batch_size=4)
    dm.prepare_data()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]
    assert cifar10_module.FOLDER == "cifar-10-batches-py"


# --- configs, coloured MNIST, the benchmark -------------------------------------------------------


def test_rgb_presets_take_their_shape_from_the_data():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import open_dict

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", ["experiment=cifar10_ddpm"])
    with open_dict(cfg):
        cfg.data_info = {"channels": 3, "resolution": 32, "num_classes": None}
    net = instantiate(cfg.model.net)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == 35.7  # DDPM's CIFAR-10 U-Net
    assert cfg.trainer.max_steps == 800000 and cfg.callbacks.ema.decay == 0.9999 and cfg.data.random_flip


def test_colored_mnist_is_deterministic_rgb_in_class_folders(tmp_path):
    need_mnist()
    from vdiff.data.make_colored_mnist import make

    a = make(str(tmp_path / "a"), 12, seed=3, data_root=str(DATA))
    b = make(str(tmp_path / "b"), 12, seed=3, data_root=str(DATA))
    assert [Path(p).read_bytes() for p in a] == [Path(p).read_bytes() for p in b]
    assert {Path(p).parent.name for p in a} <= {str(d) for d in range(10)}
    image = np.asarray(Image.open(a[0]))
    assert image.shape == (32, 32, 3) and (image[..., 0] != image[..., 1]).any()  # coloured, not grey
    c = make(str(tmp_path / "c"), 12, seed=4, data_root=str(DATA))
    assert [Path(p).read_bytes() for p in a] != [Path(p).read_bytes() for p in c]


def test_bench_data_prints_the_table(rgb_folder, capsys):
    from vdiff import bench_data

    bench_data.main(
        ["--root", str(rgb_folder), "--resolution", "16", "--batch-size", "8", "--batches", "2", "--workers", "0"]
    )
    out = capsys.readouterr().out
    assert "| cache build (24 files, once) |" in out and "| cache (memory) |" in out
    assert "| torchvision ImageFolder, 0 workers |" in out


def test_docs_example_names_real_commands():
    guide = (ROOT / "docs" / "guides" / "your-data.md").read_text()
    assert "## Image folders" in guide
    for command in ("python -m vdiff.data.make_colored_mnist", "experiment=image_folder_ddpm", "sample.py"):
        assert command in guide
