"""A small CNN classifier for 28x28 digits; its penultimate features are the FID feature space.

(B, 1, 28, 28) in [-1, 1] (the datamodule's training batches) -> features (B, feature_dim) -> logits
(B, num_classes). Samples are data-space images in [0, 1]; `from_unit` maps them to its input range.
"""

import torch
from torch import nn


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


def from_unit(images: torch.Tensor) -> torch.Tensor:
    """Data-space images in [0, 1] (samples, reference images) -> the classifier's input range [-1, 1]."""
    return images.float() * 2 - 1


class DigitClassifier(nn.Module):
    example_layout = "C H W"

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 128, dropout: float = 0.3
    ):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _conv(in_channels, w),
            _conv(w, w),
            nn.MaxPool2d(2),  # 14x14
            _conv(w, 2 * w),
            _conv(2 * w, 2 * w),
            nn.MaxPool2d(2),  # 7x7
            _conv(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
