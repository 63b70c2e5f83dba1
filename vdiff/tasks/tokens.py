"""What the token tasks share (masked diffusion, autoregressive, block diffusion): bits per
character and per token of every validation and test window, and the all-[MASK] prior.

Each task defines `window_nll(x, generator, dtype)`: (B,) nats of each window (B, L), exact for
the autoregressive model and the NELBO's one-draw estimate (an upper bound in expectation) for the
diffusion tasks, so `val/bpc` compares them on one scale. Bits per character divide each window's
bits by the characters it stands for (`window_chars`: subword tokens are measured per character
too); both accumulate in float64 and are weighted sums over the whole split.
"""

import math

import torch
from torchmetrics import MeanMetric

from vdiff.data.tokens import window_chars
from vdiff.tasks.base import SamplingTask


class TokenTaskBase(SamplingTask):
    bidirectional = False  # a causal or block-causal denoiser (masked diffusion overrides)
    eos_id = None  # no token ends a sample (block diffusion may set one)

    def __init__(self, net, optimizer, lr_scheduler=None, mask_id: int = 0, compile: bool = False, val_seed: int = 0):
        super().__init__(net, optimizer, lr_scheduler, compile=compile, val_seed=val_seed)
        self.mask_id = mask_id
        self.val_bpc = MeanMetric().set_dtype(torch.float64)
        self.test_bpc = MeanMetric().set_dtype(torch.float64)
        self.val_bpt = MeanMetric().set_dtype(torch.float64)
        self.test_bpt = MeanMetric().set_dtype(torch.float64)

    def window_nll(self, x: torch.Tensor, generator=None, dtype=torch.float32) -> torch.Tensor:
        raise NotImplementedError

    def log_bits(self, batch: dict, nats: torch.Tensor, prefix: str, repeats: int = 1) -> None:
        """Log `prefix`/bpc, /bpt and /loss (nats per token) from (repeats * B,) nats per window."""
        bpc, bpt = (self.val_bpc, self.val_bpt) if prefix == "val" else (self.test_bpc, self.test_bpt)
        length = batch["x"].shape[1]
        bits = nats.double() / math.log(2)
        chars = window_chars(batch).to(bits).repeat(repeats)
        bpc.update(bits / chars.clamp(min=1), weight=chars)  # sum of bits / sum of characters
        bpt.update(bits / length, weight=torch.full_like(bits, length))
        self.log(f"{prefix}/bpc", bpc, prog_bar=prefix == "val")
        self.log(f"{prefix}/bpt", bpt)
        self.log(f"{prefix}/loss", (nats / length).mean().float(), sync_dist=True)

    def evaluate(self, batch: dict, prefix: str) -> None:
        raise NotImplementedError

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def sample_shape(self, data_shape) -> tuple:
        """(L,): a sample of L tokens, at most the network's context."""
        if data_shape[0] > self.net.seq_len:
            raise ValueError(
                f"length={data_shape[0]} exceeds this model's context, data.seq_len={self.net.seq_len} "
                "(task=block_diffusion generates past it)"
            )
        return tuple(data_shape)

    def prior(self, n: int, shape, generator=None) -> torch.Tensor:
        """All [MASK]: every position is to be generated."""
        return torch.full((n, *shape), self.mask_id, dtype=torch.long)


def accuracy(logits: torch.Tensor, x0: torch.Tensor, where: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Top-1 accuracy at the positions `where` (B, L) bool, the [MASK] id never predicted."""
    pred = logits.detach().clone()
    pred[..., mask_id] = -math.inf
    return ((pred.argmax(-1) == x0) & where).sum() / where.sum().clamp(min=1)
