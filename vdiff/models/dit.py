"""Diffusion Transformer (DiT, Peebles & Xie 2023) on spacetime patches of video latents.

`DiT(x, t, cond=None)`: latents (B, C, T, H, W), t (B,) long timesteps -> (B, C_out, T, H, W).
The clip is cut into pt x ph x pw patches (`patchify`), each patch is one token (a linear embedding
plus a learned or fixed sinusoidal spacetime position), N transformer blocks run over all tokens,
a final layer maps each token back to its patch (`unpatchify`).

Every block and the final layer are modulated by adaLN-Zero: the timestep embedding (sinusoidal
features through an MLP) regresses a shift, a scale and a gate per LayerNorm, all zero at
initialisation, so each block starts as the identity and the network's output starts at zero.
The condition (a label per clip) enters through `Conditioner`, which owns its embedding, its
classifier-free-guidance dropout and the null condition, in one of three modes:
- `adaln`: the condition vector is added to the timestep embedding (DiT's best);
- `cross_attn`: each block attends from its video tokens to the condition's context tokens, after
  self-attention; the output projection starts at zero, so the block still starts as the identity;
- `none`: no conditioner; a label passed in is ignored.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdiff.models.conditioning import Conditioner
from vdiff.models.layers import sinusoidal_embedding
from vdiff.models.transformer import SelfAttention

FREQ_DIM = 256  # sinusoidal features of the timestep, as in DiT


def patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, pt * ph * pw * C) tokens, in (t, h, w) order."""
    pt, ph, pw = patch
    return rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)


def unpatchify(tokens: torch.Tensor, patch: tuple[int, int, int], grid: tuple[int, int, int]) -> torch.Tensor:
    """(B, N, pt * ph * pw * C) tokens on a (T / pt, H / ph, W / pw) grid -> (B, C, T, H, W)."""
    pt, ph, pw = patch
    t, h, w = grid
    return rearrange(tokens, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw)


def spacetime_positions(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """(T * H * W, dim) fixed sinusoidal positions: h and w take a third of the features each, t the rest."""
    t, h, w = grid
    side = 2 * (dim // 6)
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    pos_t = sinusoidal_embedding(tt.flatten(), dim - 2 * side)  # (N, dim - 2 side)
    pos_h = sinusoidal_embedding(hh.flatten(), side)  # (N, side)
    pos_w = sinusoidal_embedding(ww.flatten(), side)  # (N, side)
    return torch.cat([pos_t, pos_h, pos_w], dim=-1)  # (N, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class CrossAttention(nn.Module):
    """Queries from the tokens (B, N, D), keys and values from a context (B, L, context_dim)."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, heads, N, d)
        k, v = rearrange(self.kv(context), "b l (two h d) -> two b h l d", two=2, h=self.heads)  # (B, heads, L, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))  # (B, N, D)


class DiTBlock(nn.Module):
    """adaLN-Zero block: x + gate * attn(modulate(LN(x))), [x + cross_attn(LN(x), context)], x + gate * mlp(...)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, context_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.cross = None
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
            self.cross = CrossAttention(dim, heads, context_dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=-1)  # (B, 1, D) each
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))[0]  # (B, N, D); [1]: keys and values
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), context)  # (B, N, D)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))  # (B, N, D)


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm, then a linear map of each token to its patch's values."""

    def __init__(self, dim: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c)[:, None].chunk(2, dim=-1)  # (B, 1, D) each
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, N, patch_dim)


class DiT(nn.Module):
    example_layout = "C T H W"

    def __init__(
        self,
        in_channels: int = 4,
        input_size: tuple[int, int, int] = (8, 8, 8),
        patch_size: tuple[int, int, int] = (1, 2, 2),
        hidden_size: int = 384,
        depth: int = 8,
        heads: int = 6,
        mlp_ratio: int = 4,
        out_channels: int | None = None,
        positions: str = "learned",
        conditioning: str = "adaln",
        num_classes: int | None = None,
        cond_drop_prob: float = 0.0,
        context_dim: int = 64,
    ):
        super().__init__()
        input_size = tuple(input_size)
        patch_size = tuple(patch_size)
        if len(input_size) != 3 or len(patch_size) != 3:
            raise ValueError(
                f"input_size={list(input_size)} and patch_size={list(patch_size)} must each hold three sizes: T, H, W"
            )
        if any(n % p for n, p in zip(input_size, patch_size)):
            raise ValueError(
                f"input_size={list(input_size)} (latent T, H, W) is not divisible by "
                f"patch_size={list(patch_size)}; pick a patch size that divides the latent size"
            )
        if hidden_size % heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by heads={heads}")
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions={positions!r} must be learned or sinusoidal")
        if positions == "sinusoidal" and hidden_size % 2:
            raise ValueError(f"hidden_size={hidden_size} must be even for sinusoidal positions")
        if conditioning not in ("adaln", "cross_attn", "none"):
            raise ValueError(f"conditioning={conditioning!r} must be adaln, cross_attn or none")
        if cond_drop_prob > 0 and num_classes is None:
            raise ValueError(f"cond_drop_prob={cond_drop_prob} needs labels, but num_classes is null")
        self.input_size = input_size
        self.patch_size = patch_size
        self.grid = tuple(n // p for n, p in zip(input_size, patch_size))
        self.conditioning = conditioning
        self.out_channels = out_channels or in_channels
        num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        patch_volume = patch_size[0] * patch_size[1] * patch_size[2]

        self.embed = nn.Linear(patch_volume * in_channels, hidden_size)
        if positions == "learned":
            self.pos = nn.Parameter(torch.zeros(1, num_tokens, hidden_size))
            nn.init.normal_(self.pos, std=0.02)
        else:
            self.register_buffer("pos", spacetime_positions(self.grid, hidden_size)[None], persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(FREQ_DIM, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.conditioner = None
        if conditioning != "none" and num_classes is not None:
            self.conditioner = Conditioner(
                num_classes=num_classes,
                dim=hidden_size,
                drop_prob=cond_drop_prob,
                context="one_hot_blocks" if conditioning == "cross_attn" else None,
                context_dim=context_dim,
            )
        block_context = context_dim if conditioning == "cross_attn" else None
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, heads, mlp_ratio=mlp_ratio, context_dim=block_context) for _ in range(depth)
        )
        self.final = FinalLayer(hidden_size, patch_volume * self.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT's: xavier linears, small timestep / label embeddings, every adaLN regression and the output at zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for layer in (self.time_mlp[0], self.time_mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.conditioner is not None:
            nn.init.normal_(self.conditioner.embedding.weight, std=0.02)
        zeroed = [self.final.modulation[1], self.final.linear]
        for block in self.blocks:
            zeroed.append(block.modulation[1])
            if block.cross is not None:
                zeroed.append(block.cross.proj)
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"latents of size {list(x.shape[2:])} (T, H, W) do not match input_size={list(self.input_size)}"
            )
        if self.conditioner is None and cond is not None and self.conditioning != "none":
            raise ValueError("the batch carries labels but the network was built without num_classes")
        h = self.embed(patchify(x, self.patch_size)) + self.pos  # (B, N, D)
        c = self.time_mlp(sinusoidal_embedding(t, FREQ_DIM))  # (B, D)
        context = None
        if self.conditioner is not None:
            condition = self.conditioner(cond, batch_size=x.shape[0], device=x.device)
            context = condition.context  # (B, 1, context_dim) for cross_attn, None for adaln
            if self.conditioning == "adaln":
                c = c + condition.vector  # (B, D)
        for block in self.blocks:
            h = block(h, c, context)  # (B, N, D)
        out = self.final(h, c)  # (B, N, pt * ph * pw * C_out)
        return unpatchify(out, self.patch_size, self.grid)  # (B, C_out, T, H, W)
