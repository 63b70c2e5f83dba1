from vdiff.models.attention import FactorizedBlock, FullAttention, FullBlock, SpatialAttention, TemporalAttention
from vdiff.models.classifier import DigitClassifier
from vdiff.models.dit import DiT
from vdiff.models.transformer import Transformer
from vdiff.models.unet import UNet
from vdiff.models.unet_tiny import UNetTiny
from vdiff.models.video_unet import VideoUNet
from vdiff.models.video_unet_tiny import VideoUNetTiny
from vdiff.models.video_vae import DiagonalGaussian, VideoVAE

__all__ = [
    "DiT",
    "DiagonalGaussian",
    "DigitClassifier",
    "FactorizedBlock",
    "FullAttention",
    "FullBlock",
    "SpatialAttention",
    "TemporalAttention",
    "Transformer",
    "UNet",
    "UNetTiny",
    "VideoUNet",
    "VideoUNetTiny",
    "VideoVAE",
]
