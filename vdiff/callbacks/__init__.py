from vdiff.callbacks.ema import EMA, ema_weights
from vdiff.callbacks.samples import SampleGrid

__all__ = ["EMA", "ema_weights", "SampleGrid"]
