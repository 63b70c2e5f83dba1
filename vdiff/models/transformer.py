"""The token transformer: the masked-diffusion denoiser, the autoregressive baseline and the
block-diffusion model are this one network under different attention masks.

`Transformer(x, t, cond=None, *, positions=None, attn_mask=None, cache=None, commit=False)`: tokens
`x` (B, L) long, `t` (B,) float in [0, 1] (ignored without time conditioning) -> logits (B, L, V).
By default every position attends to every other (bidirectional). The task may pass `attn_mask`
(L, K) bool, True where query l may attend key k, and `positions` (L,) long, the absolute position
of each token (default: the cache's length onwards), so one call can hold a sequence twice (block
diffusion's noisy and clean copies share positions). A `KVCache` holds the keys and values of
tokens seen before: this call's queries attend to the K = cached + L keys, and `commit=True`
appends this call's keys and values to it (decoding left to right, or block by block).
Pre-LayerNorm blocks as in GPT-2/nanoGPT, attention through `scaled_dot_product_attention`. Time conditioning is optional (MDLM finds it can be
dropped: with absorbing masking the number of [MASK] tokens already tells the time); when on, t
modulates each LayerNorm with a shift and scale (adaLN, zero-initialised as in DiT). Positions are a
learned table added to the tokens, or rotary (RoPE) inside attention, which sees only offsets; either
way `relative_bias` can add a learned score per head and offset to every attention logit (Shaw et al.
2018, T5 without buckets), so a head can attend to "every 3rd position" from the first steps on.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdiff.models.layers import sinusoidal_embedding


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (seq_len, head_dim / 2) of the rotary position angles l * base^(-2i / head_dim)."""
    freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * freqs[None]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE (Su et al. 2021): rotate each pair (x_2i, x_2i+1) of (B, H, L, d) by its position's angle
    (cos, sin: (L, d / 2), the tables at the tokens' positions), so q . k depends on the positions
    only through their offset."""
    x1 = x[..., 0::2]
    x2 = x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class KVCache:
    """The keys and values of the tokens a transformer has already seen, per block, (B, H, K, d)
    each, with their positions (K,): what lets a causal or block-causal decoder attend to earlier
    tokens without running them again."""

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.positions = torch.zeros(0, dtype=torch.long)

    @property
    def length(self) -> int:
        return len(self.positions)

    def past(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return (self.keys[layer], self.values[layer]) if layer < len(self.keys) else None

    def append(self, kv: list[tuple[torch.Tensor, torch.Tensor]], positions: torch.Tensor) -> None:
        """Store one call's full (cached + new) keys and values and its positions."""
        self.keys = [k for k, _ in kv]
        self.values = [v for _, v in kv]
        self.positions = torch.cat([self.positions.to(positions.device), positions])


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rotary=None, mask: torch.Tensor | None = None, past=None):
        """x (B, L, D) -> (out (B, L, D), (keys, values) (B, H, K, d) each: the past's and this call's).
        `mask` (bool (L, K), or float (H, L, K) added to the logits) and `past` (cached keys, values)."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        if rotary is not None:  # the tables at these tokens' positions; cached keys were rotated at theirs
            q = apply_rotary(q, *rotary)
            k = apply_rotary(k, *rotary)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, H, K, d)
            v = torch.cat([past[1], v], dim=2)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=False)
        return self.proj(rearrange(out, "b h l d -> b l (h d)")), (k, v)


class RelativeBias(nn.Module):
    """A learned attention-logit bias per head and offset j - i in (-L, L): (H, L, L) for a length L."""

    def __init__(self, heads: int, seq_len: int):
        super().__init__()
        self.seq_len = seq_len
        self.table = nn.Parameter(torch.zeros(heads, 2 * seq_len - 1))  # zero: plain attention at the start

    def forward(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        return self.table[:, key_pos[None, :] - query_pos[:, None] + self.seq_len - 1]  # (H, L, K)


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        time_dim: int | None = None,
        seq_len: int | None = None,
    ):
        super().__init__()
        self.relative = RelativeBias(heads, seq_len) if seq_len is not None else None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=time_dim is None)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=time_dim is None)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout)
        )
        self.modulation = None
        if time_dim is not None:  # shift and scale for both norms, starting at the identity
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 4 * dim))

    def forward(self, x: torch.Tensor, temb=None, rotary=None, mask=None, past=None, query_pos=None, key_pos=None):
        """x (B, L, D) -> (x, this block's keys and values); `mask` (L, K) bool or None (all keys)."""
        if self.relative is not None:  # (H, L, K) float: the learned bias, -inf where the mask forbids
            bias = self.relative(query_pos, key_pos).to(x.dtype)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        if self.modulation is None:
            h, kv = self.attn(self.norm1(x), rotary, mask, past)
            x = x + h
            return x + self.mlp(self.norm2(x)), kv
        shift1, scale1, shift2, scale2 = self.modulation(temb)[:, None].chunk(4, dim=-1)
        h, kv = self.attn(self.norm1(x) * (1 + scale1) + shift1, rotary, mask, past)
        x = x + h
        return x + self.mlp(self.norm2(x) * (1 + scale2) + shift2), kv


class Transformer(nn.Module):
    example_layout = "L"

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        dim: int = 384,
        depth: int = 6,
        heads: int = 6,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        time_conditioning: bool = False,
        positions: str = "learned",
        relative_bias: bool = False,
    ):
        super().__init__()
        if positions not in ("learned", "rotary"):
            raise ValueError(f"positions={positions!r} must be learned or rotary")
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.time_conditioning = time_conditioning
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, seq_len, dim), requires_grad=positions == "learned")
        if positions == "rotary":
            cos, sin = rotary_tables(seq_len, dim // heads)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.positions = positions
        self.time_mlp = (
            nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim)) if time_conditioning else None
        )
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                heads,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                time_dim=dim if time_conditioning else None,
                seq_len=seq_len if relative_bias else None,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        self.apply(self._init)
        if positions == "learned":
            nn.init.normal_(self.pos_emb, std=0.02)
        for block in self.blocks:
            if block.modulation is not None:
                nn.init.zeros_(block.modulation[1].weight)
                nn.init.zeros_(block.modulation[1].bias)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | None = None,
        cond=None,
        *,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        commit: bool = False,
    ) -> torch.Tensor:
        if cond is not None:
            raise ValueError("the batch carries class labels but the Transformer takes no condition")
        past = cache.length if cache is not None else 0
        if positions is None:  # consecutive from the cache's end: the table is sliced, not gathered
            if past + x.shape[1] > self.seq_len:
                raise ValueError(f"position {past + x.shape[1] - 1} exceeds the network's seq_len={self.seq_len}")
            positions = torch.arange(past, past + x.shape[1], device=x.device)  # (L,)
            pos_emb = self.pos_emb[:, past : past + x.shape[1]]
        else:
            if int(positions.max()) >= self.seq_len:
                raise ValueError(f"position {int(positions.max())} exceeds the network's seq_len={self.seq_len}")
            pos_emb = self.pos_emb[:, positions]
        key_pos = torch.cat([cache.positions.to(x.device), positions]) if cache is not None else positions  # (K,)
        h = self.drop(self.tok_emb(x) + pos_emb)  # (B, L, D)
        temb = None
        if self.time_mlp is not None:
            temb = self.time_mlp(sinusoidal_embedding(t.float() * 1000, h.shape[-1]))  # (B, D)
        rotary = (self.rotary_cos[positions], self.rotary_sin[positions]) if self.positions == "rotary" else None
        kvs = []
        for i, block in enumerate(self.blocks):
            past_kv = cache.past(i) if cache is not None else None
            h, kv = block(h, temb, rotary, attn_mask, past_kv, query_pos=positions, key_pos=key_pos)  # (B, L, D)
            kvs.append(kv)
        if commit:
            cache.append(kvs, positions)
        return self.head(self.norm(h))  # (B, L, V)
