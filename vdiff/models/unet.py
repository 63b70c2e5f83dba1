"""A DDPM-style 2D U-Net (Ho et al. 2020; Nichol & Dhariwal 2021): (B, C, H, W), t (B,) -> (B, C_out, H, W).

Residual blocks with GroupNorm and an additive time (+ class) embedding, self-attention at the chosen
resolutions, strided-conv downsampling, nearest upsampling and skip concatenation at every block.
"""
import torch
import torch.nn.functional as F
from torch import nn

from vdiff.models.layers import ResBlock, SelfAttention2d, TimeEmbedding, check_groups


def unet_levels(block, mid, channels: int, widths: list[int], num_res_blocks: int, image_size: int):
    """The layout shared by the 2D and the video U-Nets: `num_res_blocks` blocks per level going down
    with a strided 3x3 conv between levels, the middle, then `num_res_blocks + 1` blocks per level going
    up (each taking a skip) with a 3x3 conv after nearest upsampling between levels. `block(c_in, c_out,
    res)` and `mid(c, res)` build the blocks. Returns (down, mid, up, output width)."""
    down, skips, c, res = nn.ModuleList(), [channels], channels, image_size
    for level, w in enumerate(widths):
        for _ in range(num_res_blocks):
            down.append(block(c, w, res))
            c = w
            skips.append(c)
        if level < len(widths) - 1:
            down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            res = (res + 1) // 2
            skips.append(c)
    middle = mid(c, res)
    up = nn.ModuleList()
    for level, w in reversed(list(enumerate(widths))):
        for _ in range(num_res_blocks + 1):
            up.append(block(c + skips.pop(), w, res))
            c = w
        if level > 0:
            up.append(nn.Conv2d(c, c, 3, padding=1))
            res *= 2
    return down, middle, up, c


class UNet(nn.Module):
    example_layout = "C H W"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        image_size: int = 28,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (7,),
        heads: int = 4,
        groups: int = 8,
        dropout: float = 0.0,
        num_classes: int | None = None,
    ):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        check_groups([channels, *widths], groups)
        emb_dim = 4 * channels
        self.time = TimeEmbedding(channels, emb_dim, num_classes)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)

        def block(c_in, c_out, res):
            layers = [ResBlock(c_in, c_out, emb_dim, groups, dropout)]
            if res in attention_resolutions:
                layers.append(SelfAttention2d(c_out, heads, groups))
            return nn.ModuleList(layers)

        def mid(c, res):
            return nn.ModuleList([ResBlock(c, c, emb_dim, groups, dropout), SelfAttention2d(c, heads, groups), ResBlock(c, c, emb_dim, groups, dropout)])

        self.down, self.mid, self.up, c = unet_levels(block, mid, channels, widths, num_res_blocks, image_size)
        self.head = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, out_channels or in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(t, cond)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, nn.Conv2d):
                h = layer(h)
            else:
                for sub in layer:
                    h = sub(h, emb)
            hs.append(h)
        for sub in self.mid:
            h = sub(h, emb)
        for layer in self.up:
            if isinstance(layer, nn.Conv2d):
                h = layer(F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
            else:
                h = torch.cat([h, hs.pop()], dim=1)
                for sub in layer:
                    h = sub(h, emb)
        return self.head(h)
