from vdiff.metrics.classes import ClassAccuracy
from vdiff.metrics.directions import DirectionAccuracy, estimate_directions
from vdiff.metrics.fid import ClassifierFID, classify, label_distribution, load_classifier
from vdiff.metrics.fid_inception import InceptionFID
from vdiff.metrics.gen_ppl import GenerativePerplexity
from vdiff.metrics.patterns import PatternTrace, PatternValidity
from vdiff.metrics.text import BitsPerToken, MaskedAccuracy, SampleEntropy, unigram_entropy
from vdiff.metrics.video import FrameFID, MotionSmoothness, TemporalConsistency

__all__ = [
    "BitsPerToken",
    "ClassAccuracy",
    "ClassifierFID",
    "DirectionAccuracy",
    "FrameFID",
    "GenerativePerplexity",
    "InceptionFID",
    "MaskedAccuracy",
    "MotionSmoothness",
    "PatternTrace",
    "PatternValidity",
    "SampleEntropy",
    "TemporalConsistency",
    "classify",
    "estimate_directions",
    "label_distribution",
    "load_classifier",
    "unigram_entropy",
]
