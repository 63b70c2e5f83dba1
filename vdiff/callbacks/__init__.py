from vdiff.callbacks.ema import EMA, ema_weights
from vdiff.callbacks.fid import SampleFID
from vdiff.callbacks.samples import SampleGrid
from vdiff.callbacks.text import TextSamples
from vdiff.callbacks.video import VideoSamples

__all__ = ["EMA", "ema_weights", "SampleFID", "SampleGrid", "TextSamples", "VideoSamples"]
