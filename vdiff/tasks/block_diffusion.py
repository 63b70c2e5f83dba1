"""Block diffusion (BD3-LM, Arriola et al. 2025): autoregressive over blocks of `block_size` tokens,
masked diffusion within a block.

Training (one pass for all blocks, BD3-LM's vectorised form): every block j of a window draws its own
time t_j and mask; the network reads (x_t, x_0) of length 2L under `vectorized_training_mask`
(vdiff/diffusion/blocks.py), so noisy block j sees itself and the clean blocks before it, and the
loss is the masked NELBO of each block given the clean ones before it,

    NELBO = sum_j E_{t_j} [ w(t_j) * sum_{l in block j, masked} -log p_theta(x0_l | x_t^{(j)}, x_0^{(<j)}) ],

in nats per token after dividing by L. `block_size = L` is MDLM's loss; `block_size = 1` with
m(t) = t is the autoregressive NLL in expectation (w m = 1), with [MASK] as the query token (tested).
Sampling: block after block, the configured sampler (sampler=unmask or remask) unmasks the block
while it attends to the finished blocks: the task wraps it in vdiff/samplers/blockwise.py
(`kv_cache`, generation past the context, the stop at `eos_id`); sample.py's `length` sets how
many tokens.
"""

import torch

from vdiff.diffusion.blocks import vectorized_training_mask
from vdiff.diffusion.masked import sample_times, token_nll
from vdiff.samplers.blockwise import Blockwise
from vdiff.samplers.unmask import Unmask
from vdiff.tasks.tokens import TokenTaskBase, accuracy


class BlockDiffusion(TokenTaskBase):
    def __init__(
        self,
        net,
        schedule,
        sampler,
        optimizer,
        lr_scheduler=None,
        mask_id: int = 0,
        block_size: int = 4,
        antithetic: bool = True,
        t_min: float = 1e-3,
        val_t_samples: int = 1,
        kv_cache: bool = True,
        eos_id: int | None = None,
        compile: bool = False,
        val_seed: int = 0,
    ):
        super().__init__(net, optimizer, lr_scheduler, mask_id=mask_id, compile=compile, val_seed=val_seed)
        if block_size < 1 or net.seq_len % block_size:
            raise ValueError(f"task.block_size={block_size} must divide the context, data.seq_len={net.seq_len}")
        if net.time_conditioning:
            raise ValueError("task=block_diffusion draws one time per block: set model.net.time_conditioning=false")
        if not 0 < t_min < 1:
            raise ValueError(f"task.t_min={t_min} must lie in (0, 1)")
        if not isinstance(sampler, Unmask):
            raise ValueError("task=block_diffusion unmasks each block: choose sampler=unmask or remask")
        if sampler.mask_id != mask_id:
            raise ValueError(
                f"sampler.mask_id={sampler.mask_id} differs from task.mask_id={mask_id}; they name one [MASK] id"
            )
        self.schedule = schedule
        self.sampler = Blockwise(sampler, block_size=block_size, context=net.seq_len, kv_cache=kv_cache, eos_id=eos_id)
        self.block_size = block_size
        self.eos_id = eos_id
        self.antithetic = antithetic
        self.t_min = t_min
        self.val_t_samples = val_t_samples

    def forward_terms(self, x0: torch.Tensor, generator=None, nll_dtype=torch.float32):
        """One draw of (t, mask) per block: (t per token (B, L), masked (B, L), nll (B, L), logits (B, L, V))."""
        b, length = x0.shape
        blocks = length // self.block_size
        t = sample_times(
            b * blocks, t_min=self.t_min, antithetic=self.antithetic, generator=generator, device=x0.device
        )
        t = t.view(b, blocks).repeat_interleave(self.block_size, dim=1)  # (B, L)
        p = self.schedule.mask_prob(t.double())
        masked = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64) < p
        xt = torch.where(masked, torch.full_like(x0, self.mask_id), x0)
        logits = self.denoiser(
            torch.cat([xt, x0], dim=1),  # (B, 2L)
            positions=torch.arange(length, device=x0.device).repeat(2),
            attn_mask=vectorized_training_mask(length, self.block_size, x0.device),
        )[:, :length]  # (B, L, V): the noisy copy's
        return t, masked, token_nll(logits, x0, mask_id=self.mask_id, dtype=nll_dtype), logits

    def window_nll(self, x: torch.Tensor, generator=None, dtype=torch.float32) -> torch.Tensor:
        """(B,) one-draw NELBO of each window in nats: the blocks' terms summed."""
        t, masked, nll, _ = self.forward_terms(x, generator, dtype)
        return (self.schedule.weight(t.to(nll.dtype)) * nll * masked).sum(-1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = batch["x"]
        loss = (self.window_nll(x) / x.shape[1]).mean()  # nats per token
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def evaluate(self, batch: dict, prefix: str) -> None:
        x0 = batch["x"]
        nats, hits, count = [], 0, 0
        for _ in range(self.val_t_samples):
            t, masked, nll, logits = self.forward_terms(x0, self.val_generator, torch.float64)
            nats.append((self.schedule.weight(t.double()) * nll * masked).sum(-1))
            hits = hits + accuracy(logits, x0, masked, self.mask_id) * masked.sum()
            count = count + masked.sum()
        self.log_bits(batch, torch.cat(nats), prefix, repeats=self.val_t_samples)
        self.log(f"{prefix}/acc", (hits / count.clamp(min=1)).float(), sync_dist=True)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, cond=None, generator=None, progress: bool = False) -> torch.Tensor:
        """Block by block with the plain net (a KV cache of growing length would recompile a compiled one)."""
        return self.sampler(self.net, self.schedule, x, cond=cond, generator=generator, progress=progress)

    def sample_shape(self, data_shape) -> tuple:
        """(L,): any multiple of block_size, past the context too (sample.py's `length`)."""
        if data_shape[0] % self.block_size:
            raise ValueError(f"length={data_shape[0]} must be a multiple of task.block_size={self.block_size}")
        return tuple(data_shape)
