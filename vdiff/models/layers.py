"""Building blocks shared by the denoisers. Feature maps are (B, C, H, W); time embeddings (B, D)."""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def check_groups(channels, groups: int) -> None:
    for c in channels:
        if c % groups:
            raise ValueError(
                f"a width of {c} channels is not divisible by groups={groups} (GroupNorm); pick channels as a multiple of groups"
            )


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style embedding of (B,) timesteps -> (B, dim): [cos(t w_i), sin(t w_i)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t through an MLP, plus an optional class embedding (label -1 = none)."""

    def __init__(self, base_dim: int, dim: int, num_classes: int | None = None):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_classes = num_classes
        self.class_emb = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.mlp(sinusoidal_embedding(t, self.base_dim))
        if self.class_emb is None:
            if cond is not None:
                raise ValueError("the batch carries class labels but the network was built without num_classes")
            return emb
        if cond is None:
            cond = torch.full_like(t, -1)
        return emb + self.class_emb(torch.where(cond < 0, self.num_classes, cond))


class ResBlock(nn.Module):
    """GN -> SiLU -> conv -> (+ time) -> GN -> SiLU -> dropout -> conv, with a residual connection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, residual."""

    def __init__(self, channels: int, heads: int = 4, groups: int = 8):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention width {channels} is not divisible by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three n d) h w -> three b n (h w) d", three=3, n=self.heads)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(rearrange(y, "b n (h w) d -> b (n d) h w", h=h, w=w))
