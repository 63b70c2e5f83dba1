"""Space-time attention over video feature maps (B, C, T, H, W), every layer residual: x + attn(x).

- `SpatialAttention`: each frame alone; B*T sequences of H*W tokens.
- `TemporalAttention`: each pixel across frames; B*H*W sequences of T tokens, a sinusoidal frame
  position encoding, optional `causal` mask (frame k sees frames <= k). With T = 1 it returns x
  unchanged, so a network sees images (T = 1) exactly as if its temporal layers were removed.
- `FullAttention`: all T*H*W tokens of a clip attend to each other (the 3D baseline); `causal`
  masks by frame.
Tokens are LayerNorm'ed per position (a GroupNorm would mix pixels and frames) and go through
`scaled_dot_product_attention`, which `chunked_sdpa` splits along the batch of sequences: the
fused CUDA kernels fail at a batch of 65536 sequences, which temporal attention reaches at
B*H*W = 16 * 64 * 64.
`FactorizedBlock` / `FullBlock` are transformer blocks on video (attention, then an MLP), with an
additive time embedding, as used by the reference-size networks.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdiff.models.layers import sinusoidal_embedding

MAX_SEQUENCES = 32768  # sequences x heads per fused-kernel call stays below 65536


def chunked_sdpa(q, k, v, attn_mask=None, is_causal: bool = False, max_sequences: int = MAX_SEQUENCES):
    """SDPA on (N, heads, L, d), at most `max_sequences` (N x heads) per call."""
    step = max(1, max_sequences // q.shape[1])
    if q.shape[0] <= step:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    return torch.cat(
        [
            F.scaled_dot_product_attention(
                q[i : i + step], k[i : i + step], v[i : i + step], attn_mask=attn_mask, is_causal=is_causal
            )
            for i in range(0, q.shape[0], step)
        ]
    )


def frame_positions(num_frames: int, dim: int, device, dtype) -> torch.Tensor:
    """(T, dim) sinusoidal encoding of the frame index."""
    return sinusoidal_embedding(torch.arange(num_frames, device=device), dim).to(dtype)


class _Attention(nn.Module):
    """LayerNorm -> multi-head attention over (N, L, C) token sequences -> projection."""

    def __init__(self, dim: int, heads: int = 4, max_sequences: int = MAX_SEQUENCES):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.max_sequences = max_sequences
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def attend(self, tokens, pos=None, attn_mask=None, is_causal: bool = False):
        h = self.norm(tokens)
        if pos is not None:
            h = h + pos
        q, k, v = rearrange(self.qkv(h), "n l (three m d) -> three n m l d", three=3, m=self.heads)
        y = chunked_sdpa(q, k, v, attn_mask=attn_mask, is_causal=is_causal, max_sequences=self.max_sequences)
        return self.out(rearrange(y, "n m l d -> n l (m d)"))


class SpatialAttention(_Attention):
    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        h = x.shape[3]
        y = self.attend(rearrange(x, "b c t h w -> (b t) (h w) c"))
        return x + rearrange(y, "(b t) (h w) c -> b c t h w", b=b, h=h)


class TemporalAttention(_Attention):
    def __init__(self, dim: int, heads: int = 4, causal: bool = False, max_sequences: int = MAX_SEQUENCES):
        super().__init__(dim, heads, max_sequences)
        self.causal = causal

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, t, h, _ = x.shape
        if t == 1:
            return x
        y = self.attend(
            rearrange(x, "b c t h w -> (b h w) t c"),
            frame_positions(t, c, device=x.device, dtype=x.dtype),
            is_causal=self.causal,
        )
        return x + rearrange(y, "(b h w) t c -> b c t h w", b=b, h=h)


class FullAttention(_Attention):
    def __init__(self, dim: int, heads: int = 4, causal: bool = False, max_sequences: int = MAX_SEQUENCES):
        super().__init__(dim, heads, max_sequences)
        self.causal = causal

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        _, c, t, h, w = x.shape
        pos = (
            rearrange(frame_positions(t, c, device=x.device, dtype=x.dtype), "t c -> t 1 c")
            .expand(t, h * w, c)
            .reshape(t * h * w, c)
        )
        mask = None
        if self.causal:  # token i sees token j when frame(j) <= frame(i)
            frame = torch.arange(t, device=x.device).repeat_interleave(h * w)
            mask = frame[None, :] <= frame[:, None]
        y = self.attend(rearrange(x, "b c t h w -> b (t h w) c"), pos, attn_mask=mask)
        return x + rearrange(y, "b (t h w) c -> b c t h w", t=t, h=h)


class _Block(nn.Module):
    """x + time embedding, then the attention layers, then x + MLP(LN(x)) over channels."""

    def __init__(self, dim: int, emb_dim: int, attention: list[nn.Module], mlp_ratio: int = 4):
        super().__init__()
        self.emb = nn.Linear(emb_dim, dim)
        self.attention = nn.ModuleList(attention)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = x + rearrange(self.emb(F.silu(emb)), "b c -> b c 1 1 1")
        for layer in self.attention:
            x = layer(x)
        y = self.mlp(self.norm(rearrange(x, "b c t h w -> b t h w c")))
        return x + rearrange(y, "b t h w c -> b c t h w")


class FactorizedBlock(_Block):
    """Spatial attention, temporal attention, MLP."""

    def __init__(self, dim: int, emb_dim: int, heads: int = 4, causal: bool = False, mlp_ratio: int = 4):
        super().__init__(
            dim,
            emb_dim,
            attention=[SpatialAttention(dim, heads), TemporalAttention(dim, heads, causal)],
            mlp_ratio=mlp_ratio,
        )


class FullBlock(_Block):
    """Full 3D attention, MLP: the baseline that factorized attention is measured against."""

    def __init__(self, dim: int, emb_dim: int, heads: int = 4, causal: bool = False, mlp_ratio: int = 4):
        super().__init__(dim, emb_dim, attention=[FullAttention(dim, heads, causal)], mlp_ratio=mlp_ratio)
