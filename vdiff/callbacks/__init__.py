from vdiff.callbacks.ema import EMA, ema_weights
from vdiff.callbacks.fid import SampleFID
from vdiff.callbacks.samples import Samples

__all__ = ["EMA", "ema_weights", "SampleFID", "Samples"]
