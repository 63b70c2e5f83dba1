from vdiff.diffusion.gaussian import CosineSchedule, GaussianSchedule, LinearSchedule, cosine_betas, linear_betas

__all__ = ["GaussianSchedule", "LinearSchedule", "CosineSchedule", "linear_betas", "cosine_betas"]
