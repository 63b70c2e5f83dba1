"""Gaussian forward process q(x_t | x_0) and its posterior, one formula per method.

Shapes: `x` is any `(B, ...)` tensor (images `(B, C, H, W)`, videos `(B, C, T, H, W)`); `t` is `(B,)`
integer timesteps in `[0, T)`. All tables are computed in float64 and stored as float32 buffers, so
they travel with the module (device, checkpoint) and no global state is involved.

Notation follows Ho et al. 2020 (DDPM): beta_t, alpha_t = 1 - beta_t, alpha_bar_t = prod alpha_s.
Prediction targets: `eps` (Ho et al.), `x0`, and `v = sqrt(ab) eps - sqrt(1 - ab) x0` (Salimans & Ho 2022).
"""

import math

import torch
from torch import nn

PREDICTIONS = ("eps", "x0", "v")


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020: betas evenly spaced from beta_start to beta_end (both ends included)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2) / f(0)."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


class GaussianSchedule(nn.Module):
    """Forward process for a given beta table, and conversions between x_t, x0, eps and v."""

    def __init__(self, betas: torch.Tensor, prediction: str = "eps"):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} is not one of {', '.join(PREDICTIONS)}")
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D table with every value in (0, 1)")
        self.prediction = prediction
        self.num_steps = len(betas)
        alpha_bar = torch.cumprod(1 - betas, 0)
        alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        tables = {
            "betas": betas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            # Posterior q(x_{t-1} | x_t, x_0) (Ho et al. eq. 6-7).
            "posterior_variance": betas * (1 - alpha_bar_prev) / (1 - alpha_bar),
            "posterior_coef_x0": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "posterior_coef_xt": (1 - alpha_bar_prev) * (1 - betas).sqrt() / (1 - alpha_bar),
        }
        for name, value in tables.items():
            self.register_buffer(name, value.float(), persistent=False)

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table[t] shaped to broadcast against x: (B,) -> (B, 1, ..., 1)."""
        return table[t].reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps."""
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output under this schedule's `prediction`."""
        if self.prediction == "eps":
            return eps
        if self.prediction == "x0":
            return x0
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0

    def to_x0_eps(self, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor):
        """Recover (x0, eps) from the network output `out` at (x_t, t)."""
        ab = self._at(self.alpha_bar, t, x_t)
        a = ab.sqrt()
        s = (1 - ab).sqrt()
        if self.prediction == "eps":
            return (x_t - s * out) / a, out
        if self.prediction == "x0":
            return out, (x_t - a * out) / s
        x0 = a * x_t - s * out
        return x0, s * x_t + a * out

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t), (B,)."""
        ab = self.alpha_bar[t]
        return ab / (1 - ab)

    def min_snr_weight(self, t: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-gamma loss weight (Hang et al. 2023) for this schedule's prediction target, (B,):
        the x0-space weight min(SNR, gamma) divided by what the target's MSE already carries
        (SNR for eps, SNR + 1 for v, 1 for x0)."""
        snr = self.snr(t)
        carried = {"eps": snr, "v": snr + 1, "x0": torch.ones_like(snr)}[self.prediction]
        return snr.clamp(max=gamma) / carried

    def eps_from_x0(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)."""
        ab = self._at(self.alpha_bar, t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """mu_tilde(x_t, x0) of q(x_{t-1} | x_t, x0)."""
        return self._at(self.posterior_coef_x0, t, x_t) * x0 + self._at(self.posterior_coef_xt, t, x_t) * x_t


class LinearSchedule(GaussianSchedule):
    def __init__(
        self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, prediction: str = "eps"
    ):
        super().__init__(linear_betas(num_steps, beta_start, beta_end), prediction)


class CosineSchedule(GaussianSchedule):
    def __init__(self, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999, prediction: str = "eps"):
        super().__init__(cosine_betas(num_steps, s, max_beta), prediction)
