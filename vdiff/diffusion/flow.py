"""Rectified flow / the conditional optimal-transport path (Liu et al. 2022; Lipman et al. 2023, eq. 22
with sigma_min = 0; Esser et al. 2024, SD3):

    x_t = (1 - t) x0 + t eps,  t in [0, 1],  alpha = 1 - t, sigma = t,

trained to predict the velocity u = dx_t/dt = eps - x0 (Liu et al. eq. 1), loss ||u_theta - (eps - x0)||^2
with weight 1. Training times (`time_sampling`):
    uniform       t ~ U(0, 1);
    logit_normal  t = sigmoid(n), n ~ N(logit_mean, logit_std^2) (Esser et al. 2024, eq. 19; their best,
                  rf/lognorm(0.00, 1.00), is the default);
then the timestep `shift` (Esser et al. eq. 23; Open-Sora): t <- shift t / (1 + (shift - 1) t), which moves
training toward noisier times for larger inputs (shift = 1: none). The network sees 1000 t.
The probability-flow ODE is dx/dt = u itself, so Euler and Heun integrate it in (x, t) (`ode_frame`).
"""

import torch

from vdiff.diffusion.paths import GaussianPath

TIME_SAMPLINGS = ("uniform", "logit_normal")


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Esser et al. 2024, eq. 23: t -> shift t / (1 + (shift - 1) t); fixes 0 and 1."""
    return shift * t / (1 + (shift - 1) * t)


class FlowSchedule(GaussianPath):
    name = "flow"
    prediction = "velocity"
    t_max = 1.0
    t_min = 0.0
    t_clean = 0.0

    def __init__(
        self,
        time_sampling: str = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        shift: float = 1.0,
    ):
        super().__init__()
        if time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"schedule.time_sampling={time_sampling!r} is not one of {', '.join(TIME_SAMPLINGS)}")
        if not logit_std > 0:
            raise ValueError(f"schedule.logit_std={logit_std} must be positive")
        if not shift > 0:
            raise ValueError(f"schedule.shift={shift} must be positive")
        self.time_sampling = time_sampling
        self.logit_mean = logit_mean
        self.logit_std = logit_std
        self.shift = shift

    def alpha_sigma(self, t: torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
        return 1 - t, t

    def coefficients(self, t: torch.Tensor, x: torch.Tensor):
        """(1 - t, t) in x's dtype: training computes them in float32 on the device."""
        t = t.reshape(-1, *([1] * (x.ndim - 1))) if t.ndim == 1 else t
        t = t.to(device=x.device, dtype=x.dtype)
        return 1 - t, t

    def time_of(self, s: torch.Tensor) -> torch.Tensor:
        """t = s / (1 + s) for s = t / (1 - t); s = inf gives 1."""
        s = torch.as_tensor(s, dtype=torch.float64)
        return torch.where(torch.isinf(s), 1.0, s / (1 + s))

    def ode_frame(self, t: torch.Tensor):
        """(1, t): dx/dt = (x - x0) / t = eps - x0 is the rectified-flow ODE."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.ones_like(t), t

    def sample_t(self, n: int, generator=None, device=None) -> torch.Tensor:
        if self.time_sampling == "uniform":
            t = torch.rand(n, device=device, generator=generator)
        else:
            z = torch.randn(n, device=device, generator=generator)
            t = torch.sigmoid(self.logit_mean + self.logit_std * z)
        return shift_time(t, self.shift) if self.shift != 1 else t

    def net_time(self, t: torch.Tensor) -> torch.Tensor:
        return 1000 * t
