from vdiff.callbacks.checkpoint import Checkpoint
from vdiff.callbacks.ema import EMA, ema_weights
from vdiff.callbacks.fid import SampleFID
from vdiff.callbacks.nonfinite import NonFiniteGuard
from vdiff.callbacks.samples import SampleGrid
from vdiff.callbacks.signals import StopOnSignal
from vdiff.callbacks.text import TextSamples
from vdiff.callbacks.video import VideoSamples

__all__ = ["Checkpoint", "EMA", "ema_weights", "NonFiniteGuard", "SampleFID", "SampleGrid", "StopOnSignal", "TextSamples", "VideoSamples"]
