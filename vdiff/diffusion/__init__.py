from vdiff.diffusion.gaussian import CosineSchedule, GaussianSchedule, LinearSchedule, cosine_betas, linear_betas
from vdiff.diffusion.masked import CosineMasking, LinearMasking, LogLinearMasking, MaskingSchedule

__all__ = [
    "CosineMasking",
    "CosineSchedule",
    "GaussianSchedule",
    "LinearMasking",
    "LinearSchedule",
    "LogLinearMasking",
    "MaskingSchedule",
    "cosine_betas",
    "linear_betas",
]
