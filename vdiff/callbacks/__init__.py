from vdiff.callbacks.ema import EMA, ema_weights
from vdiff.callbacks.samples import SampleGrid, sample_images

__all__ = ["EMA", "ema_weights", "SampleGrid", "sample_images"]
