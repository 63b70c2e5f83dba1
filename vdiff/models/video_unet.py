"""U-Nets on video: (B, C, T, H, W), t (B,) -> (B, C_out, T, H, W).

`VideoUNet` is the 2D U-Net of unet.py with every convolution applied to each frame alone
(space-only, as in VDM, Ho et al. 2022) and attention inserted after the residual blocks at chosen
resolutions: `spatial_resolutions` (within each frame), `temporal_resolutions` (across frames at each
pixel; skipped exactly when T = 1, so images train the same network), `full_resolutions` (3D).
`temporal_conv_resolutions` adds a residual convolution across frames at each pixel after the residual
block (Make-A-Video's pseudo-3D convolution, Singer et al. 2022): local in time, cheap at high resolution.
The configs choose: `factorized_unet` puts spatial + temporal attention at the low resolutions,
`unet3d` (VDM-style) temporal attention at every resolution and spatial attention at the lowest.
"""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vdiff.models.attention import FullAttention, SpatialAttention, TemporalAttention
from vdiff.models.conditioning import add_condition, conditioner
from vdiff.models.layers import ResBlock, TimeEmbedding, check_groups
from vdiff.models.unet import Downsample, Upsample, unet_levels


def per_frame(layer, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Apply a 2D layer to every frame of (B, C, T, H, W); args (B, D) are repeated per frame, kwargs passed as
    they are."""
    b = x.shape[0]
    t = x.shape[2]
    args = [repeat(a, "b d -> (b t) d", t=t) for a in args]
    y = layer(rearrange(x, "b c t h w -> (b t) c h w"), *args, **kwargs)
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class FrameResBlock(ResBlock):
    """ResBlock (GroupNorm + 3x3 convs + time embedding) on each frame alone."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return per_frame(super().forward, x, emb)


class FrameDownsample(Downsample):
    """Downsample on each frame: (B, C, T, H, W) -> (B, C, T, H/2, W/2)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return per_frame(super().forward, h, emb)


class FrameUpsample(Upsample):
    """Upsample on each frame to the newest skip's size: (B, C, T, h, w) -> (B, C, T, H, W)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        return per_frame(self.resize, h, size=skips[-1].shape[-2:])


class TemporalConv(nn.Module):
    """x + Conv(SiLU(GroupNorm(x))) over `kernel_size` neighbouring frames at each pixel: (B, C, T, H, W) -> same.
    Zero-initialised, so it starts as the identity; `causal` pads with past frames only (frame k sees
    frames <= k); the identity at T = 1, like TemporalAttention."""

    def __init__(self, dim: int, kernel_size: int = 3, groups: int = 8, causal: bool = False):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"temporal_kernel_size={kernel_size} must be at least 1")
        self.norm = nn.GroupNorm(groups, dim)
        self.conv = nn.Conv3d(dim, dim, (kernel_size, 1, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        k = kernel_size - 1
        self.pad = (0, 0, 0, 0, k, 0) if causal else (0, 0, 0, 0, k // 2, k - k // 2)  # (W, H, T) pairs

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[2] == 1:
            return x
        y = F.pad(F.silu(self.norm(x)), self.pad)  # (B, C, T + k, H, W), zeros beyond the clip's ends
        return x + self.conv(y)  # (B, C, T, H, W)


class VideoUNet(nn.Module):
    example_layout = "C T H W"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        image_size: int = 32,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        spatial_resolutions: tuple[int, ...] = (16, 8),
        temporal_resolutions: tuple[int, ...] = (16, 8),
        full_resolutions: tuple[int, ...] = (),
        temporal_conv_resolutions: tuple[int, ...] = (),
        temporal_kernel_size: int = 3,
        heads: int = 4,
        causal: bool = False,
        groups: int = 8,
        dropout: float = 0.0,
        num_classes: int | None = None,
        cond_drop_prob: float = 0.0,
    ):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        check_groups([channels, *widths], groups)
        emb_dim = 4 * channels
        self.time = TimeEmbedding(channels, emb_dim)
        self.cond = conditioner(num_classes, emb_dim, drop_prob=cond_drop_prob)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)

        def block(c_in, c_out, res):
            layers = [FrameResBlock(c_in, c_out, emb_dim=emb_dim, groups=groups, dropout=dropout)]
            if res in temporal_conv_resolutions:
                layers.append(TemporalConv(c_out, kernel_size=temporal_kernel_size, groups=groups, causal=causal))
            if res in spatial_resolutions:
                layers.append(SpatialAttention(c_out, heads))
            if res in temporal_resolutions:
                layers.append(TemporalAttention(c_out, heads, causal))
            if res in full_resolutions:
                layers.append(FullAttention(c_out, heads, causal))
            return layers

        def mid(c, res):
            return [*block(c, c, res), FrameResBlock(c, c, emb_dim=emb_dim, groups=groups, dropout=dropout)]

        self.down, self.mid, self.up, c = unet_levels(
            block,
            mid,
            channels=channels,
            widths=widths,
            num_res_blocks=num_res_blocks,
            image_size=image_size,
            down=FrameDownsample,
            up=FrameUpsample,
        )
        self.head = nn.Sequential(
            nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, out_channels or in_channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        emb = add_condition(self.time(t), self.cond, cond)  # (B, 4C)
        h = per_frame(self.stem, x)  # (B, C, T, H, W)
        hs = [h]
        for layer in self.down:  # blocks keep the size, FrameDownsample halves H and W
            h = layer(h, emb)
            hs.append(h)
        h = self.mid(h, emb)  # (B, C_low, T, H_low, W_low)
        for layer in self.up:  # UpBlocks take a skip each, FrameUpsample doubles to the skip's size
            h = layer(h, emb, hs)
        return per_frame(self.head, h)  # (B, C_out, T, H, W)
