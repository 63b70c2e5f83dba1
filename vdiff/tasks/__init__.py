from vdiff.tasks.autoencoder import Autoencoder
from vdiff.tasks.classifier import Classifier
from vdiff.tasks.diffusion import GaussianDiffusion
from vdiff.tasks.latent import LatentDiffusion
from vdiff.tasks.masked import MaskedDiffusion

__all__ = ["Autoencoder", "Classifier", "GaussianDiffusion", "LatentDiffusion", "MaskedDiffusion"]
