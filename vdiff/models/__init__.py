from vdiff.models.classifier import DigitClassifier
from vdiff.models.unet import UNet
from vdiff.models.transformer import Transformer
from vdiff.models.unet_tiny import UNetTiny

__all__ = ["UNet", "UNetTiny", "DigitClassifier", "Transformer"]
