from vdiff.callbacks.checkpoint import Checkpoint
from vdiff.callbacks.ema import EMA
from vdiff.callbacks.fid import SampleFID
from vdiff.callbacks.nonfinite import NonFiniteGuard
from vdiff.callbacks.progress import StepProgressBar
from vdiff.callbacks.reconstructions import Reconstructions
from vdiff.callbacks.samples import Samples
from vdiff.callbacks.signals import StopOnSignal
from vdiff.callbacks.steps import LearningRateMonitor, StepNumbering
from vdiff.utils.config import ema_weights

__all__ = [
    "EMA",
    "Checkpoint",
    "LearningRateMonitor",
    "NonFiniteGuard",
    "Reconstructions",
    "SampleFID",
    "Samples",
    "StepNumbering",
    "StepProgressBar",
    "StopOnSignal",
    "ema_weights",
]
