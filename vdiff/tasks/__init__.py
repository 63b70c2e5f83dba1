from vdiff.tasks.classifier import Classifier
from vdiff.tasks.diffusion import GaussianDiffusion

__all__ = ["GaussianDiffusion", "Classifier"]
