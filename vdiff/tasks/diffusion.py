"""Gaussian diffusion training: a thin task over a denoiser, a schedule and a sampler.

Batch: {"x": (B, ...) data in [-1, 1] (or a list of such tensors), optional "cond": (B,) labels}. Loss: MSE between the network
output and the schedule's target (eps, x0 or v) at t ~ U{0..T-1} (Ho et al. 2020, L_simple), optionally
weighted by Min-SNR-gamma (`min_snr_gamma`, Hang et al. 2023), which speeds up convergence.
"""

import torch

from vdiff.tasks.base import Task


class GaussianDiffusion(Task):
    def __init__(
        self,
        net,
        schedule,
        sampler,
        optimizer,
        lr_scheduler=None,
        cond_drop_prob: float = 0.0,
        compile: bool = False,
        val_seed: int = 0,
        min_snr_gamma: float | None = None,
    ):
        super().__init__(optimizer, lr_scheduler)
        sampler.check(schedule.num_steps)
        if not 0 <= cond_drop_prob < 1:
            raise ValueError(f"task.cond_drop_prob={cond_drop_prob} must lie in [0, 1)")
        self.net, self.schedule, self.sampler = net, schedule, sampler
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"task.min_snr_gamma={min_snr_gamma} must be positive (or null for the plain loss)")
        self.cond_drop_prob, self.val_seed = cond_drop_prob, val_seed
        self.min_snr_gamma = min_snr_gamma
        # The compiled wrapper is kept outside the module tree, so checkpoint keys stay `net.*`.
        object.__setattr__(self, "denoiser", torch.compile(net) if compile else net)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of per-example losses. `x` may be a list of tensors of different shapes (videos and
        T = 1 images for joint training): every example counts once, whatever its shape."""
        xs = batch["x"] if isinstance(batch["x"], (list, tuple)) else [batch["x"]]
        cond = batch.get("cond")
        conds = cond if isinstance(cond, (list, tuple)) else [cond] + [None] * (len(xs) - 1)
        losses = [self._example_losses(x0, c, generator) for x0, c in zip(xs, conds)]
        return torch.cat(losses).mean()

    def _example_losses(self, x0: torch.Tensor, cond, generator) -> torch.Tensor:
        t = torch.randint(0, self.schedule.num_steps, (x0.shape[0],), device=x0.device, generator=generator)
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        if cond is not None and self.training and self.cond_drop_prob > 0:
            drop = torch.rand(cond.shape, device=cond.device) < self.cond_drop_prob
            cond = torch.where(drop, torch.full_like(cond, -1), cond)
        out = self.denoiser(self.schedule.q_sample(x0, t, eps), t, cond)
        loss = (out.float() - self.schedule.target(x0, eps, t).float()).pow(2).flatten(1).mean(1)
        if self.min_snr_gamma is not None:
            loss = loss * self.schedule.min_snr_weight(t, self.min_snr_gamma)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        # Same t and noise at every validation, so val/loss compares checkpoints fairly.
        self._val_generator = torch.Generator(self.device).manual_seed(self.val_seed)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch, self._val_generator), prog_bar=True, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.log("test/loss", self.loss(batch, self._val_generator), sync_dist=True)

    def prior(self, n: int, shape, generator=None) -> torch.Tensor:
        """x_T: standard normal noise (n, *shape)."""
        return torch.randn((n, *shape), generator=generator)

    @torch.no_grad()
    def generate(self, noise: torch.Tensor, cond=None, generator=None, progress: bool = False) -> torch.Tensor:
        """Samples from x_T = noise, mapped to [0, 1]."""
        x = self.sampler(self.denoiser, self.schedule, noise, cond, generator, progress)
        return (x.float().clamp(-1, 1) + 1) / 2
