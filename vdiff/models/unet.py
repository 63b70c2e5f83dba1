"""A DDPM-style 2D U-Net (Ho et al. 2020; Nichol & Dhariwal 2021): (B, C, H, W), t (B,) -> (B, C_out, H, W).

Residual blocks with GroupNorm and an additive time (+ condition) embedding, self-attention at the chosen
resolutions, strided-conv downsampling, nearest upsampling and skip concatenation at every block.
"""

import torch
import torch.nn.functional as F
from torch import nn

from vdiff.models.conditioning import add_condition, conditioner
from vdiff.models.layers import ResBlock, SelfAttention2d, TimeEmbedding, check_groups


class Block(nn.ModuleList):
    """A residual block and its attention layers; every layer takes (h, emb)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            h = layer(h, emb)
        return h


class UpBlock(Block):
    """A Block on the concatenation of h and the newest skip (popped from `skips`)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        return super().forward(torch.cat([h, skips.pop()], dim=1), emb)


class Downsample(nn.Conv2d):
    """Strided 3x3 conv: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return super().forward(h)


class Upsample(nn.Conv2d):
    """Nearest upsampling to the newest skip's size, then a 3x3 conv: (B, C, h, w) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        return self.resize(h, size=skips[-1].shape[-2:])

    def resize(self, h: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return super().forward(F.interpolate(h, size=size, mode="nearest"))


def unet_levels(
    block, mid, channels: int, widths: list[int], num_res_blocks: int, image_size: int, down=Downsample, up=Upsample
):
    """The layout shared by the 2D and the video U-Nets: `num_res_blocks` blocks per level going down
    with a `down` module between levels, the middle, then `num_res_blocks + 1` blocks per level going
    up (each taking a skip) with an `up` module between levels. `block(c_in, c_out, res)` returns the
    layers of one block, `mid(c, res)` those of the middle. Returns (down, mid, up, output width)."""
    down_path = nn.ModuleList()
    skips = [channels]
    c = channels
    res = image_size
    for level, w in enumerate(widths):
        for _ in range(num_res_blocks):
            down_path.append(Block(block(c, w, res)))
            c = w
            skips.append(c)
        if level < len(widths) - 1:
            down_path.append(down(c))
            res = (res + 1) // 2
            skips.append(c)
    middle = Block(mid(c, res))
    up_path = nn.ModuleList()
    for level, w in reversed(list(enumerate(widths))):
        for _ in range(num_res_blocks + 1):
            up_path.append(UpBlock(block(c + skips.pop(), w, res)))
            c = w
        if level > 0:
            up_path.append(up(c))
            res *= 2
    return down_path, middle, up_path, c


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
        cond_drop_prob: float = 0.0,
    ):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        check_groups([channels, *widths], groups)
        self.in_channels = in_channels
        self.image_size = image_size
        self.channel_mult = list(channel_mult)
        emb_dim = 4 * channels
        self.time = TimeEmbedding(channels, emb_dim)
        self.cond = conditioner(num_classes, emb_dim, drop_prob=cond_drop_prob)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)

        def block(c_in, c_out, res):
            layers = [ResBlock(c_in, c_out, emb_dim=emb_dim, groups=groups, dropout=dropout)]
            if res in attention_resolutions:
                layers.append(SelfAttention2d(c_out, heads, groups))
            return layers

        def mid(c, res):
            return [
                ResBlock(c, c, emb_dim=emb_dim, groups=groups, dropout=dropout),
                SelfAttention2d(c, heads, groups),
                ResBlock(c, c, emb_dim=emb_dim, groups=groups, dropout=dropout),
            ]

        self.down, self.mid, self.up, c = unet_levels(
            block, mid, channels=channels, widths=widths, num_res_blocks=num_res_blocks, image_size=image_size
        )
        self.head = nn.Sequential(
            nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, out_channels or in_channels, 3, padding=1)
        )

    def check_input(self, shape: tuple) -> None:
        """ValueError, naming the parameter, when examples of `shape` (C, H, W) do not fit this net: another
        channel count, sides the downsampling does not divide (it would run, through uneven nearest
        upsampling), or a size other than `image_size`, from which `attention_resolutions` are counted."""
        if len(shape) != 3:  # another layout: the start-up layout check names it
            return
        c, h, w = shape
        if c != self.in_channels:
            raise ValueError(
                f"in_channels={self.in_channels} but the data's images have {c} channel(s); "
                "set in_channels to match (the RGB presets take it from the data)"
            )
        factor = 2 ** (len(self.channel_mult) - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"the data's {h}x{w} images are not divisible by {factor}, the downsampling of "
                f"channel_mult={self.channel_mult}; choose images whose sides are multiples of {factor}"
            )
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"image_size={self.image_size} but the data's images are {h}x{w} "
                "(attention_resolutions are counted from it); set image_size to the data's size"
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = add_condition(self.time(t), self.cond, cond)  # (B, 4C)
        h = self.stem(x)  # (B, C, H, W)
        hs = [h]
        for layer in self.down:  # blocks keep the size, Downsample halves it
            h = layer(h, emb)
            hs.append(h)
        h = self.mid(h, emb)  # (B, C_low, H_low, W_low)
        for layer in self.up:  # UpBlocks take a skip each, Upsample doubles to the skip's size
            h = layer(h, emb, hs)
        return self.head(h)  # (B, C_out, H, W)
