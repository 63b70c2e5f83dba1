"""Training a VAE (the first stage of latent diffusion): a thin task over a network with
`encode(x) -> posterior` (`sample(generator)`, `mode()`, `kl()` per example) and `decode(z) -> x`.

Batch: {"x": (B, ...) in [-1, 1]}; labels are ignored. Loss = reconstruction MSE (mean over pixels)
+ beta * KL per pixel (the posterior's KL in nats per example divided by the pixels per example),
so beta weighs the two terms per pixel. Validation logs val/loss, val/mse, val/psnr (on pixels in
[0, 1], from the mean of the posterior) and val/kl (nats per example). The task samples nothing:
it offers `reconstruct(x)` (contracts.ReconstructionTask), which `sample.py` and the
reconstruction callback use instead of a sampler.
"""

import math

import torch

from vdiff.tasks.base import Task


class Autoencoder(Task):
    def __init__(
        self,
        net,
        optimizer,
        lr_scheduler=None,
        beta: float = 1e-3,
        compile: bool = False,
        val_seed: int = 0,
    ):
        super().__init__(net, optimizer, lr_scheduler, compile=compile, val_seed=val_seed)
        if beta < 0:
            raise ValueError(f"task.beta={beta} must be at least 0")
        self.beta = beta

    def terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """{"loss", "mse", "kl"} of a batch x (B, ...) in [-1, 1]: MSE per pixel, KL in nats per example."""
        recon, posterior = self.denoiser(x, generator)  # the net, or its compiled wrapper
        mse = (recon.float() - x.float()).pow(2).mean()
        kl = posterior.kl().float().mean()
        return {"loss": mse + self.beta * kl / x[0].numel(), "mse": mse, "kl": kl}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.terms(batch["x"])
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log("train/mse", terms["mse"])
        self.log("train/kl", terms["kl"])
        return terms["loss"]

    def _evaluate(self, batch: dict, stage: str) -> None:
        x = batch["x"]
        terms = self.terms(x, self.val_generator)
        recon = self.reconstruct(x)  # [0, 1], from the posterior mean
        mse01 = (recon - (x.float() + 1) / 2).pow(2).mean()
        self.log(f"{stage}/loss", terms["loss"], prog_bar=True, sync_dist=True)
        self.log(f"{stage}/mse", terms["mse"], prog_bar=True, sync_dist=True)
        self.log(f"{stage}/kl", terms["kl"], sync_dist=True)
        self.log(f"{stage}/psnr", -10 * torch.log10(mse01.clamp_min(1e-10)), prog_bar=True, sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) in [-1, 1] -> decode(posterior mean), clamped and mapped to [0, 1]."""
        recon = self.net.decode(self.net.encode(x).mode())
        return (recon.float().clamp(-1, 1) + 1) / 2


def psnr(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error on pixels in [0, peak]."""
    return 10 * math.log10(peak**2 / max(mse, 1e-10))
