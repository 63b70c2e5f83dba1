"""Latent diffusion (Rombach et al. 2022): Gaussian diffusion in the latent space of a frozen first stage.

`task.first_stage` is `{ckpt_path, net}`. On a fresh run `ckpt_path` names a checkpoint of
`task=autoencoder` (a video VAE) and `net` is null: `first_stage_net` rebuilds the VAE network from the
run config stored in that checkpoint, loads its weights and checks that it is a first stage
(`FirstStage`, vdiff/contracts.py). The task keeps it frozen (eval mode, no gradients, never in the
optimizer) as `first_stage`, so its weights travel in every latent-diffusion checkpoint, and writes
the VAE's network config into the checkpoint's run config (`task.first_stage.net`). Rebuilt from that
stored config (sample.py), `net` arrives as the network Hydra built from it; its weights then come with
the latent checkpoint's state dict, and the VAE file is not needed.

Training encodes each batch on the fly: z = scale_factor * (a draw from the VAE posterior), then the
Gaussian loss of GaussianDiffusion on z. `scale_factor` = 1 / std(z) is estimated on the first
training batch of the first run (as LDM does) and is a buffer of the task, so checkpoints carry it
and a resumed run reuses it. Sampling draws noise of the latent shape (`sample_shape`), runs the
sampler in latent space, and decodes to pixels in [0, 1] (`to_data`). Clipping x0 to [-1, 1] is a
pixel-space prior, so the latent experiments set `sampler.clip_x0: false` and the task refuses `true`.
"""

import math
import os

import hydra
import torch
from torch import nn

from vdiff.contracts import FirstStage, require
from vdiff.tasks.diffusion import GaussianDiffusion
from vdiff.utils.config import ConfigError

KEY = "task.first_stage.ckpt_path"
TRAIN_VAE = "train the VAE first (python train.py experiment=video_vae)"


def first_stage_net(ckpt_path: str | None = None, net: nn.Module | None = None) -> tuple[nn.Module, dict | None]:
    """(the first-stage network, its network config to store in latent checkpoints). `net`, when given,
    is the network rebuilt from a latent checkpoint's stored config (its weights follow; its config is
    stored already: None); otherwise the network of the VAE checkpoint `ckpt_path`, with its weights.
    ConfigError, in one sentence naming `task.first_stage.ckpt_path`, for a missing, unreadable or non-VAE file."""
    if net is not None:
        require(net, FirstStage, "task.first_stage.net")
        return net, None
    if not ckpt_path:
        raise ConfigError(
            f"{KEY} is not set; pass the checkpoint of a video VAE "
            "(python train.py experiment=video_vae writes <run dir>/checkpoints/last.ckpt)"
        )
    key = f"{KEY}={ckpt_path}"
    if not os.path.isfile(ckpt_path):
        raise ConfigError(f"{key}: no such file; {TRAIN_VAE}")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"{key} is not a readable checkpoint ({type(e).__name__})") from e
    net_config = ((ckpt.get("config") or {}).get("model") or {}).get("net") if isinstance(ckpt, dict) else None
    if net_config is None or "state_dict" not in ckpt:
        raise ConfigError(f"{key} is not a VAE checkpoint of train.py: it holds no run config with a model.net")
    vae = hydra.utils.instantiate(net_config)
    if not isinstance(vae, FirstStage):
        cls = type(vae)
        raise ConfigError(
            f"{key} is not a VAE checkpoint: its network ({cls.__module__}.{cls.__qualname__}) lacks "
            "encode, decode or latent_shape (FirstStage, vdiff/contracts.py)"
        )
    try:
        vae.load_state_dict({k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    except RuntimeError as e:
        raise ConfigError(f"{key}: its weights do not fit its stored model.net; {TRAIN_VAE}") from e
    return vae, net_config


class LatentDiffusion(GaussianDiffusion):
    def __init__(self, first_stage, net, schedule, sampler, optimizer, **kwargs):
        super().__init__(net=net, schedule=schedule, sampler=sampler, optimizer=optimizer, **kwargs)
        if sampler.clip_x0:  # a PathSampler (vdiff/contracts.py), checked by GaussianDiffusion
            raise ValueError(
                "sampler.clip_x0=true clamps latents to [-1, 1], a range of pixels, not of latents "
                "(unit variance); set sampler.clip_x0=false"
            )
        vae, self.first_stage_config = first_stage_net(first_stage.get("ckpt_path"), first_stage.get("net"))
        self.first_stage = vae.eval().requires_grad_(False)
        self.register_buffer("scale_factor", torch.tensor(math.nan))
        self._checked_shape = None
        self._scale_checked = False  # the scale factor is looked at once per run, not at every step

    def train(self, mode: bool = True):
        super().train(mode)
        self.first_stage.eval()  # frozen: no dropout, no batch statistics
        return self

    def sample_shape(self, data_shape) -> tuple:
        """The first stage's latent shape for clips of `data_shape` (ConfigError when it cannot code them);
        ValueError, once, when the denoiser cannot map latents of that shape to the same shape (checked
        with one example at start-up, which names the key, `model.net`)."""
        try:
            latent = tuple(self.first_stage.latent_shape(tuple(data_shape)))
        except ValueError as e:
            raise ConfigError(
                f"task.first_stage: the VAE cannot code examples of shape {tuple(data_shape)}: {e}"
            ) from e
        if latent != self._checked_shape:
            z = torch.zeros((1, *latent), device=self.device)
            t = torch.zeros(1, dtype=torch.long, device=self.device)
            try:
                with torch.no_grad():
                    out_shape = tuple(self.net(z, t).shape[1:])
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"cannot take the first stage's latents of shape {latent}: {e}") from e
            if out_shape != latent:
                raise ValueError(f"maps latents of shape {latent} to {out_shape}; it must keep the shape")
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
        """The run config stored for sample.py gets the VAE's network config as `task.first_stage.net`."""
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
