from vdiff.tasks.autoencoder import Autoencoder
from vdiff.tasks.autoregressive import Autoregressive
from vdiff.tasks.block_diffusion import BlockDiffusion
from vdiff.tasks.classifier import Classifier
from vdiff.tasks.diffusion import GaussianDiffusion
from vdiff.tasks.latent import LatentDiffusion
from vdiff.tasks.masked import MaskedDiffusion

__all__ = [
    "Autoencoder",
    "Autoregressive",
    "BlockDiffusion",
    "Classifier",
    "GaussianDiffusion",
    "LatentDiffusion",
    "MaskedDiffusion",
]
