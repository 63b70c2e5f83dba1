from vdiff.data.mnist import MNISTDataModule

__all__ = ["MNISTDataModule"]
