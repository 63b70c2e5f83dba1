"""Gaussian forward process q(x_t | x_0) and its posterior, one formula per method.

Shapes: `x` is any `(B, ...)` tensor (images `(B, C, H, W)`, videos `(B, C, T, H, W)`); `t` is `(B,)`
integer timesteps in `[0, T)`. All tables are computed in float64 and stored as float32 buffers, so
they travel with the module (device, checkpoint) and no global state is involved.

Notation follows Ho et al. 2020 (DDPM): beta_t, alpha_t = 1 - beta_t, alpha_bar_t = prod alpha_s.
Prediction targets: `eps` (Ho et al.), `x0`, and `v = sqrt(ab) eps - sqrt(1 - ab) x0` (Salimans & Ho 2022).

The table is a Gaussian path (vdiff/diffusion/paths.py) with alpha = sqrt(ab), sigma = sqrt(1 - ab):
integer (long) t reads the table exactly as it always did, so DDPM / DDIM and training are unchanged to
the bit; a float t in [0, T-1] lies between entries, log(sigma / alpha) interpolated linearly in t (as
diffusers' `_sigma_to_t` does for Karras grids), and t = -1 is the clean end (alpha = 1, sigma = 0).
"""

import math

import torch

from vdiff.diffusion.paths import GaussianPath

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


class GaussianSchedule(GaussianPath):
    """Forward process for a given beta table, and conversions between x_t, x0, eps and v."""

    name = "linear / cosine"
    t_min = 0.0
    t_clean = -1.0  # one step past index 0: alpha_bar = 1, as after DDIM's last step
    integer_times = True
    min_snr = True  # task.min_snr_gamma weights the loss by `min_snr_weight`

    def __init__(self, betas: torch.Tensor, prediction: str = "eps"):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} is not one of {', '.join(PREDICTIONS)}")
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D table with every value in (0, 1)")
        self.prediction = prediction
        self.num_steps = len(betas)
        self.t_max = float(len(betas) - 1)
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
        # float64 log(sigma / alpha) per index, for times between the entries (Karras grids)
        self.register_buffer("log_ve_sigma", 0.5 * ((1 - alpha_bar) / alpha_bar).log(), persistent=False)

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table[t] shaped to broadcast against x: (B,) -> (B, 1, ..., 1)."""
        return table[t].reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    def coefficients(self, t: torch.Tensor, x: torch.Tensor):
        """(sqrt(ab_t), sqrt(1 - ab_t)) from the float32 table for integer t (q_sample, target, to_x0_eps
        and eps_from_x0 then compute what they always did); the float64 path between entries otherwise."""
        if t.is_floating_point():
            return super().coefficients(t, x)
        ab = self._at(self.alpha_bar, t, x)
        return ab.sqrt(), (1 - ab).sqrt()

    def alpha_sigma(self, t: torch.Tensor):
        """Float64 (alpha, sigma) at float indices t in [0, T-1] (log(sigma / alpha) linear between
        entries), and (1, 0) at t < 0, the clean end."""
        t = torch.as_tensor(t, dtype=torch.float64, device=self.log_ve_sigma.device)
        tc = t.clamp(0, self.num_steps - 1)
        lo = tc.floor().long().clamp(max=max(self.num_steps - 2, 0))
        hi = (lo + 1).clamp(max=self.num_steps - 1)
        w = tc - lo
        s = ((1 - w) * self.log_ve_sigma[lo] + w * self.log_ve_sigma[hi]).exp()
        alpha = (1 + s * s).rsqrt()
        clean = t < 0
        return torch.where(clean, 1.0, alpha), torch.where(clean, 0.0, s * alpha)

    def time_of(self, s: torch.Tensor) -> torch.Tensor:
        """The float index whose sigma / alpha is s (clamped to [0, T-1]); -1 for s = 0."""
        s = torch.as_tensor(s, dtype=torch.float64, device=self.log_ve_sigma.device)
        table = self.log_ve_sigma
        log_s = s.clamp_min(1e-300).log().clamp(table[0], table[-1])
        hi = torch.searchsorted(table, log_s.reshape(-1)).reshape(log_s.shape).clamp(1, max(len(table) - 1, 1))
        lo = hi - 1
        w = ((log_s - table[lo]) / (table[hi] - table[lo])).nan_to_num(0.0) if len(table) > 1 else 0.0 * log_s
        return torch.where(s > 0, lo + w, torch.full_like(s, self.t_clean))

    def sample_t(self, n: int, generator=None, device=None) -> torch.Tensor:
        """t ~ U{0, ..., T-1} (Ho et al. 2020, Algorithm 1)."""
        return torch.randint(0, self.num_steps, (n,), device=device, generator=generator)

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
