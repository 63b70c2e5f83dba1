from vdiff.metrics.fid import ClassifierFID, label_distribution, load_classifier

__all__ = ["ClassifierFID", "label_distribution", "load_classifier"]
