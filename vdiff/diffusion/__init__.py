from vdiff.diffusion.edm import EDMSchedule
from vdiff.diffusion.flow import FlowSchedule
from vdiff.diffusion.gaussian import CosineSchedule, GaussianSchedule, LinearSchedule, cosine_betas, linear_betas
from vdiff.diffusion.masked import CosineMasking, LinearMasking, LogLinearMasking, MaskingSchedule
from vdiff.diffusion.paths import GaussianPath

__all__ = [
    "CosineMasking",
    "CosineSchedule",
    "EDMSchedule",
    "FlowSchedule",
    "GaussianPath",
    "GaussianSchedule",
    "LinearMasking",
    "LinearSchedule",
    "LogLinearMasking",
    "MaskingSchedule",
    "cosine_betas",
    "linear_betas",
]
