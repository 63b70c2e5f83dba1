"""Absorbing-state (masked) discrete diffusion: masking schedules, the forward process and the ELBO.

Shapes: tokens `x` are `(B, L)` long with id `mask_id` for [MASK]; `t` is `(B,)` float in (0, 1];
network logits are `(B, L, V)`.

A schedule gives m(t) = P(a token is [MASK] at time t), increasing from m(0) = 0 to m(1) ~ 1; every
token is masked independently (the absorbing state of Austin et al. 2021). With alpha_t = 1 - m(t)
and the network's probabilities for the clean token at masked positions (carry-over of unmasked
tokens, zero mass on [MASK]: the SUBS parameterisation), the continuous-time NELBO is
(Sahoo et al. 2024, MDLM eq. 10; Shi et al. 2024, MD4)

    NELBO = E_{t ~ U(0,1)} [ w(t) * sum_{l masked} -log p_theta(x0_l | x_t) ],   w(t) = m'(t) / m(t)

so the linear schedule m = t has weight 1/t. Dividing by the sequence length L gives nats per token;
dividing that by ln 2 gives bits per character for character-level data.
"""

import math

import torch

LOSSES = ("elbo", "masked_ce")


class MaskingSchedule:
    """m(t) and the ELBO weight w(t) = m'(t) / m(t); one formula per method."""

    num_steps = None  # continuous time: no grid of timesteps bounds the sampler

    def mask_prob(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LinearMasking(MaskingSchedule):
    """m(t) = t: alpha_t = 1 - t; w(t) = 1 / t."""

    def mask_prob(self, t):
        return t

    def weight(self, t):
        return 1 / t


class LogLinearMasking(MaskingSchedule):
    """MDLM's log-linear noise: total noise sigma(t) = -log(1 - (1 - eps) t), so m(t) = 1 - exp(-sigma)
    = (1 - eps) t and w(t) = sigma'(t) / expm1(sigma(t)) = 1 / t. At t = 1 a fraction eps of tokens
    stays visible in training; sampling starts all-[MASK] regardless. So the NELBO under it never pays
    for that fraction and may fall up to eps x the marginal entropy below the true entropy: a model that
    knows nothing (uniform over the V - 1 symbols) scores (1 - eps) log2(V - 1) bits per token, not
    log2(V - 1) (metrics.bits_per_char reports both)."""

    def __init__(self, eps: float = 1e-3):
        if not 0 <= eps < 1:
            raise ValueError(f"schedule.eps={eps} must lie in [0, 1)")
        self.eps = eps

    def sigma(self, t):
        return -torch.log1p(-(1 - self.eps) * t)

    def mask_prob(self, t):
        return -torch.expm1(-self.sigma(t))

    def weight(self, t):
        dsigma = (1 - self.eps) / (1 - (1 - self.eps) * t)
        return dsigma / torch.expm1(self.sigma(t))


class CosineMasking(MaskingSchedule):
    """m(t) = 1 - cos(pi t / 2) (MaskGIT's cosine, as a masking probability); w(t) = m'(t) / m(t)."""

    def mask_prob(self, t):
        return 1 - torch.cos(math.pi / 2 * t)

    def weight(self, t):
        return (math.pi / 2) * torch.sin(math.pi / 2 * t) / self.mask_prob(t)


def sample_times(n: int, t_min: float = 1e-3, antithetic: bool = True, generator=None, device=None) -> torch.Tensor:
    """(n,) times in [t_min, 1]. Antithetic: the low-discrepancy sampler of VDM (Kingma et al. 2021),
    one uniform offset u shared by the batch and t_i = (u + i / n) mod 1, so a batch covers [0, 1)
    evenly and the ELBO estimate has lower variance (MDLM's code stratifies instead with one uniform
    per stratum, t_i = (i + u_i) / n: the same marginal law and coverage); otherwise i.i.d. uniform."""
    if antithetic:
        u = (
            torch.rand(1, generator=generator, device=device, dtype=torch.float64)
            + torch.arange(n, device=device, dtype=torch.float64) / n
        ) % 1
    else:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    return (t_min + (1 - t_min) * u).float()


def mask_tokens(x0: torch.Tensor, t: torch.Tensor, schedule: MaskingSchedule, mask_id: int, generator=None):
    """q(x_t | x_0): each token becomes [MASK] independently with probability m(t). Returns (x_t, masked)."""
    p = schedule.mask_prob(t.double())[:, None]
    masked = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64) < p
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked


def clean_log_probs(logits: torch.Tensor, mask_id: int, dtype=torch.float32) -> torch.Tensor:
    """log p_theta(x0 | x_t) over the real tokens: the [MASK] logit is excluded (SUBS)."""
    logits = logits.to(dtype).clone()
    logits[..., mask_id] = -math.inf
    return logits.log_softmax(-1)


def token_nll(logits: torch.Tensor, x0: torch.Tensor, mask_id: int, dtype=torch.float32) -> torch.Tensor:
    """(B, L) -log p_theta(x0_l | x_t) in `dtype`."""
    return -clean_log_probs(logits, mask_id, dtype).gather(-1, x0[..., None])[..., 0]


def nelbo_per_token(
    nll: torch.Tensor, masked: torch.Tensor, t: torch.Tensor, schedule: MaskingSchedule
) -> torch.Tensor:
    """(B,) single-sample NELBO estimate of each sequence, in nats per token: w(t) sum_masked nll / L."""
    w = schedule.weight(t.to(nll.dtype))
    return w * (nll * masked).sum(-1) / nll.shape[-1]


def masked_ce(nll: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over masked positions (no ELBO weight): the simple objective."""
    return (nll * masked).sum() / masked.sum().clamp(min=1)
