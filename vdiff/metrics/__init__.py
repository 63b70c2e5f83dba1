from vdiff.metrics.fid import ClassifierFID, label_distribution, load_classifier
from vdiff.metrics.text import BitsPerToken, MaskedAccuracy, PatternValidity, SampleEntropy, unigram_entropy
from vdiff.metrics.video import FrameFID, MotionSmoothness, TemporalConsistency

__all__ = ["ClassifierFID", "label_distribution", "load_classifier",
           "BitsPerToken", "MaskedAccuracy", "PatternValidity", "SampleEntropy", "unigram_entropy",
           "FrameFID", "MotionSmoothness", "TemporalConsistency"]
