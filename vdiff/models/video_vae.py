"""A video VAE for latent diffusion: per-frame 2D convolutions (frames share weights), spatial
downsampling by 2 ** (len(channel_mult) - 1), an optional temporal compression, and a
diagonal-Gaussian posterior sampled with the reparameterisation trick.

(B, C, T, H, W) in [-1, 1] -> encoder per frame: conv3x3 -> [res blocks, stride-2 conv] per level
-> (B*T, c, h, w) -> temporal_downsample f: f consecutive frames stacked on channels, conv3x3
-> conv3x3 to 2 * latent_channels -> posterior over z (B, latent_channels, T/f, h, w).
decode(z) mirrors it: conv3x3 -> conv3x3 to f x channels, unstacked into f frames -> [res blocks,
nearest x2 + conv3x3] per level -> conv3x3 -> (B, C, T, H, W), unbounded (the loss pulls it to [-1, 1]).

Used by vdiff/tasks/autoencoder.py and, frozen, as a latent-diffusion first stage:
`encode(x) -> DiagonalGaussian`, `decode(z) -> x`, `latent_shape(data_shape) -> (c, t, h, w)`.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdiff.models.layers import check_groups

LOGVAR_RANGE = (-30.0, 20.0)  # as LDM's DiagonalGaussianDistribution: no overflow of exp(logvar)


class DiagonalGaussian:
    """N(mean, exp(logvar)) per latent element; `kl()` against N(0, I), summed per example (B,)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) in nats per example: 0.5 * sum(mean^2 + var - 1 - logvar)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class ConvBlock(nn.Module):
    """GN -> SiLU -> conv3x3 -> GN -> SiLU -> conv3x3, residual (1x1 conv when the width changes)."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Upsample2x(nn.Module):
    """Nearest-neighbour x2, then conv3x3 (no checkerboard of transposed convolutions)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VideoVAE(nn.Module):
    example_layout = "C T H W"

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        channel_mult: tuple = (1, 2, 2),
        num_res_blocks: int = 1,
        latent_channels: int = 4,
        temporal_downsample: int = 1,
        groups: int = 8,
    ):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        check_groups(widths, groups)
        if temporal_downsample < 1:
            raise ValueError(f"temporal_downsample={temporal_downsample} must be at least 1")
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.temporal_downsample = temporal_downsample
        self.spatial_downsample = 2 ** (len(widths) - 1)
        f = temporal_downsample
        top = widths[-1]

        encoder = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for level, width in enumerate(widths):
            c_in = widths[max(level - 1, 0)]
            encoder += [ConvBlock(c_in if i == 0 else width, width, groups) for i in range(num_res_blocks)]
            if level < len(widths) - 1:
                encoder.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        encoder += [nn.GroupNorm(groups, top), nn.SiLU()]
        self.encoder = nn.Sequential(*encoder)
        self.merge_time = nn.Conv2d(f * top, top, 3, padding=1)
        self.to_moments = nn.Sequential(nn.SiLU(), nn.Conv2d(top, 2 * latent_channels, 3, padding=1))

        self.from_latent = nn.Conv2d(latent_channels, top, 3, padding=1)
        self.split_time = nn.Sequential(nn.SiLU(), nn.Conv2d(top, f * top, 3, padding=1))
        decoder = []
        for level, width in reversed(list(enumerate(widths))):
            c_in = widths[min(level + 1, len(widths) - 1)]
            decoder += [ConvBlock(c_in if i == 0 else width, width, groups) for i in range(num_res_blocks)]
            if level > 0:
                decoder.append(Upsample2x(width))
        decoder += [nn.GroupNorm(groups, widths[0]), nn.SiLU(), nn.Conv2d(widths[0], in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*decoder)

    def latent_shape(self, data_shape) -> tuple:
        """(C, T, H, W) of one clip -> (latent_channels, T / f, H / s, W / s); ValueError if not divisible."""
        _, t, h, w = data_shape
        f = self.temporal_downsample
        s = self.spatial_downsample
        if t % f or h % s or w % s:
            raise ValueError(
                f"clips of {t} frames of {h}x{w} cannot be compressed by temporal_downsample={f} "
                f"in time and {s} in space"
            )
        return (self.latent_channels, t // f, h // s, w // s)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        b = x.shape[0]
        self.latent_shape(x.shape[1:])
        h = self.encoder(rearrange(x, "b c t h w -> (b t) c h w"))  # (B*T, c, h, w)
        h = rearrange(h, "(b t f) c h w -> (b t) (f c) h w", b=b, f=self.temporal_downsample)  # (B*T/f, f*c, h, w)
        moments = self.to_moments(self.merge_time(h))  # (B*T/f, 2*latent, h, w)
        moments = rearrange(moments, "(b t) c h w -> b c t h w", b=b)  # (B, 2*latent, T/f, h, w)
        mean, logvar = moments.chunk(2, dim=1)  # each (B, latent, T/f, h, w)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        h = self.from_latent(rearrange(z, "b c t h w -> (b t) c h w"))  # (B*T/f, c, h, w)
        h = self.split_time(h)  # (B*T/f, f*c, h, w)
        h = rearrange(h, "(b t) (f c) h w -> (b t f) c h w", b=b, f=self.temporal_downsample)  # (B*T, c, h, w)
        x = self.decoder(h)  # (B*T, C, H, W)
        return rearrange(x, "(b t) c h w -> b c t h w", b=b)  # (B, C, T, H, W)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruction of x from a posterior sample, and the posterior."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator)), posterior
