from vdiff.samplers.base import GaussianSampler
from vdiff.samplers.ddim import DDIM
from vdiff.samplers.ddpm import DDPM
from vdiff.samplers.unmask import Unmask

__all__ = ["DDIM", "DDPM", "GaussianSampler", "Unmask"]
