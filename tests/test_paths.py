"""Gaussian paths: closed forms, the tables' bit-exactness, EDM's preconditioning, the training losses."""

import math

import pytest
import torch

from vdiff.diffusion import CosineSchedule, EDMSchedule, FlowSchedule, LinearSchedule, cosine_betas, linear_betas
from vdiff.models import UNetTiny
from vdiff.samplers import DDIM, DDPM, Euler, Heun
from vdiff.tasks.diffusion import GaussianDiffusion, check_sampler


def test_flow_and_edm_alpha_sigma_closed_forms():
    t = torch.tensor([0.0, 0.25, 0.9, 1.0], dtype=torch.float64)
    a, s = FlowSchedule().alpha_sigma(t)
    assert torch.equal(a, 1 - t) and torch.equal(s, t)
    assert torch.allclose(FlowSchedule().time_of(t / (1 - t)), t)  # s = t / (1 - t), inf at t = 1
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    a, s = EDMSchedule().alpha_sigma(sigma)
    assert torch.equal(a, torch.ones_like(sigma)) and torch.equal(s, sigma)


@pytest.mark.parametrize(
    "schedule,betas", [(LinearSchedule(1000), linear_betas(1000)), (CosineSchedule(1000), cosine_betas(1000))]
)
def test_tables_between_indices_interpolate_log_sigma_and_invert(schedule, betas):
    ab = torch.cumprod(1 - betas, 0)  # the float64 closed form
    a, s = schedule.alpha_sigma(torch.tensor([0.0, 10.0, 999.0], dtype=torch.float64))
    torch.testing.assert_close(a**2, ab[[0, 10, 999]], rtol=1e-12, atol=0)
    torch.testing.assert_close(a**2 + s**2, torch.ones(3, dtype=torch.float64))
    # diffusers' _sigma_to_t: log(sigma / alpha) linear between entries
    log_s = 0.5 * ((1 - ab) / ab).log()
    mid = schedule.ve_sigma(torch.tensor(500.25, dtype=torch.float64))
    torch.testing.assert_close(mid.log(), 0.75 * log_s[500] + 0.25 * log_s[501], rtol=1e-5, atol=0)
    t = torch.tensor([0.0, 3.5, 500.25, 999.0], dtype=torch.float64)
    torch.testing.assert_close(schedule.time_of(schedule.ve_sigma(t)), t)
    a, s = schedule.alpha_sigma(torch.tensor(-1.0))  # the clean end
    assert (a.item(), s.item()) == (1.0, 0.0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_tables_are_bit_exact_with_the_formulas_they_had(prediction):
    """Integer t goes through the float32 table exactly as before the path abstraction existed."""
    s = LinearSchedule(1000, prediction=prediction)
    g = torch.Generator().manual_seed(0)
    x0, eps, out = (torch.randn(6, 1, 4, 4, generator=g) for _ in range(3))
    t = torch.randint(0, 1000, (6,), generator=g)
    ab = s.alpha_bar[t].reshape(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    assert torch.equal(s.q_sample(x0, t, eps), x_t)
    a, b = ab.sqrt(), (1 - ab).sqrt()
    old = {
        "eps": ((x_t - b * out) / a, out),
        "x0": (out, (x_t - a * out) / b),
        "v": (a * x_t - b * out, b * x_t + a * out),
    }
    for new, expected in zip(s.to_x0_eps(x_t, out, t), old[prediction]):
        assert torch.equal(new, expected)
    target = {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]
    assert torch.equal(s.target(x0, eps, t), target)
    assert torch.equal(s.eps_from_x0(x_t, x0, t), (x_t - ab.sqrt() * x0) / (1 - ab).sqrt())
    assert s.net_time(t) is t and s.net_input(x_t, t) is x_t and s.loss_weight(t) is None


def task(schedule, sampler=None):
    torch.manual_seed(0)
    return GaussianDiffusion(net=UNetTiny(), schedule=schedule, sampler=sampler or Euler(2), optimizer=None)


def test_table_loss_draws_and_computes_what_it_did():
    """L_simple with t ~ U{0..T-1} drawn first, then eps, from the same generator (Ho et al. Algorithm 1)."""
    m = task(LinearSchedule(1000), DDIM(5))
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    g = torch.Generator().manual_seed(7)
    t = torch.randint(0, 1000, (4,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = m.schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
    out = m.net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t, None)
    expected = (out - eps).pow(2).flatten(1).mean(1).mean()
    assert torch.equal(m.loss({"x": x0}, torch.Generator().manual_seed(7)), expected)


@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_flow_loss_is_the_rectified_flow_objective(time_sampling):
    """Liu et al. 2022 eq. 1: E ||v(x_t, t) - (eps - x0)||^2 with x_t = (1 - t) x0 + t eps; the net sees 1000 t."""
    m = task(FlowSchedule(time_sampling=time_sampling, logit_mean=0.5, logit_std=0.8, shift=2.0))
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    g = torch.Generator().manual_seed(3)
    u = (
        torch.rand(4, generator=g)
        if time_sampling == "uniform"
        else torch.sigmoid(0.5 + 0.8 * torch.randn(4, generator=g))
    )
    t = 2 * u / (1 + u)  # shift 2 (Esser et al. eq. 23)
    eps = torch.randn(x0.shape, generator=g)
    tt = t.view(-1, 1, 1, 1)
    v = m.net((1 - tt) * x0 + tt * eps, 1000 * t, None)
    expected = (v - (eps - x0)).pow(2).flatten(1).mean(1).mean()
    torch.testing.assert_close(m.loss({"x": x0}, torch.Generator().manual_seed(3)), expected, rtol=1e-6, atol=0)


def test_flow_logit_normal_and_shift_laws():
    g = torch.Generator().manual_seed(0)
    t = FlowSchedule(logit_mean=-0.5, logit_std=1.5).sample_t(200_000, generator=g)
    logit = (t / (1 - t)).log()
    assert logit.mean().item() == pytest.approx(-0.5, abs=0.02) and logit.std().item() == pytest.approx(1.5, abs=0.02)
    median = FlowSchedule(time_sampling="uniform", shift=3.0).sample_t(200_000, generator=g).median().item()
    assert median == pytest.approx(3 * 0.5 / (1 + 2 * 0.5), abs=0.01)


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_edm_preconditioning_identities(sigma_data):
    """Karras et al. Table 1 / appendix B.6: unit-variance input and target, c_skip + c_out^2 / sd^2 = 1, lambda c_out^2 = 1."""
    p = EDMSchedule(sigma_data=sigma_data)
    sigma = torch.tensor([0.002, 0.1, sigma_data, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = p.preconditioning(sigma)
    torch.testing.assert_close(c_in**2 * (sigma**2 + sigma_data**2), torch.ones_like(sigma))
    torch.testing.assert_close(c_skip + c_out**2 / sigma_data**2, torch.ones_like(sigma))
    torch.testing.assert_close((1 - c_skip) ** 2 * sigma_data**2 + c_skip**2 * sigma**2, c_out**2)  # Var(target) = 1
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    torch.testing.assert_close(p.loss_weight(sigma), torch.ones_like(sigma))
    torch.testing.assert_close(p.net_time(sigma), (250 * sigma.log()).float())
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    x = p.q_sample(x0, sigma, eps)
    torch.testing.assert_close(x, x0 + sigma[:, None] * eps)
    x0_back, eps_back = p.to_x0_eps(x, p.target(x0, eps, sigma), sigma)  # D(x; sigma) of the ideal F
    torch.testing.assert_close(x0_back, x0)
    torch.testing.assert_close(eps_back, eps)


def test_edm_loss_is_eq_8_and_sigmas_are_lognormal():
    """Karras et al. eq. 8: lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2, D = c_skip x + c_out F(c_in x; c_noise)."""
    p = EDMSchedule(sigma_data=0.5)
    m = task(p)
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    g = torch.Generator().manual_seed(5)
    sigma = (-1.2 + 1.2 * torch.randn(4, generator=g)).exp()
    eps = torch.randn(x0.shape, generator=g)
    s = sigma.view(-1, 1, 1, 1)
    x = x0 + s * eps
    c_skip, c_out, c_in = 0.25 / (s**2 + 0.25), s * 0.5 / (s**2 + 0.25).sqrt(), 1 / (s**2 + 0.25).sqrt()
    d = c_skip * x + c_out * m.net(c_in * x, 1000 * sigma.log() / 4, None)
    lam = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    expected = (lam * (d - x0).pow(2).flatten(1).mean(1)).mean()
    torch.testing.assert_close(m.loss({"x": x0}, torch.Generator().manual_seed(5)), expected, rtol=1e-4, atol=0)
    log_sigma = p.sample_t(200_000, generator=g).log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.02) and log_sigma.std().item() == pytest.approx(
        1.2, abs=0.02
    )
    assert m.prior(3, (1, 2, 2), torch.Generator().manual_seed(0)).std().item() > 20  # N(0, 80^2)


def test_bad_values_name_their_key():
    with pytest.raises(ValueError, match=r"^schedule.time_sampling='beta' is not one of uniform, logit_normal$"):
        FlowSchedule(time_sampling="beta")
    with pytest.raises(ValueError, match=r"^schedule.shift=0 must be positive$"):
        FlowSchedule(shift=0)
    with pytest.raises(ValueError, match=r"^schedule.sigma_data=-1 must be positive$"):
        EDMSchedule(sigma_data=-1)
    with pytest.raises(ValueError, match=r"^sampler.steps=0 must be at least 1$"):
        Heun(steps=0)
    with pytest.raises(ValueError, match=r"^sampler=ddpm walks the timestep table .* schedule=edm does not have"):
        check_sampler(DDPM(), EDMSchedule())
    with pytest.raises(ValueError, match=r"^sampler.grid=karras .* schedule=flow"):
        check_sampler(Euler(4, grid="karras"), FlowSchedule())
    with pytest.raises(ValueError, match=r"^task.min_snr_gamma=5.0 .* schedule=flow"):
        GaussianDiffusion(net=UNetTiny(), schedule=FlowSchedule(), sampler=Euler(2), optimizer=None, min_snr_gamma=5.0)
    assert math.isinf(float(FlowSchedule().ve_sigma(1.0)))
