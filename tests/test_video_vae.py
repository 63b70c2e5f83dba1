"""The video VAE: posterior KL and shapes, the autoencoder task, blobs_directions data, and the
train.py / sample.py path of experiment=video_vae."""

import json

import pytest
import torch
from conftest import TINY_VAE, run
from hydra.utils import instantiate
from test_video_data import TINY, data_config

from vdiff.contracts import FirstStage, ReconstructionTask
from vdiff.data import BouncingBlobsDataModule
from vdiff.models.video_vae import DiagonalGaussian, VideoVAE
from vdiff.tasks.autoencoder import Autoencoder

DIRECTIONS = [[0, 1], [0, -1], [1, 0], [-1, 0]]


def small_vae(**kwargs) -> VideoVAE:
    return VideoVAE(channels=8, channel_mult=(1, 2, 2), latent_channels=4, groups=4, **kwargs)


def test_kl_matches_the_closed_form_and_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, 2, 8, 8, generator=g)
    logvar = torch.randn(3, 4, 2, 8, 8, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(DiagonalGaussian(mean, logvar).kl(), expected)
    zero = DiagonalGaussian(torch.zeros(2, 4, 1, 2, 2), torch.zeros(2, 4, 1, 2, 2))
    assert torch.equal(zero.kl(), torch.zeros(2))  # the prior itself


def test_posterior_sample_is_the_reparameterised_mean_plus_noise():
    mean = torch.full((2, 4, 1, 2, 2), 3.0)
    q = DiagonalGaussian(mean, torch.full_like(mean, -100.0))  # logvar clamped to -30: std ~ 3e-7
    assert torch.allclose(q.sample(torch.Generator().manual_seed(0)), mean, atol=1e-5)
    assert torch.equal(q.mode(), mean)
    wide = DiagonalGaussian(torch.zeros(4000, 1, 1, 1, 1), torch.zeros(4000, 1, 1, 1, 1)).sample()
    assert abs(wide.std().item() - 1) < 0.05


@pytest.mark.parametrize("f, latent", [(1, (4, 8, 8, 8)), (2, (4, 4, 8, 8))])
def test_encode_decode_shapes(f, latent):
    vae = small_vae(temporal_downsample=f)
    x = torch.rand(2, 1, 8, 32, 32) * 2 - 1
    posterior = vae.encode(x)
    assert vae.latent_shape((1, 8, 32, 32)) == latent
    assert posterior.mean.shape == posterior.logvar.shape == (2, *latent)
    assert vae.decode(posterior.sample()).shape == x.shape
    assert isinstance(vae, FirstStage)


def test_frames_share_weights_without_temporal_downsampling():
    vae = small_vae()
    x = torch.rand(1, 1, 8, 32, 32)
    mean = vae.encode(x).mean
    swapped = vae.encode(x.flip(2)).mean.flip(2)  # frame order reversed: each frame's latent unchanged
    torch.testing.assert_close(mean, swapped)


def test_latent_shape_names_the_key_when_frames_do_not_divide():
    with pytest.raises(ValueError, match="temporal_downsample=3"):
        small_vae(temporal_downsample=3).latent_shape((1, 8, 32, 32))


def test_autoencoder_loss_is_mse_plus_beta_kl_per_pixel_and_reconstructs_to_unit_range():
    task = Autoencoder(small_vae(), optimizer=None, beta=0.5)
    x = torch.rand(2, 1, 8, 32, 32) * 2 - 1
    terms = task.terms(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms["loss"], terms["mse"] + 0.5 * terms["kl"] / x[0].numel())
    recon = task.reconstruct(x)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1
    assert isinstance(task, ReconstructionTask)


def directions_data(**kwargs) -> BouncingBlobsDataModule:
    params = {"directions": DIRECTIONS, "clear_frames": 5, "conditional": True, **TINY, **kwargs}
    return BouncingBlobsDataModule(**params)


def test_blobs_directions_are_deterministic_per_seed_split_and_index():
    a = directions_data(num_train=2000)
    b = directions_data(num_train=2000)
    a.setup()
    b.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(a.splits[split].clips(torch.arange(8)), b.splits[split].clips(torch.arange(8)))
    assert not torch.equal(a.splits["train"].clips(torch.arange(8)), a.splits["val"].clips(torch.arange(8)))
    c = directions_data(num_train=2000, seed=1)
    c.setup()
    assert not torch.equal(a.splits["train"].clips(torch.arange(8)), c.splits["train"].clips(torch.arange(8)))


def test_blobs_directions_move_the_labelled_way_before_any_bounce():
    dm = directions_data(num_train=2000)
    dm.setup()
    tracks = dm.splits["train"].tracks
    corners, label = tracks["corners"], tracks["label"]  # (n, T, 2) (y, x), (n,)
    step = dm.steps[label]  # (n, 2) unit (dy, dx)
    assert torch.equal(corners[:, 4] - corners[:, 0], step * 8)  # 2 px/frame, clear for the first 5 frames
    assert torch.equal(corners[:, 0] * (1 - step.abs()), corners[:, 7] * (1 - step.abs()))  # the other axis stays
    assert corners.min() == 0 and corners.max() == 20  # bounces keep the disc whole
    bounced = (corners[:, 7] - corners[:, 0] != step * 14).any(1).float().mean()
    assert 0.2 < bounced < 0.8  # some clips bounce later in the clip, most do not before frame 4
    assert torch.bincount(label, minlength=4).min() > 400  # directions uniform
    batch = dm.splits["train"].__getitems__(list(range(4)))
    assert torch.equal(batch["cond"], batch["label"]) and batch["x"].shape == (4, 1, 8, 32, 32)


def test_blobs_directions_yaml_inherits_bouncing_blobs():
    cfg = data_config("blobs_directions")
    cfg.seed = 0
    dm = instantiate(cfg, **TINY)
    assert dm.shape == (1, 8, 32, 32) and dm.num_classes == 4 and dm.diameter == 12
    torch.testing.assert_close(dm.directions, torch.tensor(DIRECTIONS, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"directions": [[0, 2]]}, "data.directions"),
        ({"directions": [[0, 0]]}, "data.directions"),
        ({"directions": DIRECTIONS, "clear_frames": 12}, "data.speed"),
        ({"conditional": True}, "data.conditional"),
    ],
)
def test_bad_directions_config_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        BouncingBlobsDataModule(**kwargs)


def test_vae_trains_and_sample_py_writes_reconstructions(tmp_path):
    run(
        "train.py",
        *TINY_VAE,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert sorted((tmp_path / "run" / "samples").glob("videos_*.png"))
    out = tmp_path / "out"
    run(
        "sample.py",
        f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
        "num_samples=5",
        "metrics=[direction_accuracy]",
        f"out_dir={out}",
    )
    recons = torch.load(out / "samples.pt")
    assert recons.shape == (5, 1, 8, 32, 32) and recons.min() >= 0 and recons.max() <= 1
    assert (out / "samples.gif").is_file() and (out / "comparison" / "samples.png").is_file()
    assert torch.load(out / "comparison" / "samples.pt").shape == (10, 1, 8, 32, 32)  # input, reconstruction, ...
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reconstruction"]["num_samples"] == 5 and metrics["reconstruction"]["psnr"] > 0
    assert metrics["direction_accuracy"]["accuracy_real"] == 1.0
    refused = run(
        "sample.py",
        f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
        "sampler=ddim",
        f"out_dir={tmp_path / 'out2'}",
        check=False,
    )
    assert refused.returncode == 2 and "has no sampler" in refused.stderr
