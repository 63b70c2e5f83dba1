from vdiff.samplers.ancestral import Ancestral
from vdiff.samplers.base import GaussianSampler
from vdiff.samplers.continuous import ContinuousSampler
from vdiff.samplers.ddim import DDIM
from vdiff.samplers.ddpm import DDPM
from vdiff.samplers.dpm_solver import DPMSolverPP2M, DPMSolverPP2MSDE
from vdiff.samplers.ode import Euler, Heun
from vdiff.samplers.remask import Remask
from vdiff.samplers.unmask import Unmask

__all__ = [
    "DDIM",
    "DDPM",
    "Ancestral",
    "ContinuousSampler",
    "DPMSolverPP2M",
    "DPMSolverPP2MSDE",
    "Euler",
    "GaussianSampler",
    "Heun",
    "Remask",
    "Unmask",
]
