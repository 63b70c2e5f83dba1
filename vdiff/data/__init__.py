from vdiff.data.mnist import MNISTDataModule
from vdiff.data.patterns import PatternsDataModule
from vdiff.data.text import CharTextDataModule

__all__ = ["MNISTDataModule", "PatternsDataModule", "CharTextDataModule"]
