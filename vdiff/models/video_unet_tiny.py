"""The reference-size space-time U-Net for like-for-like speed comparisons on 8x32x32 clips.

(B, 1, T, 32, 32) -> conv3x3 1->32 @32 -> block(32) -> strided conv 32->64 @16 -> block(64)
-> bottleneck block(64) @16 -> transposed conv 64->32 @32, cat skip -> block(64) -> 1x1 conv -> (B, 1, T, 32, 32).
Convolutions act on each frame; `block` is a partial of `FactorizedBlock` (spatial attention, temporal
attention, MLP x4) or `FullBlock` (3D attention, MLP x4), so the two differ only in the attention.
"""

import torch
from torch import nn

from vdiff.models.conditioning import add_condition, conditioner
from vdiff.models.layers import TimeEmbedding
from vdiff.models.video_unet import per_frame


class VideoUNetTiny(nn.Module):
    example_layout = "C T H W"

    def __init__(
        self,
        block,
        in_channels: int = 1,
        channels: int = 32,
        num_classes: int | None = None,
        cond_drop_prob: float = 0.0,
    ):
        super().__init__()
        c = channels
        emb_dim = 4 * channels
        self.time = TimeEmbedding(c, emb_dim)
        self.cond = conditioner(num_classes, emb_dim, drop_prob=cond_drop_prob)
        self.stem = nn.Conv2d(in_channels, c, 3, padding=1)
        self.enc1 = block(dim=c, emb_dim=emb_dim)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.enc2 = block(dim=2 * c, emb_dim=emb_dim)
        self.mid = block(dim=2 * c, emb_dim=emb_dim)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec1 = block(dim=2 * c, emb_dim=emb_dim)
        self.out = nn.Conv2d(2 * c, in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = add_condition(self.time(t), self.cond, cond)  # (B, 4C)
        h1 = self.enc1(per_frame(self.stem, x), emb)  # (B, C, T, H, W)
        h = self.enc2(per_frame(self.down, h1), emb)  # (B, 2C, T, H/2, W/2)
        h = self.mid(h, emb)  # (B, 2C, T, H/2, W/2)
        h = self.dec1(torch.cat([per_frame(self.up, h), h1], dim=1), emb)  # (B, 2C, T, H, W)
        return per_frame(self.out, h)  # (B, C_in, T, H, W)
