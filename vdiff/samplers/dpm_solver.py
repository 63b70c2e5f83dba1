"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): multistep, data prediction, in
lambda = log(alpha / sigma). From t to t' with h = lambda' - lambda and the model's x0 = D_i:

    ODE  x' = (sigma' / sigma) x - alpha' (exp(-h) - 1) D                                   (eq. 10 / Alg. 2)
    SDE  x' = (sigma' / sigma) exp(-h) x + alpha' (1 - exp(-2h)) D + sigma' sqrt(1 - exp(-2h)) z
         (SDE-DPM-Solver++(2M), Lu et al. 2022, appendix; diffusers' `sde-dpmsolver++`)

with D = x0 at the first step and into sigma' = 0 (first order, as diffusers' final_sigmas_type="zero"),
else the second-order D = (1 + 1 / (2r)) x0 - 1 / (2r) x0_prev, r = h_prev / h. It runs on any path: at the
flow path's t = 1 (alpha = 0, lambda = -inf) the first step is x' = sigma' x + alpha' x0 and the next
one's correction vanishes (r = inf).
"""

import math

import torch

from vdiff.samplers.continuous import ContinuousSampler


class DPMSolverPP2M(ContinuousSampler):
    name = "dpmpp_2m"
    sde = False

    def begin(self) -> None:
        self._previous = None  # (x0, h) of the last step

    def step(self, net, path, x, t, t_next, cond, generator):
        x0, _ = self.denoise(net, path, x, t, cond)
        alpha, sigma = path.alpha_sigma(t)
        alpha_next, sigma_next = path.alpha_sigma(t_next)
        h = float((alpha_next / sigma_next).log() - (alpha / sigma).log())
        d = x0
        if self._previous is not None and float(sigma_next) > 0:
            x0_prev, h_prev = self._previous
            k = 1 / (2 * (h_prev / h))
            d = (1 + k) * x0 - k * x0_prev
        self._previous = (x0, h)
        ratio, alpha_next, sigma_next = float(sigma_next / sigma), float(alpha_next), float(sigma_next)
        if not self.sde:
            return ratio * x - alpha_next * math.expm1(-h) * d
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        decay = math.exp(-2 * h)
        return ratio * math.exp(-h) * x + alpha_next * (1 - decay) * d + sigma_next * math.sqrt(1 - decay) * z


class DPMSolverPP2MSDE(DPMSolverPP2M):
    """The stochastic variant: each step draws fresh noise (`generator`)."""

    name = "dpmpp_2m_sde"
    sde = True
