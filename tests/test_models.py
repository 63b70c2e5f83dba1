"""Denoiser networks: shapes, the reference-size U-Net's layout, class conditioning, bad widths."""

import pytest
import torch

from vdiff.models import DigitClassifier, UNet, UNetTiny


def test_unet_shapes_and_attention_placement():
    net = UNet(channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(14,), heads=2)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0, 999])
    assert net(x, t).shape == x.shape
    attn = [m for m in net.modules() if type(m).__name__ == "SelfAttention2d"]
    assert len(attn) == 1 + 1 + 2  # one down block at 14x14, the middle, two up blocks at 14x14


def test_unet_tiny_matches_reference_layout():
    net = UNetTiny()
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(1, 32, 3), (32, 64, 3), (64, 64, 3), (128, 32, 3), (64, 32, 3), (32, 1, 1)]
    assert all(m.num_groups == 8 for m in net.modules() if isinstance(m, torch.nn.GroupNorm))
    assert not any("Attention" in type(m).__name__ for m in net.modules())
    assert net(torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3])).shape == (3, 1, 28, 28)


def test_class_conditioning_and_null_label():
    torch.manual_seed(0)
    net = UNetTiny(num_classes=10).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 5])
    a = net(x, t, torch.tensor([1, 1]))
    b = net(x, t, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        net(x, t, torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        UNetTiny()(x, t, torch.tensor([1, 1]))


def test_groupnorm_divisibility_is_checked():
    with pytest.raises(ValueError, match="not divisible by groups=8"):
        UNet(channels=30)


def test_classifier_features():
    net = DigitClassifier(feature_dim=64)
    x = torch.randn(4, 1, 28, 28)
    assert net.features(x).shape == (4, 64)
    assert net(x).shape == (4, 10)
