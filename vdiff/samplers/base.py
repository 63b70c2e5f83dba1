"""The reverse-process loop shared by the Gaussian samplers, with classifier-free guidance.

A sampler walks a descending list of timesteps; `step` is its one formula. Every sampler (Unmask
too) is called as `sampler(net, schedule, x, cond=..., generator=..., progress=...)`. The network is
called as `net(x, t, cond)` where `cond` is a `(B,)` long tensor of labels, and `net(x, t, None)` is
the unconditional model (the null condition of the network's Conditioner).

Guidance convention (Ho & Salimans 2022, written as in Imagen/diffusers):
    out = out_uncond + w * (out_cond - out_uncond)
so `guidance_scale` w = 1 is the plain conditional model (one network call), w = 0 the unconditional
one, and w > 1 extrapolates away from the unconditional prediction.
"""

import torch
from tqdm.auto import tqdm

from vdiff.utils import stop


def guided(net, x: torch.Tensor, t: torch.Tensor, cond, w: float) -> torch.Tensor:
    """The network output with classifier-free guidance: out_uncond + w (out_cond - out_uncond); one call
    when w = 1 or there is no condition. Every Gaussian sampler calls the network through this."""
    if cond is None or w == 1.0:
        return net(x, t, cond)
    out_cond = net(x, t, cond)
    out_uncond = net(x, t, None)
    return out_uncond + w * (out_cond - out_uncond)


class GaussianSampler:
    """A sampler over the timestep table of a discrete schedule (`linear`, `cosine`); the samplers of
    vdiff/samplers/ode.py and dpm_solver.py run on any Gaussian path."""

    name = "ddpm / ddim"  # the sampler's config option, for error messages

    def __init__(self, guidance_scale: float = 1.0, clip_x0: bool = True):
        self.guidance_scale = guidance_scale
        self.clip_x0 = clip_x0

    def timesteps(self, num_steps: int) -> list[int]:
        raise NotImplementedError

    def check_path(self, path) -> None:
        """ValueError naming the keys when `path` has no timestep table to walk (a continuous path)."""
        if path.num_steps is None:
            raise ValueError(
                f"sampler={self.name} walks the timestep table of schedule=linear or cosine, which "
                f"schedule={path.name} does not have: use sampler=euler, heun, dpmpp_2m or dpmpp_2m_sde"
            )

    def check(self, num_steps: int | None) -> None:
        """Raise ValueError naming the key when this sampler cannot run on a T-step schedule (None: a
        continuous path, which has no table to walk)."""
        if num_steps is None:
            raise ValueError(
                f"sampler={self.name} walks the timestep table of schedule=linear or cosine, and this schedule "
                "is continuous (no schedule.num_steps): use sampler=euler, heun, dpmpp_2m or dpmpp_2m_sde"
            )

    def settings(self, num_steps: int) -> dict:
        """The reverse steps actually taken on a `num_steps` schedule and the settings metrics.json records
        (`nfe`: network calls per sample, one a step; guidance doubles each)."""
        steps = len(self.timesteps(num_steps))
        return {"steps": steps, "eta": None, "guidance_scale": float(self.guidance_scale), "nfe": steps}

    def step(self, schedule, x, x0, eps, t: int, t_prev: int, noise):
        raise NotImplementedError

    def with_max_steps(self, max_steps: int, num_steps: int) -> "GaussianSampler":
        """This sampler, or the same kind taking at most `max_steps` reverse steps on a `num_steps` schedule."""
        raise NotImplementedError

    def predict(self, net, schedule, x, t: torch.Tensor, cond):
        """Network output with guidance applied, converted to (x0, eps)."""
        out = guided(net, x, t, cond, self.guidance_scale)
        x0, eps = schedule.to_x0_eps(x, out, t)
        if self.clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = schedule.eps_from_x0(x, x0, t)
        return x0, eps

    @torch.no_grad()
    def __call__(
        self, net, schedule, x: torch.Tensor, *, cond=None, generator=None, progress: bool = False
    ) -> torch.Tensor:
        """Run the reverse process from x_T = `x` and return x_0 (in the range the net was trained on);
        raises vdiff.utils.stop.Stopped at the next step once SIGTERM / SIGINT has arrived."""
        self.check(schedule.num_steps)
        ts = self.timesteps(schedule.num_steps)
        for i in tqdm(range(len(ts)), desc=type(self).__name__, disable=not progress, leave=False):
            stop.check()
            t = ts[i]
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x0, eps = self.predict(net, schedule, x, t=tt, cond=cond)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = self.step(schedule, x=x, x0=x0, eps=eps, t=t, t_prev=t_prev, noise=z)
        return x
