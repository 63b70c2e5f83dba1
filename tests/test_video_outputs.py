"""write_video's files, the video metrics on real and synthetic clips, and the samples callback on video data."""

import importlib.util
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import DATA, need_mnist
from PIL import Image, ImageSequence

from vdiff.callbacks import Samples
from vdiff.data import BouncingBlobsDataModule
from vdiff.diffusion import LinearSchedule
from vdiff.metrics import FrameFID, MotionSmoothness, TemporalConsistency
from vdiff.outputs import write_video
from vdiff.samplers import DDIM
from vdiff.utils.config import ConfigError


class FakeVideoData:
    """The datamodule interface the metrics use: shape and reference_clips (the same clips for every split)."""

    def __init__(self, clips: torch.Tensor, num_classes=None):
        self.clips, self.shape, self.num_classes = clips, tuple(clips.shape[1:]), num_classes

    def reference_clips(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        return self.clips[:n]


@pytest.fixture(scope="module")
def digits():
    """Real MNIST test digits (N, 1, 32, 32) in [0, 1] (28x28 padded by 2) and their labels."""
    need_mnist()
    from vdiff.data.mnist import load_split

    images, labels = load_split(str(DATA), "MNIST", "test")
    return F.pad(images[:400].float() / 255, (2, 2, 2, 2)), labels[:400]


def moving(digits: torch.Tensor, t: int = 4) -> torch.Tensor:
    """(N, 1, t, 32, 32): each digit shifted one pixel right per frame."""
    return torch.stack([torch.roll(digits, i, dims=-1) for i in range(t)], 2)


def test_write_video_files(tmp_path):
    n, t, h, w = 3, 5, 8, 10
    samples = torch.rand(n, 1, t, h, w, generator=torch.Generator().manual_seed(0))
    paths = write_video(samples, str(tmp_path), fps=5)
    names = [os.path.basename(p) for p in paths]
    assert names[:3] == ["samples.pt", "samples.png", "samples.gif"]
    assert ("samples.mp4" in names) == (importlib.util.find_spec("av") is not None)
    assert all(os.path.getsize(p) > 0 for p in paths)
    assert torch.equal(torch.load(paths[0]), samples)
    assert Image.open(paths[1]).size == (t * (w + 2) + 2, n * (h + 2) + 2)  # columns = frames, rows = clips
    gif = Image.open(paths[2])
    assert sum(1 for _ in ImageSequence.Iterator(gif)) == t
    assert gif.info["loop"] == 0 and gif.info["duration"] == 200
    if "samples.mp4" in names:  # PyAV installed (the dev extra): the MP4 decodes to t frames
        import av

        with av.open(paths[3]) as container:
            assert sum(1 for _ in container.decode(video=0)) == t
    assert max(gif.size) >= 256  # upscaled


def test_frame_fid(digits):
    clips = moving(digits[0][:32])
    real = FrameFID(num_reference=32)(clips, FakeVideoData(clips), torch.device("cpu"))
    assert abs(real["fid"]) < 1e-2 and abs(real["fid_floor"]) < 1e-2
    assert real["num_frames"] == 32 * 4 and real["num_reference"] == 32 and sum(real["label_hist"]) == 128
    noise = torch.rand(clips.shape, generator=torch.Generator().manual_seed(0))
    fake = FrameFID(num_reference=32)(noise, FakeVideoData(clips), torch.device("cpu"))
    assert fake["fid"] > 10 and abs(fake["fid_floor"]) < 1e-2
    with pytest.raises(ConfigError, match="metrics.frame_fid"):
        FrameFID()(noise[:, :, :2], FakeVideoData(clips), "cpu")


def test_temporal_consistency(digits):
    images, labels = digits
    still = images[:20, :, None].expand(-1, -1, 6, -1, -1)  # one digit repeated in every frame
    metric = TemporalConsistency()
    r = metric(still, FakeVideoData(still), "cpu")
    assert r["same_label_fraction"] == 1.0 and r["majority_agreement"] == 1.0
    order = labels.argsort()
    by_class = torch.stack([images[order[torch.searchsorted(labels[order], k)]] for k in range(6)], 1)  # digits 0..5
    changing = by_class[None].expand(20, -1, -1, -1, -1)  # (20, 1, 6, 32, 32)
    r = metric(changing, FakeVideoData(still), "cpu")
    assert r["same_label_fraction"] == 0.0 and r["majority_agreement"] < 0.5
    assert r["reference_same_label_fraction"] == 1.0
    assert r["reference_label_entropy_bits"] > 2.5 and r["reference_confidence"] > 0.9  # 20 test digits, many classes
    assert r["chance_same_label_fraction"] < 1e-3 and r["above_chance"] < 0 and "note" not in r
    collapsed = still[:1].expand(20, -1, -1, -1, -1)  # consistent, but one digit for every clip
    r = metric(collapsed, FakeVideoData(still), "cpu")
    assert math.isnan(r["same_label_fraction"]) and r["chance_same_label_fraction"] == 1.0
    assert r["label_entropy_bits"] == 0.0 and "undefined" in r["note"]


def test_temporal_consistency_is_undefined_on_noise_and_measured_on_real_clips(digits):
    """The classifier reads every frame of pure noise as the same digit, with confidence 1: the
    fraction of consistent clips would be 1.0. It is NaN with a note instead; real moving digits keep theirs."""
    real = moving(digits[0][:32], t=6)
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0))
    r = TemporalConsistency()(noise, FakeVideoData(real), "cpu")
    assert math.isnan(r["same_label_fraction"]) and r["chance_same_label_fraction"] > 0.5, r
    assert r["note"].startswith("same_label_fraction is undefined")
    assert r["reference_same_label_fraction"] > 0.9 and r["reference_chance_same_label_fraction"] < 1e-3
    assert r["reference_above_chance"] > 0.9 and "reference_note" not in r


def square_clips(positions: torch.Tensor, size: int = 32, side: int = 4) -> torch.Tensor:
    """(N, 1, T, size, size) with a side x side square whose top-left corner is positions (N, T, 2) as (x, y)."""
    n, t, _ = positions.shape
    clips = torch.zeros(n, 1, t, size, size)
    for i in range(n):
        for j in range(t):
            x, y = positions[i, j].tolist()
            clips[i, 0, j, y : y + side, x : x + side] = 1.0
    return clips


def test_motion_smoothness():
    t = torch.arange(6)
    steady = torch.stack([2 + t * 3, 1 + t * 4], -1)[None].repeat(2, 1, 1)  # 3 px right, 4 px down per frame
    clips = square_clips(steady)
    r = MotionSmoothness()(clips, FakeVideoData(clips))
    assert r["acceleration"] == pytest.approx(0.0, abs=1e-9) and r["speed"] == pytest.approx(5.0)
    assert r["reference_speed"] == pytest.approx(5.0) and r["empty_frame_fraction"] == 0.0
    jitter = steady + torch.randint(-2, 3, steady.shape, generator=torch.Generator().manual_seed(0))
    rough = MotionSmoothness()(square_clips(jitter), FakeVideoData(clips))
    assert rough["acceleration"] > 1.0 and rough["reference_acceleration"] == pytest.approx(0.0, abs=1e-9)
    assert rough["acceleration_median"] > 1.0 and rough["reference_acceleration_median"] == 0.0
    teleport = steady.clone()
    teleport[1, 3] += torch.tensor([10, 0])  # one frame of the second clip 10 px off its line
    r = MotionSmoothness()(square_clips(teleport), FakeVideoData(clips))
    assert r["jump_fraction"] == 0.5 and r["reference_jump_fraction"] == 0.0
    assert r["acceleration_median"] == pytest.approx(0.0, abs=1e-9) and r["acceleration"] > 4.0
    blank = clips.clone()
    blank[:, :, 2] = 0  # an empty frame: the velocities touching it are left out
    r = MotionSmoothness()(blank, FakeVideoData(clips))
    assert r["speed"] == pytest.approx(5.0) and r["empty_frame_fraction"] == pytest.approx(1 / 6)
    r = MotionSmoothness()(torch.zeros_like(clips), FakeVideoData(clips))
    assert r["acceleration"] is None and r["speed"] is None and r["empty_frame_fraction"] == 1.0
    assert r["acceleration_median"] is None and r["jump_fraction"] is None


class FakeTask(torch.nn.Module):
    """What vdiff.generate.generate calls (sample_shape, prior, generate, device), and the sampler and
    schedule whose settings the samples callback logs."""

    device = torch.device("cpu")
    schedule = LinearSchedule(num_steps=10)
    sampler = DDIM(steps=2)

    def sample_shape(self, data_shape):
        return tuple(data_shape)

    def prior(self, n, shape, generator):
        return torch.rand(n, *shape, generator=generator)

    def generate(self, x, cond=None, generator=None, progress=False):
        return x


def test_video_samples_callback(tmp_path):
    dm = BouncingBlobsDataModule(num_frames=3, size=8, diameter=2)
    trainer = SimpleNamespace(
        datamodule=dm,
        global_step=7,
        default_root_dir=str(tmp_path),
        loggers=[],
        sanity_checking=False,
        is_global_zero=True,
    )
    Samples(every_n_steps=1, num_samples=2).on_validation_epoch_end(trainer, FakeTask())
    folder = tmp_path / "samples"
    assert Image.open(folder / "videos_0000007.png").size == (3 * 10 + 2, 2 * 10 + 2)
    assert Image.open(folder / "videos_0000007.gif").n_frames == 3
