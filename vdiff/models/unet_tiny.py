"""The reference-size U-Net used for like-for-like speed comparisons on 28x28 images (no attention).

Blocks are conv3x3 -> GroupNorm(8) -> SiLU plus a projected 64-d sinusoidal time embedding.
(B, 1, 28, 28) -> enc 1->32 @28 -> pool -> 32->64 @14 -> pool -> 64->64 @7
-> up, cat skip: 128->32 @14 -> up, cat skip: 64->32 @28 -> 1x1 conv -> (B, 1, 28, 28).
"""

import torch
import torch.nn.functional as F
from torch import nn

from vdiff.models.conditioning import add_condition, conditioner
from vdiff.models.layers import TimeEmbedding


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(8, c_out)
        self.emb = nn.Linear(emb_dim, c_out)

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor
    ) -> torch.Tensor:  # (B, c_in, H, W), (B, D) -> (B, c_out, H, W)
        return F.silu(self.norm(self.conv(x))) + self.emb(emb)[:, :, None, None]


class UNetTiny(nn.Module):
    example_layout = "C H W"

    def __init__(
        self, in_channels: int = 1, emb_dim: int = 64, num_classes: int | None = None, cond_drop_prob: float = 0.0
    ):
        super().__init__()
        self.time = TimeEmbedding(emb_dim, emb_dim)
        self.cond = conditioner(num_classes, emb_dim, drop_prob=cond_drop_prob)
        self.enc1 = Block(in_channels, 32, emb_dim)
        self.enc2 = Block(32, 64, emb_dim)
        self.mid = Block(64, 64, emb_dim)
        self.dec2 = Block(128, 32, emb_dim)
        self.dec1 = Block(64, 32, emb_dim)
        self.out = nn.Conv2d(32, in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = add_condition(self.time(t), self.cond, cond)  # (B, emb_dim)
        h1 = self.enc1(x, emb)  # (B, 32, H, W)
        h2 = self.enc2(F.max_pool2d(h1, 2), emb)  # (B, 64, H/2, W/2)
        h = self.mid(F.max_pool2d(h2, 2), emb)  # (B, 64, H/4, W/4)
        h = self.dec2(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), h2], 1), emb)  # (B, 32, H/2, W/2)
        h = self.dec1(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), h1], 1), emb)  # (B, 32, H, W)
        return self.out(h)  # (B, C, H, W)
