"""The loop the samplers on continuous Gaussian paths share: a time grid, guided predictions, a step.

Every sampler here runs on any Gaussian path (vdiff/diffusion/paths.py: the tables, `flow`, `edm`) and is
called as the table samplers are, `sampler(net, schedule, x, cond=..., generator=..., progress=...)`.
A prediction is always `net(path.net_input(x, t), path.net_time(t), cond)` with classifier-free guidance
(vdiff.samplers.base.guided), converted by `path.to_x0_eps`: the samplers see (x0, eps) only, so what
the network predicts (eps, v, velocity, EDM's F) is the path's business alone. `clip_x0` clamps x0 to
[-1, 1] and recomputes eps from it (pixel data; latent tasks turn it off).
"""

import copy

import torch
from tqdm.auto import tqdm

from vdiff.samplers.base import guided
from vdiff.samplers.grids import GRIDS, check_grid, time_grid
from vdiff.utils import stop


class ContinuousSampler:
    name = "continuous"  # the config option, for error messages
    nfe_per_step = 1

    def __init__(
        self,
        steps: int = 20,
        grid: str = "uniform",
        rho: float = 7.0,
        shift: float = 3.0,
        guidance_scale: float = 1.0,
        clip_x0: bool = True,
    ):
        if steps < 1:
            raise ValueError(f"sampler.steps={steps} must be at least 1")
        if grid not in GRIDS:
            raise ValueError(f"sampler.grid={grid!r} is not one of {', '.join(GRIDS)}")
        if not rho > 0:
            raise ValueError(f"sampler.rho={rho} must be positive")
        if not shift > 0:
            raise ValueError(f"sampler.shift={shift} must be positive")
        self.steps = steps
        self.grid = grid
        self.rho = rho
        self.shift = shift
        self.guidance_scale = guidance_scale
        self.clip_x0 = clip_x0

    def check(self, num_steps: int | None) -> None:
        """On a table of T timesteps, at most T steps (a uniform grid would repeat indices)."""
        if num_steps is not None and self.steps > num_steps:
            raise ValueError(
                f"sampler.steps={self.steps} exceeds the schedule's {num_steps} timesteps (schedule.num_steps)"
            )

    def check_path(self, path) -> None:
        """ValueError naming the keys when this sampler cannot run on `path`."""
        check_grid(path, self.grid)

    def times(self, path) -> torch.Tensor:
        return time_grid(path, self.steps, self.grid, rho=self.rho, shift=self.shift)

    def settings(self, num_steps: int | None = None) -> dict:
        return {
            "steps": self.steps,
            "eta": None,
            "guidance_scale": float(self.guidance_scale),
            "grid": self.grid,
            "nfe": self.nfe_per_step * self.steps - (self.nfe_per_step - 1),
        }

    def with_max_steps(self, max_steps: int, num_steps: int | None = None) -> "ContinuousSampler":
        if self.steps <= max_steps:
            return self
        fewer = copy.copy(self)
        fewer.steps = max_steps
        return fewer

    def denoise(self, net, path, x: torch.Tensor, t: torch.Tensor, cond):
        """(x0, eps) predicted at x (B, ...) and a time t (0-dim float64), guidance applied."""
        tt = t.to(x.device).expand(x.shape[0])
        out = guided(net, path.net_input(x, tt), path.net_time(tt), cond, self.guidance_scale)
        x0, eps = path.to_x0_eps(x, out, tt)
        if self.clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = path.eps_from_x0(x, x0, tt)
        return x0, eps

    def begin(self) -> None:
        """Reset what a multistep method remembers between steps."""

    def step(self, net, path, x, t, t_next, cond, generator):
        raise NotImplementedError

    @torch.no_grad()
    def __call__(
        self, net, schedule, x: torch.Tensor, *, cond=None, generator=None, progress: bool = False, trace=None
    ) -> torch.Tensor:
        """Integrate from x at the grid's first time to the clean end; `trace`, a list, receives x after
        every step. Raises vdiff.utils.stop.Stopped at the next step once SIGTERM / SIGINT has arrived."""
        self.check(schedule.num_steps)
        self.check_path(schedule)
        ts = self.times(schedule)
        self.begin()
        for i in tqdm(range(self.steps), desc=type(self).__name__, disable=not progress, leave=False):
            stop.check()
            x = self.step(net, schedule, x, ts[i], ts[i + 1], cond, generator)
            if trace is not None:
                trace.append(x)
        return x
