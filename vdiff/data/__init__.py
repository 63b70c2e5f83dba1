from vdiff.data.cifar10 import CIFAR10DataModule
from vdiff.data.image_folder import ImageFolderDataModule
from vdiff.data.mnist import MNISTDataModule
from vdiff.data.patterns import PatternsDataModule
from vdiff.data.text import CharTextDataModule
from vdiff.data.text_file import TextFileDataModule
from vdiff.data.video import BouncingBlobsDataModule, MovingMNISTDataModule
from vdiff.data.video_folder import VideoFolderDataModule
from vdiff.data.video_tracks import VideoDataModule

__all__ = [
    "BouncingBlobsDataModule",
    "CIFAR10DataModule",
    "CharTextDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "MovingMNISTDataModule",
    "PatternsDataModule",
    "TextFileDataModule",
    "VideoDataModule",
    "VideoFolderDataModule",
]
