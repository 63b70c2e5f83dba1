"""The latent task's first stage from a VAE checkpoint (vdiff/tasks/latent.py first_stage_net), the
sampler's clip_x0 taken from the config, and latent checkpoints written before either change: they
store `task.first_stage: {ckpt_path, net}` and a sampler with clip_x0: true, and still sample as they
did (without clipping), from the latent checkpoint alone."""

import pytest
import torch
from conftest import ROOT, run
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from vdiff.generate import generate
from vdiff.samplers import DDIM
from vdiff.tasks.latent import first_stage_net
from vdiff.utils.config import ConfigError, build

VAE = {
    "_target_": "vdiff.models.VideoVAE",
    "in_channels": 1,
    "channels": 8,
    "channel_mult": [1, 2, 2],
    "num_res_blocks": 1,
    "latent_channels": 4,
    "temporal_downsample": 1,
    "groups": 8,
}
TINY = ["experiment=latent_dit", "model.net.hidden_size=32", "model.net.depth=1", "model.net.heads=2"]
TINY += ["sampler.steps=2", "seed=3"]
SHAPE = (1, 8, 32, 32)  # data=blobs_directions' clips


def vae_checkpoint(path, net_config=VAE, task="vdiff.tasks.Autoencoder"):
    """A file shaped as train.py writes a `task=autoencoder` checkpoint: weights under `net.`, the run config."""
    torch.manual_seed(0)
    net = instantiate(net_config)
    config = {"task": {"_target_": task}, "model": {"net": net_config}}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "config": config}, path)
    return path


def latent_config(tmp_path, vae_path, *overrides):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            [
                *TINY,
                f"task.first_stage.ckpt_path={vae_path}",
                f"paths.root_dir={ROOT}",
                f"paths.output_dir={tmp_path / 'run'}",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.logger = None  # their save dirs read Hydra's run dir
        cfg.callbacks = None
    return cfg


def draw(task, n=3):
    task.eval()
    return generate(task, data_shape=SHAPE, n=n, seed=5, num_classes=4, labels=None, batch_size=n, progress=False)


def old_checkpoint(task, cfg, vae_path) -> dict:
    """The checkpoint of `task` exactly as on_save_checkpoint wrote it before clip_x0 came from the config:
    the VAE's network config under task.first_stage.net, and the sampler group's clip_x0: true."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["task"]["first_stage"] = {"ckpt_path": str(vae_path), "net": dict(VAE)}
    config["task"]["sampler"]["clip_x0"] = True
    config["sampler"]["clip_x0"] = True
    return {"state_dict": task.state_dict(), "global_step": 4, "config": config}


def test_the_experiments_turn_clip_x0_off_and_the_task_refuses_it_on(tmp_path):
    vae = vae_checkpoint(tmp_path / "vae.ckpt")
    assert latent_config(tmp_path, vae).task.sampler.clip_x0 is False
    cfg = latent_config(tmp_path, vae, "sampler.clip_x0=true")
    with pytest.raises(ConfigError) as e:
        build(cfg.task, "task")
    assert str(e.value) == (
        "task: sampler.clip_x0=true clamps latents to [-1, 1], a range of pixels, not of latents "
        "(unit variance); set sampler.clip_x0=false"
    )


def test_a_checkpoint_written_before_the_change_samples_as_before_from_itself_alone(tmp_path):
    vae = vae_checkpoint(tmp_path / "vae.ckpt")
    cfg = latent_config(tmp_path, vae)
    torch.manual_seed(1)
    task = build(cfg.task, "task")
    task.scale_factor.fill_(0.7)
    before = draw(task)  # the old task sampled without clipping, whatever its stored clip_x0
    clipped = DDIM(steps=2, spacing="trailing", clip_x0=True)
    x = task.prior(3, task.sample_shape(SHAPE), torch.Generator().manual_seed(5))
    assert not torch.equal(clipped(task.denoiser, task.schedule, x), task.sampler(task.denoiser, task.schedule, x))

    ckpt_path = tmp_path / "old.ckpt"
    torch.save(old_checkpoint(task, cfg, vae), ckpt_path)
    vae.unlink()  # sample.py needs the latent checkpoint only
    out = tmp_path / "out"
    run("sample.py", f"ckpt_path={ckpt_path}", "num_samples=3", "seed=5", "progress=false", f"out_dir={out}")
    assert torch.equal(torch.load(out / "samples.pt"), before)


def test_first_stage_net_loads_a_frozen_vae_and_names_the_key_for_a_bad_file(tmp_path):
    vae, config = first_stage_net(str(vae_checkpoint(tmp_path / "vae.ckpt")))
    assert config == VAE and tuple(vae.latent_shape(SHAPE)) == (4, 8, 8, 8)
    assert first_stage_net(net=vae) == (vae, None)  # rebuilt from a latent checkpoint: its weights follow

    missing = tmp_path / "none.ckpt"
    with pytest.raises(ConfigError, match=rf"^task.first_stage.ckpt_path={missing}: no such file; train the VAE"):
        first_stage_net(str(missing))
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match=rf"^task.first_stage.ckpt_path={garbage} is not a readable checkpoint"):
        first_stage_net(str(garbage))
    unet = {"_target_": "vdiff.models.UNetTiny"}
    not_vae = vae_checkpoint(tmp_path / "unet.ckpt", net_config=unet, task="vdiff.tasks.GaussianDiffusion")
    with pytest.raises(ConfigError) as e:
        first_stage_net(str(not_vae))
    assert str(e.value) == (
        f"task.first_stage.ckpt_path={not_vae} is not a VAE checkpoint: its network (vdiff.models.unet_tiny.UNetTiny) "
        "lacks encode, decode or latent_shape (FirstStage, vdiff/contracts.py)"
    )
