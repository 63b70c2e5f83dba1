"""Left-to-right (ancestral) sampling of the autoregressive baseline, with a KV cache.

`x` (B, L) long marks with [MASK] the positions to generate; other tokens are a prompt and are
kept (a position given later than a drawn one is still kept: the model conditions on what is to its
left). Position l draws from p(x_l | x_<l): the logits divided by `temperature`, cut to the `top_k`
most likely tokens and to the nucleus of probability `top_p` (Holtzman et al. 2020), the [MASK]
id never drawn, Gumbel-max in float64. With `kv_cache` each step runs the network on one token and
attends to the keys and values of the earlier ones (vdiff/models/transformer.py KVCache); without,
each step runs the whole prefix again: the same tokens, L times the work (tested).
Called as every sampler, `sampler(net, schedule, x, cond=..., generator=..., progress=...)`; the
schedule is unused and the start token is the task's `mask_id`. `steps` is taken and ignored (one
network call per token), so an experiment that sets sampler.steps for sampler=unmask composes with
sampler=ancestral.
"""

import math

import torch
from tqdm.auto import tqdm

from vdiff.diffusion.blocks import causal_mask, shift_right
from vdiff.models.transformer import KVCache
from vdiff.samplers.unmask import nucleus
from vdiff.utils import stop


def top_k_logits(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """(..., V) logits with -inf outside the top_k tokens (None: all)."""
    if top_k is None or top_k >= logits.shape[-1]:
        return logits
    return logits.masked_fill(logits < logits.topk(top_k, dim=-1).values[..., -1:], -math.inf)


class Ancestral:
    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float = 1.0,
        kv_cache: bool = True,
        mask_id: int = 0,
        steps: int | None = None,
    ):
        if temperature <= 0:
            raise ValueError(f"sampler.temperature={temperature} must be positive")
        if top_k is not None and top_k < 1:
            raise ValueError(f"sampler.top_k={top_k} must be at least 1 (or null: all tokens)")
        if not 0 < top_p <= 1:
            raise ValueError(f"sampler.top_p={top_p} must lie in (0, 1]")
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.kv_cache = kv_cache
        self.mask_id = mask_id
        self.last_nfe = None

    def with_max_steps(self, max_steps: int, num_steps: int | None = None) -> "Ancestral":
        """The same sampler: one network call per token, whatever the step cap."""
        return self

    def settings(self, num_steps: int | None = None) -> dict:
        return {
            "steps": None,
            "eta": None,
            "guidance_scale": None,
            "nfe": self.last_nfe,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "temperature": self.temperature,
        }

    def draw(self, logits: torch.Tensor, generator=None) -> torch.Tensor:
        """(B, V) logits -> (B,) tokens."""
        logits = logits.double() / self.temperature
        logits[..., self.mask_id] = -math.inf
        logp = top_k_logits(logits, self.top_k).log_softmax(-1)
        if self.top_p < 1:
            logp = nucleus(logp, self.top_p)  # unmask's nucleus
        u = torch.rand(logp.shape, generator=generator, device=logp.device, dtype=torch.float64)
        return (logp - torch.log(-torch.log(u.clamp_min(1e-300)))).argmax(-1)

    @torch.no_grad()
    def __call__(self, net, schedule, x: torch.Tensor, *, cond=None, generator=None, progress: bool = False):
        x = x.clone()
        given = x != self.mask_id
        cache = KVCache() if self.kv_cache else None
        length = x.shape[1]
        for i in tqdm(range(length), desc="Ancestral", disable=not progress, leave=False):
            stop.check()
            if cache is not None:  # one new input token: x_{i-1} (the start token at i = 0)
                inp = shift_right(x[:, : i + 1], self.mask_id)[:, i:]
                logits = net(inp, cache=cache, commit=True)[:, -1]
            else:
                logits = net(shift_right(x[:, : i + 1], self.mask_id), attn_mask=causal_mask(i + 1, x.device))[:, -1]
            token = self.draw(logits, generator)
            x[:, i] = torch.where(given[:, i], x[:, i], token)
        self.last_nfe = length
        return x
