"""Gaussian diffusion training: a thin task over a denoiser, a schedule and a sampler.

Batch: {"x": (B, ...) data in [-1, 1] (or a list of such tensors), optional "cond": (B,) labels}. Loss:
MSE between the network output and the schedule's target (eps, x0 or v) at t ~ U{0..T-1} (Ho et al.
2020, L_simple), optionally weighted by Min-SNR-gamma (`min_snr_gamma`, Hang et al. 2023), which speeds
up convergence. Labels go to the network as they are: its Conditioner (vdiff/models/conditioning.py)
drops them to the null condition for classifier-free guidance at the rate `cond_drop_prob`, which
the model configs pass to the network from `task.cond_drop_prob`. Samples are mapped to [0, 1].

The schedule is a Gaussian path (vdiff/diffusion/paths.py), which owns the rest: the law of t
(`sample_t`: U{0..T-1} on the tables, uniform / logit-normal on `flow`, lognormal sigma on `edm`), what the
network sees (`net_input`, `net_time`), the target (eps / x0 / v, the flow velocity eps - x0, EDM's
preconditioned target) and the path's loss weight (EDM's lambda(sigma) c_out^2), so the loss is
    weight(t) * mean over the example of (net(net_input(x_t), net_time(t), cond) - target)^2.
On the tables every one of those is what this task computed before paths existed, to the bit.
"""

import torch

from vdiff.contracts import DiffusionPath, PathSampler, require
from vdiff.models.conditioning import Conditioner
from vdiff.tasks.base import SamplingTask


class GaussianDiffusion(SamplingTask):
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
        super().__init__(net, optimizer, lr_scheduler, compile=compile, val_seed=val_seed)
        require(schedule, DiffusionPath, "schedule")
        check_sampler(sampler, schedule)
        check_cond_drop_prob(net, cond_drop_prob)
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"task.min_snr_gamma={min_snr_gamma} must be positive (or null for the plain loss)")
        if min_snr_gamma is not None and not schedule.min_snr:
            raise ValueError(
                f"task.min_snr_gamma={min_snr_gamma} weights the tables of schedule=linear or cosine; "
                f"schedule={schedule.name} has its own loss weight: set task.min_snr_gamma=null"
            )
        self.schedule = schedule
        self.sampler = sampler
        self.min_snr_gamma = min_snr_gamma

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of per-example losses. `x` may be a list of tensors of different shapes (videos and
        T = 1 images for joint training): every example counts once, whatever its shape."""
        xs = batch["x"] if isinstance(batch["x"], (list, tuple)) else [batch["x"]]
        cond = batch.get("cond")
        conds = cond if isinstance(cond, (list, tuple)) else [cond] + [None] * (len(xs) - 1)
        losses = [self._example_losses(x0, c, generator) for x0, c in zip(xs, conds)]
        return torch.cat(losses).mean()

    def _example_losses(self, x0: torch.Tensor, cond, generator) -> torch.Tensor:
        path = self.schedule
        t = path.sample_t(x0.shape[0], generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        out = self.denoiser(path.net_input(path.q_sample(x0, t, eps), t), path.net_time(t), cond)
        loss = (out.float() - path.target(x0, eps, t).float()).pow(2).flatten(1).mean(1)
        weight = path.loss_weight(t)
        if weight is not None:
            loss = loss * weight.float()
        if self.min_snr_gamma is not None:
            loss = loss * path.min_snr_weight(t, self.min_snr_gamma)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch, self.val_generator), prog_bar=True, sync_dist=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.log("test/loss", self.loss(batch, self.val_generator), sync_dist=True)

    def prior(self, n: int, shape, generator=None) -> torch.Tensor:
        """x_T: normal noise (n, *shape) of the path's `prior_std` (1; sigma_max on `edm`)."""
        x = torch.randn((n, *shape), generator=generator)
        std = self.schedule.prior_std
        return x if std == 1.0 else x * std

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """x_0 of the reverse process, pixels in [-1, 1], as data-space values in [0, 1]."""
        return (x.float().clamp(-1, 1) + 1) / 2


def check_sampler(sampler, schedule) -> None:
    """ValueError, naming the keys, when `sampler` cannot run on `schedule`: the table samplers (ddpm, ddim)
    need a table, a continuous sampler's grid must fit the path, and steps fit a table's length."""
    require(sampler, PathSampler, "sampler")
    sampler.check_path(schedule)
    sampler.check(schedule.num_steps)


def check_cond_drop_prob(net, cond_drop_prob: float) -> None:
    """The network's conditioners drop labels at `task.cond_drop_prob` (the model configs pass it to
    them); ValueError when the rate is out of range, the network cannot condition, or the rates differ."""
    if not 0 <= cond_drop_prob < 1:
        raise ValueError(f"task.cond_drop_prob={cond_drop_prob} must lie in [0, 1)")
    rates = {m.drop_prob for m in net.modules() if isinstance(m, Conditioner)}
    if cond_drop_prob > 0 and not rates:
        raise ValueError(
            f"task.cond_drop_prob={cond_drop_prob} drops class labels for classifier-free guidance, but the "
            "network has no conditioner: set model.net.num_classes (and data.conditional=true) or task.cond_drop_prob=0"
        )
    if rates and rates != {cond_drop_prob}:
        raise ValueError(
            f"task.cond_drop_prob={cond_drop_prob} differs from the network's label dropout {sorted(rates)}; "
            "pass the same value as model.net.cond_drop_prob"
        )
