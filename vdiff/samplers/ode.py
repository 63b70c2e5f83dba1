"""Euler and Heun on the probability-flow ODE of any Gaussian path.

Both integrate dy/dtau = (y - x0(y, tau)) / tau in the path's ODE variables (`path.ode_frame`): y = x / c,
  tables, edm  c = alpha, tau = sigma / alpha   (Karras et al. 2022, eq. 4 with the scaled x / alpha:
                                                 dy/dtau = eps; diffusers' Euler / HeunDiscreteScheduler);
  flow         c = 1, tau = t                   (dx/dt = (x - x0) / t = eps - x0 = u, the rectified-flow
                                                 ODE; diffusers' FlowMatchEulerDiscreteScheduler).
An Euler step is y' = y + (tau' - tau) d, d = (y - x0) / tau, i.e. x' = alpha' x0 + sigma' eps: on every
path it is DDIM's deterministic step (Song et al. 2021, eq. 12 with eta = 0), the first-order solver.
"""

import math

import torch

from vdiff.samplers.continuous import ContinuousSampler


def euler(path, x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor):
    """(y, the slope d, y' after an Euler step to t_next, c' at t_next): the pieces Heun reuses."""
    c, tau = (float(v) for v in path.ode_frame(t))
    c_next, tau_next = (float(v) for v in path.ode_frame(t_next))
    y = x / c
    d = (y - x0) / tau
    return y, d, y + (tau_next - tau) * d, c_next


class Euler(ContinuousSampler):
    """Euler's method on the grid (Karras et al. 2022, Algorithm 1 without the correction): `steps` calls."""

    name = "euler"

    def step(self, net, path, x, t, t_next, cond, generator):
        x0, _ = self.denoise(net, path, x, t, cond)
        _, _, y_next, c_next = euler(path, x, x0, t, t_next)
        return c_next * y_next


class Heun(ContinuousSampler):
    """EDM's Heun sampler (Karras et al. 2022, Algorithm 2; Algorithm 1 at s_churn = 0): an Euler step,
    then the trapezoidal correction with the slope at the new point, except into sigma = 0 (2N - 1 calls).

    Stochastic churn (`s_churn` > 0): where s_tmin <= s = sigma / alpha <= s_tmax, the noise level is first
    raised to s_hat = s (1 + gamma), gamma = min(s_churn / N, sqrt(2) - 1), by adding
    sqrt(s_hat^2 - s^2) s_noise z to x / alpha (lines 4-6); s_tmax null is no upper limit."""

    name = "heun"
    nfe_per_step = 2

    def __init__(
        self,
        steps: int = 18,
        grid: str = "auto",
        rho: float = 7.0,
        shift: float = 3.0,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float | None = None,
        s_noise: float = 1.0,
        guidance_scale: float = 1.0,
        clip_x0: bool = True,
    ):
        super().__init__(steps=steps, grid=grid, rho=rho, shift=shift, guidance_scale=guidance_scale, clip_x0=clip_x0)
        if s_churn < 0:
            raise ValueError(f"sampler.s_churn={s_churn} must be at least 0")
        if not s_noise > 0:
            raise ValueError(f"sampler.s_noise={s_noise} must be positive")
        self.s_churn = s_churn
        self.s_tmin = s_tmin
        self.s_tmax = math.inf if s_tmax is None else s_tmax
        self.s_noise = s_noise

    def churn(self, path, x, t, generator):
        """(x, t) after raising the noise level (lines 4-6 of Algorithm 2); unchanged without churn."""
        s = float(path.ve_sigma(t))
        if self.s_churn == 0 or not (math.isfinite(s) and self.s_tmin <= s <= self.s_tmax):
            return x, t
        gamma = min(self.s_churn / self.steps, math.sqrt(2) - 1)
        t_hat = path.time_of(torch.tensor(s * (1 + gamma), dtype=torch.float64)).cpu()
        s_hat = float(path.ve_sigma(t_hat))  # the tables clamp at T - 1: the level actually reached
        alpha, alpha_hat = float(path.alpha_sigma(t)[0]), float(path.alpha_sigma(t_hat)[0])
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_bar = x / alpha + math.sqrt(max(s_hat**2 - s**2, 0.0)) * self.s_noise * z
        return alpha_hat * x_bar, t_hat

    def step(self, net, path, x, t, t_next, cond, generator):
        x, t = self.churn(path, x, t, generator)
        x0, _ = self.denoise(net, path, x, t, cond)
        y, d, y_next, c_next = euler(path, x, x0, t, t_next)
        tau, tau_next = float(path.ode_frame(t)[1]), float(path.ode_frame(t_next)[1])
        if tau_next == 0:
            return c_next * y_next
        x0_next, _ = self.denoise(net, path, c_next * y_next, t_next, cond)
        d_next = (y_next - x0_next) / tau_next
        return c_next * (y + (tau_next - tau) * (d + d_next) / 2)

    def settings(self, num_steps: int | None = None) -> dict:
        return {**super().settings(num_steps), "s_churn": float(self.s_churn)}
