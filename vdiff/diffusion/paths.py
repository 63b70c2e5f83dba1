"""The Gaussian path x_t = alpha(t) x0 + sigma(t) eps: the one abstraction every Gaussian schedule is.

A path owns, in one place, everything that depends on how noise is added:
  - `alpha_sigma(t)`: the coefficients at a time t (float64), and `time_of(s)` its inverse in the
    noise-to-signal ratio s = sigma / alpha (Karras et al. 2022's sigma for scaled paths, eq. 4);
  - the training law of t (`sample_t`), the regression target (`target`) and the loss weight;
  - what the network sees (`net_input`, `net_time`) and how its output converts back to
    (x0, eps) (`to_x0_eps`): samplers never convert predictions themselves;
  - the time range samplers walk: from `t_max` (the prior, N(0, `prior_std`^2)) down to `t_clean`
    (alpha = 1, sigma = 0), with `t_min` the smallest noisy time a sigma-spaced grid may visit.

The network's time input, per path (defined by each path's `net_time`, documented here once):
    tables (`linear`, `cosine`)  the timestep index in [0, T-1], as it always was (a float index
                                 between table entries on Karras grids, as diffusers does);
    `flow`                       1000 t, t in [0, 1] (diffusers' FlowMatch timesteps);
    `edm`                        1000 c_noise(sigma) = 250 ln(sigma) (Karras et al. Table 1, scaled
                                 like the tables' indices for the sinusoidal time embedding).

Predictions `convert` understands: `eps` (Ho et al. 2020), `x0`, `v` = alpha eps - sigma x0 (Salimans &
Ho 2022, for alpha^2 + sigma^2 = 1), and `velocity` = eps - x0 (rectified flow, for alpha + sigma = 1).
"""

import torch
from torch import nn


def convert(prediction: str, x_t: torch.Tensor, out: torch.Tensor, a: torch.Tensor, s: torch.Tensor):
    """(x0, eps) from the network output `out` at x_t = a x0 + s eps, for a target kind `prediction`."""
    if prediction == "eps":
        return (x_t - s * out) / a, out
    if prediction == "x0":
        return out, (x_t - a * out) / s
    if prediction == "v":
        x0 = a * x_t - s * out
        return x0, s * x_t + a * out
    if prediction == "velocity":
        return x_t - s * out, x_t + a * out
    raise ValueError(f"prediction={prediction!r} has no conversion to (x0, eps)")


def broadcast(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B,) or scalar tensor shaped to broadcast against x, in x's dtype and device."""
    value = torch.as_tensor(value, device=x.device)
    if value.ndim == 1:
        value = value.reshape(-1, *([1] * (x.ndim - 1)))
    return value.to(x.dtype)


class GaussianPath(nn.Module):
    """x_t = alpha(t) x0 + sigma(t) eps on continuous t. Subclasses define `alpha_sigma` and `time_of`;
    the rest has a default that holds for any path."""

    name = "gaussian"  # the schedule's config option, for error messages
    prediction = "eps"
    num_steps = None  # continuous time: no table of timesteps bounds the sampler
    t_max = 1.0
    t_min = 0.0
    t_clean = 0.0
    prior_std = 1.0
    integer_times = False  # grids are rounded to the integer times the net was trained on
    min_snr = False  # True where `min_snr_weight` exists (the tables); other paths carry `loss_weight`

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha(t), sigma(t)) in float64, shaped like t."""
        raise NotImplementedError

    def time_of(self, s: torch.Tensor) -> torch.Tensor:
        """The time t at which sigma(t) / alpha(t) = s (s = 0: `t_clean`)."""
        raise NotImplementedError

    def ve_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """s = sigma / alpha, the noise level of x_t / alpha (inf where alpha = 0)."""
        a, s = self.alpha_sigma(torch.as_tensor(t, dtype=torch.float64))
        return s / a

    def ode_frame(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c, tau): the variables y = x / c and tau in which Euler and Heun integrate the probability-flow
        ODE dy/dtau = (y - x0) / tau. By default Karras et al.'s (c = alpha, tau = sigma / alpha, eq. 4)."""
        a, s = self.alpha_sigma(t)
        return a, s / a

    def coefficients(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) at (B,) times t, shaped to broadcast against x."""
        a, s = self.alpha_sigma(t)
        return broadcast(a, x), broadcast(s, x)

    def sample_t(self, n: int, generator=None, device=None) -> torch.Tensor:
        """(n,) training times."""
        raise NotImplementedError

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor | None:
        """(B,) weight of each example's MSE on `target`, or None for the plain mean."""
        return None

    def min_snr_weight(self, t: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-gamma weights, defined on the tables only (`min_snr`): a task checks `min_snr` first."""
        raise NotImplementedError(f"schedule={self.name} has no Min-SNR-gamma weight")

    def net_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is given for x_t (EDM scales it by c_in)."""
        return x_t

    def net_time(self, t: torch.Tensor) -> torch.Tensor:
        """What the network is given for t (see the module docstring)."""
        return t

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = alpha(t) x0 + sigma(t) eps."""
        a, s = self.coefficients(t, x0)
        return a * x0 + s * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output under this path's `prediction`."""
        if self.prediction == "eps":
            return eps
        if self.prediction == "x0":
            return x0
        if self.prediction == "velocity":
            return eps - x0
        a, s = self.coefficients(t, x0)
        return a * eps - s * x0

    def to_x0_eps(self, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor):
        """Recover (x0, eps) from the network output `out` at (x_t, t)."""
        a, s = self.coefficients(t, x_t)
        return convert(self.prediction, x_t, out, a, s)

    def eps_from_x0(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - alpha x0) / sigma."""
        a, s = self.coefficients(t, x_t)
        return (x_t - a * x0) / s
