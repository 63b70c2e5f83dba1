"""Masked (absorbing-state) diffusion training over tokens: a thin task over a network, a masking
schedule and an unmasking sampler.

Batch: {"x": (B, L) long tokens, id `mask_id` = [MASK]}. Training loss (`loss`): `elbo`, the
continuous-time NELBO in nats per token (w(t) * masked cross-entropy summed over tokens, divided by
all B * L tokens), or `masked_ce`, the plain mean cross-entropy over masked positions. Validation
always reports the NELBO in bits per character (`val/bpc`: a window's total nats / ln 2 / the
characters it stands for, `window_chars(batch)`, so subword tokens are measured per character too)
and in bits per token (`val/bpt`; the same number for character data), both accumulated in float64
(vdiff/tasks/tokens.py), and the accuracy of the most likely real token at masked positions
(`val/acc`; the [MASK] logit is excluded, as the SUBS parameterisation gives it zero mass).
Sampling (`generate`, vdiff/tasks/base.py) unmasks the prior's all-[MASK] x_1 with the sampler,
whose `mask_id` must be the task's.
"""

import torch

from vdiff.diffusion.masked import LOSSES, mask_tokens, masked_ce, nelbo_per_token, sample_times, token_nll
from vdiff.samplers.unmask import Unmask
from vdiff.tasks.tokens import TokenTaskBase, accuracy


class MaskedDiffusion(TokenTaskBase):
    bidirectional = True  # the denoiser sees the whole window (metrics.masked_accuracy)

    def __init__(
        self,
        net,
        schedule,
        sampler,
        optimizer,
        lr_scheduler=None,
        mask_id: int = 0,
        loss: str = "elbo",
        antithetic: bool = True,
        t_min: float = 1e-3,
        val_t_samples: int = 1,
        compile: bool = False,
        val_seed: int = 0,
    ):
        super().__init__(net, optimizer, lr_scheduler, mask_id=mask_id, compile=compile, val_seed=val_seed)
        if loss not in LOSSES:
            raise ValueError(f"task.loss={loss!r} is not one of {', '.join(LOSSES)}")
        if not 0 < t_min < 1:
            raise ValueError(f"task.t_min={t_min} must lie in (0, 1)")
        if not isinstance(sampler, Unmask):
            raise ValueError("task=masked_diffusion unmasks whole windows: choose sampler=unmask or remask")
        if sampler.mask_id != mask_id:
            raise ValueError(
                f"sampler.mask_id={sampler.mask_id} differs from task.mask_id={mask_id}; they name one [MASK] id"
            )
        self.schedule = schedule
        self.sampler = sampler
        self.loss_type = loss
        self.antithetic = antithetic
        self.t_min = t_min
        self.val_t_samples = val_t_samples

    def forward_terms(self, x0: torch.Tensor, generator=None, nll_dtype=torch.float32):
        """One draw of t and of the mask per sequence: (t, masked, per-token nll, logits)."""
        t = sample_times(
            x0.shape[0], t_min=self.t_min, antithetic=self.antithetic, generator=generator, device=x0.device
        )
        xt, masked = mask_tokens(x0, t, schedule=self.schedule, mask_id=self.mask_id, generator=generator)
        logits = self.denoiser(xt, t)
        return t, masked, token_nll(logits, x0, mask_id=self.mask_id, dtype=nll_dtype), logits

    def window_nll(self, x: torch.Tensor, generator=None, dtype=torch.float32) -> torch.Tensor:
        """(B,) one-draw NELBO of each window in nats."""
        t, masked, nll, _ = self.forward_terms(x, generator, dtype)
        return nelbo_per_token(nll, masked, t=t, schedule=self.schedule) * x.shape[1]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        t, masked, nll, _ = self.forward_terms(batch["x"])
        loss = (
            nelbo_per_token(nll, masked, t=t, schedule=self.schedule).mean()
            if self.loss_type == "elbo"
            else masked_ce(nll, masked)
        )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def evaluate(self, batch: dict, prefix: str) -> None:
        x0 = batch["x"]
        nats = []
        hits = 0
        count = 0
        for _ in range(self.val_t_samples):
            t, masked, nll, logits = self.forward_terms(x0, self.val_generator, torch.float64)
            nats.append(nelbo_per_token(nll, masked, t=t, schedule=self.schedule) * x0.shape[1])
            hits = hits + accuracy(logits, x0, masked, self.mask_id) * masked.sum()
            count = count + masked.sum()
        self.log_bits(batch, torch.cat(nats), prefix, repeats=self.val_t_samples)
        self.log(f"{prefix}/acc", (hits / count.clamp(min=1)).float(), sync_dist=True)
