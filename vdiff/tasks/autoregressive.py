"""The autoregressive baseline: the token transformer under a causal mask, trained on next-token
cross-entropy, so a masked or block diffusion model can be compared with it at equal data and compute.

Batch: {"x": (B, L) long}. The network sees the window shifted right by one, with the [MASK] id
(which never occurs in data) as the start token: input (BOS, x_0, .., x_{L-2}) at positions
0..L-1, and logit l predicts x_l. The summed loss is then the exact -log p(x_0, .., x_{L-1}) of the
window, the quantity the masked ELBO bounds, so `val/bpc` is comparable across tasks.
Sampling (`sampler=ancestral`, vdiff/samplers/ancestral.py) draws left to right with a KV cache.
"""

import torch

from vdiff.diffusion.blocks import causal_mask, shift_right
from vdiff.diffusion.masked import token_nll
from vdiff.samplers.ancestral import Ancestral
from vdiff.tasks.tokens import TokenTaskBase, accuracy


class NoNoise:
    """The schedule of a task without a noise process: no grid of timesteps bounds its sampler."""

    num_steps = None


class Autoregressive(TokenTaskBase):
    def __init__(
        self, net, sampler, optimizer, lr_scheduler=None, mask_id: int = 0, compile: bool = False, val_seed: int = 0
    ):
        super().__init__(net, optimizer, lr_scheduler, mask_id=mask_id, compile=compile, val_seed=val_seed)
        if net.time_conditioning:
            raise ValueError("task=autoregressive has no time: set model.net.time_conditioning=false")
        if not isinstance(sampler, Ancestral):
            raise ValueError("task=autoregressive draws left to right: choose sampler=ancestral")
        if sampler.mask_id != mask_id:
            raise ValueError(
                f"sampler.mask_id={sampler.mask_id} differs from task.mask_id={mask_id}; they name one start token"
            )
        self.sampler = sampler
        self.schedule = NoNoise()

    @torch.no_grad()
    def generate(self, x: torch.Tensor, cond=None, generator=None, progress: bool = False) -> torch.Tensor:
        """Left to right with the plain net (a KV cache of growing length would recompile a compiled one)."""
        return self.sampler(self.net, self.schedule, x, cond=cond, generator=generator, progress=progress)

    def next_token_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, V): logit l predicts x_l from x_0..x_{l-1}."""
        return self.denoiser(shift_right(x, self.mask_id), attn_mask=causal_mask(x.shape[1], x.device))

    def window_nll(self, x: torch.Tensor, generator=None, dtype=torch.float32) -> torch.Tensor:
        """(B,) exact nats of each window (the [MASK] logit excluded: it never occurs in data)."""
        return token_nll(self.next_token_logits(x), x, mask_id=self.mask_id, dtype=dtype).sum(-1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = batch["x"]
        loss = token_nll(self.next_token_logits(x), x, mask_id=self.mask_id).mean()  # nats per token
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def evaluate(self, batch: dict, prefix: str) -> None:
        x = batch["x"]
        logits = self.next_token_logits(x)
        nats = token_nll(logits, x, mask_id=self.mask_id, dtype=torch.float64).sum(-1)  # (B,)
        self.log_bits(batch, nats, prefix)
        self.log(f"{prefix}/acc", accuracy(logits, x, torch.ones_like(x, dtype=torch.bool), self.mask_id).float())
