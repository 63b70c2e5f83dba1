"""Space-time attention and the video U-Nets: what mixes with what, and the 3D formula."""

import copy
import functools
import math

import pytest
import torch
from einops import rearrange

from vdiff.models import (
    FactorizedBlock,
    FullAttention,
    FullBlock,
    SpatialAttention,
    TemporalAttention,
    VideoUNet,
    VideoUNetTiny,
)
from vdiff.models.attention import chunked_sdpa, frame_positions
from vdiff.models.video_unet import TemporalConv

B, C, T, H, W = 2, 8, 4, 5, 6


@pytest.fixture
def x():
    return torch.randn(B, C, T, H, W, generator=torch.Generator().manual_seed(0))


def changed(layer, x, index):
    """Where the output moves when x[index] is perturbed: a (B, T, H, W) boolean map."""
    torch.manual_seed(1)
    y = x.clone()
    y[index] += torch.randn_like(y[index])
    with torch.no_grad():
        return (layer(y) - layer(x)).abs().amax(dim=1) > 1e-6


def build(cls, **kw):
    torch.manual_seed(0)
    return cls(C, heads=2, **kw).eval()


def test_spatial_attention_keeps_frames_apart(x):
    moved = changed(build(SpatialAttention), x, (0, slice(None), 2))
    assert moved[0, 2].all() and moved.sum() == H * W


def test_temporal_attention_keeps_pixels_apart(x):
    moved = changed(build(TemporalAttention), x, (1, slice(None), slice(None), 3, 4))
    assert moved[1, :, 3, 4].all() and moved.sum() == T


@pytest.mark.parametrize("cls", [TemporalAttention, FullAttention])
def test_causal_attention_hides_the_future(cls, x):
    k = 2
    moved = changed(build(cls, causal=True), x, (slice(None), slice(None), k))
    assert not moved[:, :k].any() and moved[:, k:].all()
    assert changed(build(cls), x, (slice(None), slice(None), k))[:, :k].all()  # not causal: the past sees it


@pytest.mark.parametrize("causal", [False, True])
def test_full_attention_equals_the_formula(x, causal):
    layer = build(FullAttention, causal=causal)
    tokens = rearrange(x, "b c t h w -> b (t h w) c")
    pos = frame_positions(T, C, x.device, x.dtype).repeat_interleave(H * W, dim=0)
    q, k, v = ((layer.norm(tokens) + pos) @ layer.qkv.weight.T + layer.qkv.bias).chunk(3, dim=-1)
    heads, d = 2, C // 2
    q, k, v = (rearrange(a, "b l (m d) -> b m l d", m=heads) for a in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:  # a token sees the tokens of its own and earlier frames
        frame = torch.arange(T).repeat_interleave(H * W)
        scores = scores.masked_fill(frame[None, :] > frame[:, None], float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    y = rearrange(attn @ v, "b m l d -> b l (m d)") @ layer.out.weight.T + layer.out.bias
    expected = x + rearrange(y, "b (t h w) c -> b c t h w", t=T, h=H)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_chunked_attention_equals_one_call():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(37, 4, 6, 8, generator=g) for _ in range(3))
    whole = chunked_sdpa(q, k, v, is_causal=True, max_sequences=10**9)
    torch.testing.assert_close(chunked_sdpa(q, k, v, is_causal=True, max_sequences=8), whole)  # 2 sequences per call
    layer = build(TemporalAttention)
    small = copy.deepcopy(layer)
    small.max_sequences = 6
    xx = torch.randn(B, C, T, H, W)
    with torch.no_grad():
        torch.testing.assert_close(small(xx), layer(xx))


def video_unet(**kw):
    torch.manual_seed(0)
    args = {
        "in_channels": 1,
        "image_size": 8,
        "channels": 8,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "heads": 2,
        "groups": 4,
    }
    return VideoUNet(**(args | kw)).eval()


class Skip(torch.nn.Module):
    """A block layer that returns its input (every layer of a U-Net block takes (h, emb))."""

    def forward(self, h, emb=None):
        return h


def test_unet3d_on_images_equals_the_net_without_temporal_layers():
    net = video_unet(spatial_resolutions=(4,), temporal_resolutions=(8, 4))
    pruned = copy.deepcopy(net)
    for name, module in list(pruned.named_modules()):
        if isinstance(module, TemporalAttention):
            parent, _, child = name.rpartition(".")
            pruned.get_submodule(parent)[int(child)] = Skip()
    assert sum(isinstance(m, TemporalAttention) for m in net.modules()) == 7  # 2 down, 1 mid, 4 up
    t = torch.tensor([10, 500])
    with torch.no_grad():
        image = torch.randn(2, 1, 1, 8, 8)
        torch.testing.assert_close(net(image, t), pruned(image, t), atol=0, rtol=0)
        clip = torch.randn(2, 1, 3, 8, 8)
        assert not torch.allclose(net(clip, t), pruned(clip, t))  # with T > 1 the temporal layers act


def test_causal_video_unet_end_to_end():
    net = video_unet(spatial_resolutions=(4,), temporal_resolutions=(8, 4), causal=True)
    clip, t = torch.randn(1, 1, 5, 8, 8), torch.tensor([100])
    other = clip.clone()
    other[:, :, 3] = torch.randn(8, 8)
    with torch.no_grad():
        a, b = net(clip, t), net(other, t)
    torch.testing.assert_close(a[:, :, :3], b[:, :, :3])
    assert not torch.allclose(a[:, :, 3:], b[:, :, 3:])


def test_factorized_unet_tiny_is_the_reference_layout():
    net = VideoUNetTiny(functools.partial(FactorizedBlock, heads=4))
    assert (net.stem.in_channels, net.stem.out_channels, net.stem.kernel_size) == (1, 32, (3, 3))
    assert (net.down.in_channels, net.down.out_channels, net.down.stride) == (32, 64, (2, 2))
    assert isinstance(net.up, torch.nn.ConvTranspose2d) and (net.up.in_channels, net.up.out_channels) == (64, 32)
    assert (net.out.in_channels, net.out.kernel_size) == (64, (1, 1))
    blocks = [net.enc1, net.enc2, net.mid, net.dec1]
    assert [b.mlp[0].in_features for b in blocks] == [32, 64, 64, 64]
    assert all(b.mlp[0].out_features == 4 * b.mlp[0].in_features for b in blocks)
    assert all(
        [type(a) for a in b.attention] == [SpatialAttention, TemporalAttention] and b.attention[0].heads == 4
        for b in blocks
    )
    clip = torch.randn(2, 1, 8, 32, 32)
    assert net(clip, torch.tensor([1, 2])).shape == clip.shape
    full = VideoUNetTiny(functools.partial(FullBlock, heads=4))
    assert [type(a) for a in full.enc1.attention] == [FullAttention]


def trained_temporal_conv(**kw):
    """A TemporalConv with random (not zero) weights, as after training."""
    layer = TemporalConv(C, groups=4, **kw).eval()
    torch.nn.init.normal_(layer.conv.weight, generator=torch.Generator().manual_seed(2))
    return layer


def test_temporal_conv_starts_as_the_identity(x):
    with torch.no_grad():
        torch.testing.assert_close(TemporalConv(C, groups=4)(x), x, atol=0, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_temporal_conv_mixes_neighbouring_frames_of_one_pixel(x, causal):
    layer = trained_temporal_conv(kernel_size=3, causal=causal)
    layer.norm = torch.nn.Identity()  # GroupNorm's statistics span the clip: without it, what the conv mixes shows
    k = 2
    moved = changed(layer, x, (0, slice(None), k, 1, 3))
    frames = [k, k + 1] if causal else [k - 1, k, k + 1]  # frame k reaches its neighbours; causal: only later ones
    assert moved[0, frames, 1, 3].all() and moved.sum() == len(frames)


def test_temporal_conv_is_the_identity_on_images():
    image = torch.randn(2, C, 1, H, W)
    with torch.no_grad():
        torch.testing.assert_close(trained_temporal_conv()(image), image, atol=0, rtol=0)


def test_bad_heads_name_the_width():
    with pytest.raises(ValueError, match="not divisible by heads=3"):
        TemporalAttention(8, heads=3)
