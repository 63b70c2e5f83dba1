"""Latent diffusion (Rombach et al. 2022): Gaussian diffusion in the latent space of a frozen first stage.

`first_stage.ckpt_path` names a checkpoint of `task=autoencoder` (a video VAE). Its network is rebuilt
from the run config stored in that checkpoint, frozen (eval mode, no gradients, never in the
optimizer) and kept as `first_stage`, so its weights travel in every latent-diffusion checkpoint. The
checkpoint's run config also gets the VAE's network config (`task.first_stage.net`): sample.py then
rebuilds the VAE from it and loads its weights from this checkpoint, without the VAE file.

Training encodes each batch on the fly: z = scale_factor * (a draw from the VAE posterior), then the
Gaussian loss of GaussianDiffusion on z. `scale_factor` = 1 / std(z) is estimated on the first
training batch of the first run (as LDM does) and is a buffer of the task, so checkpoints carry it
and a resumed run reuses it. Sampling draws noise of the latent shape (`sample_shape`), runs the
sampler in latent space, and decodes to pixels in [0, 1] (`to_data`). Clipping x0 to [-1, 1] is a
pixel-space prior, so the sampler's `clip_x0` is turned off for latents.
"""

import copy
import math
import os

import hydra
import torch
from torch import nn

from vdiff.tasks.diffusion import GaussianDiffusion
from vdiff.utils.config import ConfigError

FIRST_STAGE_TASK = "vdiff.tasks.Autoencoder"


def load_first_stage(ckpt_path: str) -> tuple[nn.Module, dict]:
    """The VAE network of a `task=autoencoder` checkpoint with its weights, and its network config."""
    if not ckpt_path:
        raise ConfigError(
            "task.first_stage.ckpt_path is not set; pass the checkpoint of a video VAE "
            "(python train.py experiment=video_vae writes <run dir>/checkpoints/last.ckpt)"
        )
    key = f"task.first_stage.ckpt_path={ckpt_path}"
    if not os.path.isfile(ckpt_path):
        raise ConfigError(f"{key}: no such file; train the VAE first (python train.py experiment=video_vae)")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"{key} is not a readable checkpoint ({type(e).__name__})") from e
    task = ((ckpt.get("config") or {}).get("task") or {}).get("_target_") if isinstance(ckpt, dict) else None
    if task != FIRST_STAGE_TASK:
        raise ConfigError(f"{key} is not a video VAE checkpoint: its task is {task}, not {FIRST_STAGE_TASK}")
    net_config = ckpt["config"]["model"]["net"]
    net = hydra.utils.instantiate(net_config)
    net.load_state_dict({k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    return net, net_config


class LatentDiffusion(GaussianDiffusion):
    def __init__(self, first_stage, net, schedule, sampler, optimizer, **kwargs):
        if sampler.clip_x0:
            sampler = copy.copy(sampler)
            sampler.clip_x0 = False  # latents have unit variance, not the range [-1, 1]
        super().__init__(net=net, schedule=schedule, sampler=sampler, optimizer=optimizer, **kwargs)
        stored = first_stage.get("net")
        if isinstance(stored, nn.Module):  # rebuilt from a latent-diffusion checkpoint: weights follow
            vae = stored
            self.first_stage_config = None
        else:
            vae, self.first_stage_config = load_first_stage(first_stage.get("ckpt_path"))
        self.first_stage = vae.eval().requires_grad_(False)
        self.register_buffer("scale_factor", torch.tensor(math.nan))
        self._checked_shape = None
        self._scale_checked = False  # the scale factor is looked at once per run, not at every step

    def train(self, mode: bool = True):
        super().train(mode)
        self.first_stage.eval()  # frozen: no dropout, no batch statistics
        return self

    def sample_shape(self, data_shape) -> tuple:
        """The first stage's latent shape for clips of `data_shape`; ValueError, once, when the denoiser
        cannot map latents of that shape to the same shape (checked with one example at start-up)."""
        latent = tuple(self.first_stage.latent_shape(tuple(data_shape)))
        if latent != self._checked_shape:
            z = torch.zeros((1, *latent), device=self.device)
            t = torch.zeros(1, dtype=torch.long, device=self.device)
            try:
                with torch.no_grad():
                    out_shape = tuple(self.net(z, t).shape[1:])
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"model.net cannot take the first stage's latents of shape {latent}: {e}") from e
            if out_shape != latent:
                raise ValueError(f"model.net maps latents of shape {latent} to {out_shape}; it must keep the shape")
            self._checked_shape = latent
        return latent

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels (B, C, T, H, W) in [-1, 1] -> scaled latents (B, c, t, h, w); scale 1 until estimated."""
        z = self.first_stage.encode(x).sample(generator)
        scale = torch.nan_to_num(self.scale_factor, nan=1.0)  # no host sync in the training loop
        return z * scale

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        if isinstance(batch["x"], (list, tuple)):
            raise ValueError("latent diffusion takes one clip shape per batch (data.image_batch_size must be 0)")
        latents = {**batch, "x": self.encode(batch["x"], generator)}
        return super().loss(latents, generator)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if self._scale_checked:
            return
        self._scale_checked = True
        if torch.isnan(self.scale_factor):
            with torch.no_grad():
                z = self.first_stage.encode(batch["x"]).mode()
            self.scale_factor.fill_(1.0 / z.float().std().item())
            self.print(f"latent scale factor {self.scale_factor.item():.4f} (1 / std of the first batch's latents)")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if "config" in checkpoint and self.first_stage_config is not None:
            config = dict(checkpoint["config"])
            config["task"] = {
                **config["task"],
                "first_stage": {**config["task"]["first_stage"], "net": self.first_stage_config},
            }
            checkpoint["config"] = config

    def to_data(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents from the sampler -> decoded clips in [0, 1]."""
        x = self.first_stage.decode(z / self.scale_factor)
        return (x.float().clamp(-1, 1) + 1) / 2
