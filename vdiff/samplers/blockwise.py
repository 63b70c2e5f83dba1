"""Block-by-block generation for block diffusion (BD3-LM, Arriola et al. 2025; the task is
vdiff/tasks/block_diffusion.py, which wraps the configured sampler in this).

`x` (B, L) long marks with [MASK] the positions to generate (a multiple of `block_size` long; given
tokens are a prompt and stay). Block after block, the inner sampler (Unmask or Remask) unmasks the
block from all [MASK] while the block attends to the finished blocks before it. With `kv_cache` their
keys and values are kept (vdiff/models/transformer.py KVCache) and each finished block is written
once; without, every call runs the finished blocks again: the same tokens, more work (tested). Past
the network's `context` the text slides: the last context - block_size tokens are the context (the
cache is refilled from them at their new positions). A row that reaches `eos_id` stops: what follows
its first eos becomes eos, and generation ends when every row has.
`nfe` counts the denoising calls over all blocks; `cache_writes` the passes that fill the cache.
"""

import copy

import torch

from vdiff.diffusion.blocks import block_causal_mask
from vdiff.models.transformer import KVCache
from vdiff.utils import stop


class BlockDenoiser:
    """The net as the inner sampler sees it for one block: (B, b) tokens -> (B, b, V) logits given the
    context (cached, or run again). The time is unused: block diffusion's net has no time input."""

    time_conditioning = False

    def __init__(self, net, context: torch.Tensor, block_size: int, cache=None):
        self.net, self.context, self.block_size, self.cache = net, context, block_size, cache

    def __call__(self, xb: torch.Tensor, t=None, cond=None) -> torch.Tensor:
        if self.cache is not None:  # the block attends the cached context and itself, from the cache's end on
            return self.net(xb, cache=self.cache)
        seq = torch.cat([self.context, xb], dim=1)
        return self.net(seq, attn_mask=block_causal_mask(seq.shape[1], self.block_size, xb.device))[:, -xb.shape[1] :]


class Blockwise:
    def __init__(self, inner, block_size: int, context: int, kv_cache: bool = True, eos_id: int | None = None):
        self.inner, self.block_size, self.context = inner, block_size, context
        self.kv_cache, self.eos_id = kv_cache, eos_id
        self.mask_id = inner.mask_id
        self.last_nfe = None
        self.cache_writes = None

    def with_max_steps(self, max_steps: int, num_steps: int | None = None) -> "Blockwise":
        fewer = copy.copy(self)
        fewer.inner = self.inner.with_max_steps(max_steps, num_steps)
        return fewer

    def settings(self, num_steps: int | None = None) -> dict:
        """The inner sampler's (steps per block), with the block size and the last run's calls."""
        out = {
            **self.inner.settings(num_steps),
            "block_size": self.block_size,
            "within_blocks": type(self.inner).__name__,
        }
        if self.last_nfe is not None:
            out.update(nfe=self.last_nfe, cache_writes=self.cache_writes)
            if "calls_saved" in out:  # the inner sampler's is its last block's
                out["calls_saved"] = self.blocks * self.inner.steps - self.last_nfe
        return out

    @torch.no_grad()
    def __call__(self, net, schedule, x: torch.Tensor, *, cond=None, generator=None, progress: bool = False):
        x = x.clone()
        size = self.block_size
        given = x != self.mask_id  # a prompt: kept, and never read as the end of a sample
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        cache, cached_from = None, None
        self.last_nfe, self.cache_writes, self.blocks = 0, 0, 0
        for start in range(0, x.shape[1], size):
            stop.check()
            first = max(0, start + size - self.context)  # the context's first position (sliding past it)
            context = x[:, first:start]
            if self.kv_cache and cached_from != first:  # (re)fill the cache from the context
                cache, cached_from = KVCache(), first
                if context.shape[1]:
                    net(
                        context, attn_mask=block_causal_mask(context.shape[1], size, x.device), cache=cache, commit=True
                    )
                    self.cache_writes += 1
            denoiser = BlockDenoiser(net, context, size, cache if self.kv_cache else None)
            block = self.inner(denoiser, schedule, x[:, start : start + size], generator=generator)
            self.last_nfe += self.inner.last_nfe
            self.blocks += 1
            x[:, start : start + size] = torch.where(done[:, None], x[:, start : start + size], block)
            if self.kv_cache and start + size < x.shape[1] and start + 2 * size <= self.context:  # joins the context
                # (past the context the next block refills the cache instead)
                net(x[:, start : start + size], cache=cache, commit=True)  # at the cache's end
                self.cache_writes += 1
            if self.eos_id is not None:
                done = self.stop_at_eos(x, done, given, end=start + size)
                if done.all():
                    break
        return x

    def stop_at_eos(self, x: torch.Tensor, done: torch.Tensor, given: torch.Tensor, end: int) -> torch.Tensor:
        """Rows that generated `eos_id` in x[:, :end] are done: from their first generated eos on, x
        becomes eos_id, but for the prompt's tokens (an eos in the prompt does not end the row)."""
        drawn = (x[:, :end] == self.eos_id) & ~given[:, :end]
        after = drawn.long().cumsum(-1) > 0  # at and after the first generated eos
        x[:, :end] = x[:, :end].masked_fill(after & ~given[:, :end], self.eos_id)
        rest = after.any(-1, keepdim=True) & ~given[:, end:]
        x[:, end:] = x[:, end:].masked_fill(rest, self.eos_id)
        return done | after.any(-1)
