"""EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models").

The path is sigma-parametrised: x = x0 + sigma eps (alpha = 1, t = sigma, eq. 1 with s(t) = 1). The
network F is preconditioned (eq. 7, Table 1):
    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)),
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4,       sd = `sigma_data`.
Training: ln sigma ~ N(P_mean, P_std^2) (`p_mean` -1.2, `p_std` 1.2) and the loss (eq. 8)
    lambda(sigma) ||D(x; sigma) - x0||^2,  lambda = (sigma^2 + sd^2) / (sigma sd)^2,
which is lambda c_out^2 ||F - (x0 - c_skip x) / c_out||^2 (eq. 8 rewritten): the network's target is
(x0 - c_skip x) / c_out and its weight lambda c_out^2 (= 1 up to rounding, as the paper chose it).
The network sees c_in x and 1000 c_noise (the tables' range of times, for the sinusoidal embedding).
Sampling starts from N(0, sigma_max^2) at t = sigma_max; Karras grids run sigma_max .. sigma_min, then 0.
"""

import torch

from vdiff.diffusion.paths import GaussianPath, broadcast


class EDMSchedule(GaussianPath):
    name = "edm"
    prediction = "edm"
    t_clean = 0.0

    def __init__(
        self,
        sigma_data: float = 0.5,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
    ):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"schedule.sigma_data={sigma_data} must be positive")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"schedule.sigma_min={sigma_min} and schedule.sigma_max={sigma_max} need 0 < min < max")
        if not p_std > 0:
            raise ValueError(f"schedule.p_std={p_std} must be positive")
        self.sigma_data = sigma_data
        self.t_min, self.t_max, self.prior_std = sigma_min, sigma_max, sigma_max
        self.p_mean = p_mean
        self.p_std = p_std

    def alpha_sigma(self, t: torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.ones_like(t), t

    def time_of(self, s: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(s, dtype=torch.float64)

    def preconditioning(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) at sigma (Table 1)."""
        sd2 = self.sigma_data**2
        norm = (sigma**2 + sd2).sqrt()
        return sd2 / (sigma**2 + sd2), sigma * self.sigma_data / norm, 1 / norm, sigma.log() / 4

    def sample_t(self, n: int, generator=None, device=None) -> torch.Tensor:
        """sigma = exp(P_mean + P_std n), n ~ N(0, 1)."""
        return (self.p_mean + self.p_std * torch.randn(n, device=device, generator=generator)).exp()

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) c_out(sigma)^2 (eq. 8 in the network's terms)."""
        sigma = t.double()
        c_out = self.preconditioning(sigma)[1]
        lam = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        return (lam * c_out**2).to(t.dtype)

    def net_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return broadcast(self.preconditioning(t.double())[2], x_t) * x_t

    def net_time(self, t: torch.Tensor) -> torch.Tensor:
        return (1000 * self.preconditioning(t.double())[3]).to(torch.float32)

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(x0 - c_skip x_t) / c_out, x_t = x0 + sigma eps."""
        c_skip, c_out = (broadcast(c, x0) for c in self.preconditioning(t.double())[:2])
        return (x0 - c_skip * self.q_sample(x0, t, eps)) / c_out

    def to_x0_eps(self, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor):
        """x0 = D = c_skip x_t + c_out F, eps = (x_t - x0) / sigma."""
        c_skip, c_out = (broadcast(c, x_t) for c in self.preconditioning(t.double())[:2])
        x0 = c_skip * x_t + c_out * out
        return x0, (x_t - x0) / broadcast(t, x_t)
