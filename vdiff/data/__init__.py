from vdiff.data.mnist import MNISTDataModule
from vdiff.data.patterns import PatternsDataModule
from vdiff.data.text import CharTextDataModule
from vdiff.data.video import BouncingBlobsDataModule, MovingMNISTDataModule, VideoDataModule

__all__ = [
    "BouncingBlobsDataModule",
    "CharTextDataModule",
    "MNISTDataModule",
    "MovingMNISTDataModule",
    "PatternsDataModule",
    "VideoDataModule",
]
