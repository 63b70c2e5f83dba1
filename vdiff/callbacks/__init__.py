from vdiff.callbacks.checkpoint import Checkpoint
from vdiff.callbacks.ema import EMA, ema_weights
from vdiff.callbacks.fid import SampleFID
from vdiff.callbacks.nonfinite import NonFiniteGuard
from vdiff.callbacks.reconstructions import Reconstructions
from vdiff.callbacks.samples import Samples
from vdiff.callbacks.signals import StopOnSignal

__all__ = [
    "EMA",
    "Checkpoint",
    "NonFiniteGuard",
    "Reconstructions",
    "SampleFID",
    "Samples",
    "StopOnSignal",
    "ema_weights",
]
