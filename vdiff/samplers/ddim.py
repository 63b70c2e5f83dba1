"""DDIM (Song et al. 2021, eq. 12) on any subsequence of timesteps, with stochasticity eta.

x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z,
sigma  = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev).
The previous timestep is the next entry of the timestep list (alpha_bar = 1 after the last one).
With eta = 1 over all T steps this is exactly ancestral DDPM.
"""

import numpy as np

from vdiff.samplers.base import GaussianSampler

SPACINGS = ("leading", "trailing", "linspace")


class DDIM(GaussianSampler):
    name = "ddim"

    def __init__(
        self,
        steps: int = 50,
        eta: float = 0.0,
        spacing: str = "leading",
        guidance_scale: float = 1.0,
        clip_x0: bool = True,
    ):
        super().__init__(guidance_scale, clip_x0)
        if spacing not in SPACINGS:
            raise ValueError(f"sampler.spacing={spacing!r} is not one of {', '.join(SPACINGS)}")
        if steps < 1:
            raise ValueError(f"sampler.steps={steps} must be at least 1")
        self.steps = steps
        self.eta = eta
        self.spacing = spacing

    def check(self, num_steps: int | None) -> None:
        super().check(num_steps)
        if self.steps > num_steps:
            raise ValueError(
                f"sampler.steps={self.steps} exceeds the schedule's {num_steps} timesteps (schedule.num_steps)"
            )

    def with_max_steps(self, max_steps: int, num_steps: int) -> "DDIM":
        if self.steps <= max_steps:
            return self
        return DDIM(
            steps=max_steps,
            eta=self.eta,
            spacing=self.spacing,
            guidance_scale=self.guidance_scale,
            clip_x0=self.clip_x0,
        )

    def settings(self, num_steps: int) -> dict:
        return {**super().settings(num_steps), "eta": float(self.eta)}

    def timesteps(self, num_steps: int) -> list[int]:
        """Descending timesteps, spaced as in diffusers (Lin et al. 2024, table 2)."""
        n = self.steps
        T = num_steps
        if self.spacing == "leading":
            ts = np.arange(n) * (T // n)
        elif self.spacing == "trailing":
            ts = np.round(np.arange(T, 0, -T / n)).astype(int)[::-1] - 1
        else:
            ts = np.linspace(0, T - 1, n).round().astype(int)
        return sorted({int(t) for t in ts}, reverse=True)

    def step(self, schedule, x, x0, eps, t, t_prev, noise):
        ab = schedule.alpha_bar[t]
        ab_prev = schedule.alpha_bar[t_prev] if t_prev >= 0 else ab.new_tensor(1.0)
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        return x_prev + sigma * noise if self.eta > 0 else x_prev
