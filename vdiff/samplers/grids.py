"""Time grids for the continuous samplers: `steps` + 1 descending path times, the last the clean end.

uniform  evenly spaced in the path's time, from t_max to t_clean. On the tables (t_clean = -1) this
         is diffusers' `trailing` spacing, round(T - i T / N) - 1 (Lin et al. 2024, table 2), so the
         net sees the integer indices it was trained on; on flow, 1 - i / N.
shifted  the uniform grid in normalised time u in [0, 1], moved by u -> shift u / (1 + (shift - 1) u)
         (Esser et al. 2024, eq. 23; diffusers' FlowMatchEulerDiscreteScheduler `shift`), so more
         steps are spent at high noise; rounded to indices on the tables.
karras   sigma_i = (s_max^(1/rho) + i / (N - 1) (s_min^(1/rho) - s_max^(1/rho)))^rho for i < N, then 0
         (Karras et al. 2022, eq. 5), in the noise level s = sigma / alpha between the path's
         t_max and t_min, mapped back to times (fractional indices on the tables, as diffusers does).
         It needs a finite s_max: the flow path starts at s = inf, so it is refused there.
auto     karras where the path's s_max is finite (the tables, edm), uniform where it is not (flow):
         EDM's Heun default that runs on every path.
"""

import math

import torch

GRIDS = ("uniform", "shifted", "karras", "auto")


def karras_sigmas(s_max: float, s_min: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: `steps` noise levels from s_max down to s_min (float64), without the final 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    return (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho


def resolve_grid(path, grid: str) -> str:
    """The grid `auto` stands for on `path`; any other grid unchanged."""
    if grid != "auto":
        return grid
    return "karras" if math.isfinite(float(path.ve_sigma(path.t_max))) else "uniform"


def check_grid(path, grid: str) -> None:
    """ValueError naming the keys when `grid` cannot be laid on `path`."""
    if resolve_grid(path, grid) == "karras" and not math.isfinite(float(path.ve_sigma(path.t_max))):
        raise ValueError(
            f"sampler.grid=karras spaces sigma / alpha between finite ends, and schedule={path.name} starts at "
            "sigma / alpha = inf: use sampler.grid=uniform or shifted"
        )


def time_grid(path, steps: int, grid: str = "uniform", rho: float = 7.0, shift: float = 3.0) -> torch.Tensor:
    """(steps + 1,) float64 descending path times ending at `path.t_clean`."""
    check_grid(path, grid)
    grid = resolve_grid(path, grid)
    if grid == "karras":
        s_max, s_min = float(path.ve_sigma(path.t_max)), float(path.ve_sigma(path.t_min))
        t = path.time_of(karras_sigmas(s_max, s_min, steps, rho)).cpu()
        return torch.cat([t, torch.tensor([path.t_clean], dtype=torch.float64)])
    u = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    if grid == "shifted":
        u = shift * u / (1 + (shift - 1) * u)
    t = path.t_clean + u * (path.t_max - path.t_clean)
    return t.round() if path.integer_times else t
