"""Attention layouts and times for generation in blocks: block diffusion (BD3-LM, Arriola et al.
2025) and, at block size 1 with the input shifted right, the autoregressive model.

Tokens x (B, L) fall into L / b blocks of b tokens; block j holds positions j*b .. j*b + b - 1.
Masks are (queries, keys) bool, True where a query may attend a key.
"""

import torch


def shift_right(x: torch.Tensor, bos_id: int) -> torch.Tensor:
    """(B, L) -> (B, L): (bos, x_0, .., x_{L-2}), the autoregressive model's input."""
    return torch.cat([torch.full_like(x[:, :1], bos_id), x[:, :-1]], dim=1)


def causal_mask(length: int, device=None) -> torch.Tensor:
    """(L, L): query l attends keys 0..l."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def block_ids(length: int, block_size: int, device=None) -> torch.Tensor:
    """(L,) long: the block of each position."""
    return torch.arange(length, device=device) // block_size


def block_causal_mask(length: int, block_size: int, device=None) -> torch.Tensor:
    """(L, L): a block sees itself and the blocks before it."""
    b = block_ids(length, block_size, device)
    return b[:, None] >= b[None, :]


def vectorized_training_mask(length: int, block_size: int, device=None) -> torch.Tensor:
    """(2L, 2L) over the sequence (x_t, x_0), both copies at positions 0..L-1 (BD3-LM's vectorised
    training, one pass for all blocks):
      noisy block j sees noisy block j (itself) and clean blocks < j;
      clean block j sees clean blocks <= j (block-causal), never a noisy token."""
    b = block_ids(length, block_size, device)
    same = b[:, None] == b[None, :]
    before = b[:, None] > b[None, :]
    noisy = torch.cat([same, before], dim=1)  # (L, 2L)
    clean = torch.cat([torch.zeros_like(same), same | before], dim=1)  # (L, 2L)
    return torch.cat([noisy, clean], dim=0)
