"""The condition of a denoiser, in one place: its embedding, its dropout and the null condition.

A condition is a (B,) long tensor of labels in 0..K-1 (a digit class, a direction of motion) or None
(no condition: the unconditional model of classifier-free guidance). `Conditioner(cond, batch_size)`
returns a `Condition` with two views of it, so a network takes what its conditioning mode needs:
- `vector` (B, dim): a learned embedding per label, added to the timestep embedding (U-Net, DiT adaLN);
- `context` (B, L, context_dim): a context sequence for cross-attention (DiT cross_attn). Labels
  become one token each, a fixed "text" vector (`context="one_hot_blocks"`: label k sets the k-th
  block of context_dim / K ones, as a toy text encoder would) or a learned one (`context="learned"`).
The null condition is one learned row of the embedding and one learned context token. In training
mode each example's condition is replaced by the null one with probability `drop_prob` (Ho & Salimans
2022), once per forward pass for both views. Nothing outside this module encodes "no label".

A U-Net holds `self.cond = conditioner(num_classes, dim, cond_drop_prob)` (None without classes) and
adds the vector to its time embedding with `add_condition(emb, self.cond, cond)`, which is also where
labels given to a network built without num_classes are refused.
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Condition:
    vector: torch.Tensor  # (B, dim)
    context: torch.Tensor | None  # (B, L, context_dim), None without a context
    is_null: torch.Tensor  # (B,) bool: the rows that carry the null condition


class Conditioner(nn.Module):
    def __init__(
        self,
        num_classes: int,
        dim: int,
        drop_prob: float = 0.0,
        context: str | None = None,
        context_dim: int = 64,
    ):
        super().__init__()
        if not 0 <= drop_prob < 1:
            raise ValueError(f"cond_drop_prob={drop_prob} must lie in [0, 1)")
        if context not in (None, "learned", "one_hot_blocks"):
            raise ValueError(f"context={context!r} must be null, learned or one_hot_blocks")
        if context == "one_hot_blocks" and context_dim < num_classes:
            raise ValueError(f"context_dim={context_dim} must be >= num_classes={num_classes} for one_hot_blocks")
        self.num_classes = num_classes
        self.drop_prob = drop_prob
        self.embedding = nn.Embedding(num_classes + 1, dim)  # row K is the null condition
        self.context_kind = context
        if context == "learned":
            self.tokens = nn.Embedding(num_classes + 1, context_dim)  # row K is the null token
        elif context == "one_hot_blocks":
            block = context_dim // num_classes
            text = torch.zeros(num_classes, context_dim)
            for k in range(num_classes):
                text[k, k * block : (k + 1) * block] = 1.0
            self.register_buffer("text", text, persistent=False)  # (K, context_dim), fixed
            self.null_token = nn.Parameter(torch.zeros(context_dim))  # learned

    def check(self, cond: torch.Tensor) -> None:
        """Raise ValueError when a label lies outside 0..K-1."""
        if cond.numel() and (cond.min() < 0 or cond.max() >= self.num_classes):
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1}, got {sorted(set(cond.tolist()))}")

    def forward(self, cond: torch.Tensor | None, batch_size: int, device=None) -> Condition:
        if cond is None:
            is_null = torch.ones(batch_size, dtype=torch.bool, device=device or self.embedding.weight.device)
            cond = torch.zeros(batch_size, dtype=torch.long, device=is_null.device)
        else:
            self.check(cond)
            is_null = torch.zeros(cond.shape, dtype=torch.bool, device=cond.device)
            if self.training and self.drop_prob > 0:
                is_null = torch.rand(cond.shape, device=cond.device) < self.drop_prob
        index = torch.where(is_null, self.num_classes, cond)  # (B,)
        return Condition(vector=self.embedding(index), context=self._context(index, is_null), is_null=is_null)

    def _context(self, index: torch.Tensor, is_null: torch.Tensor) -> torch.Tensor | None:
        if self.context_kind == "learned":
            return self.tokens(index)[:, None]  # (B, 1, context_dim)
        if self.context_kind == "one_hot_blocks":
            text = self.text[index.clamp_max(self.num_classes - 1)]  # (B, context_dim)
            return torch.where(is_null[:, None], self.null_token, text)[:, None]  # (B, 1, context_dim)
        return None


def conditioner(num_classes: int | None, dim: int, drop_prob: float = 0.0) -> Conditioner | None:
    """A Conditioner of `num_classes` labels embedded in `dim`, or None for an unconditional network."""
    if not num_classes:
        return None
    return Conditioner(num_classes, dim, drop_prob=drop_prob)


def add_condition(emb: torch.Tensor, cond_module: Conditioner | None, cond: torch.Tensor | None) -> torch.Tensor:
    """emb (B, D) plus the condition's vector (B, D); emb alone for an unconditional network, which
    refuses labels."""
    if cond_module is None:
        if cond is not None:
            raise ValueError("the batch carries class labels but the network was built without num_classes")
        return emb
    return emb + cond_module(cond, batch_size=emb.shape[0], device=emb.device).vector
