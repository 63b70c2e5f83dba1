"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2) with the posterior mean and variance."""

from vdiff.samplers.base import GaussianSampler
from vdiff.samplers.ddim import DDIM


class DDPM(GaussianSampler):
    """Visits every timestep T-1, ..., 0; x_{t-1} = mu_tilde(x_t, x0) + sqrt(beta_tilde_t) z (no noise at t=0)."""

    name = "ddpm"

    def timesteps(self, num_steps: int) -> list[int]:
        return list(range(num_steps - 1, -1, -1))

    def with_max_steps(self, max_steps: int, num_steps: int) -> GaussianSampler:
        """Ancestral sampling on fewer timesteps than the schedule's is DDIM with eta = 1 on a subsequence
        (the posterior variance between the visited timesteps)."""
        if num_steps <= max_steps:
            return self
        return DDIM(
            steps=max_steps, eta=1.0, spacing="trailing", guidance_scale=self.guidance_scale, clip_x0=self.clip_x0
        )

    def step(self, schedule, x, x0, eps, t, t_prev, noise):
        mean = schedule.posterior_coef_x0[t] * x0 + schedule.posterior_coef_xt[t] * x
        if t == 0:
            return mean
        return mean + schedule.posterior_variance[t].sqrt() * noise
