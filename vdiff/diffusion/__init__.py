from vdiff.diffusion.gaussian import CosineSchedule, GaussianSchedule, LinearSchedule, cosine_betas, linear_betas
from vdiff.diffusion.masked import CosineMasking, LinearMasking, LogLinearMasking, MaskingSchedule

__all__ = ["GaussianSchedule", "LinearSchedule", "CosineSchedule", "linear_betas", "cosine_betas",
           "MaskingSchedule", "LinearMasking", "LogLinearMasking", "CosineMasking"]
