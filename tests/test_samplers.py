"""DDPM / DDIM samplers: timestep lists, the eta=1 <-> DDPM identity, guidance, determinism."""

import pytest
import torch

from vdiff.diffusion import CosineSchedule, LinearSchedule
from vdiff.models import UNetTiny
from vdiff.samplers import DDIM, DDPM


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNetTiny(num_classes=10).eval()


def test_ddim_timesteps_match_diffusers_spacings():
    assert DDIM(10, spacing="leading").timesteps(1000) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert DDIM(10, spacing="trailing").timesteps(1000) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert DDIM(10, spacing="linspace").timesteps(1000) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert DDIM(1000).timesteps(1000) == list(range(999, -1, -1))
    assert DDIM(3, spacing="trailing").timesteps(10) == [9, 6, 2]  # round(10, 6.67, 3.33) - 1


def test_ddim_eta1_variance_equals_ddpm_posterior_variance():
    s = CosineSchedule(200)
    ts = DDIM(200, eta=1.0).timesteps(200)
    for t, t_prev in zip(ts, ts[1:] + [-1]):
        ab = s.alpha_bar[t]
        ab_prev = s.alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        sigma2 = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
        assert sigma2.item() == pytest.approx(s.posterior_variance[t].item(), rel=1e-4, abs=1e-9)


def test_ddim_eta1_all_steps_reproduces_ddpm(net):
    s = LinearSchedule(30)
    noise = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = DDPM()(net, s, noise, generator=torch.Generator().manual_seed(1))
    b = DDIM(30, eta=1.0)(net, s, noise, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampler", [DDPM(), DDIM(10, eta=0.5)])
def test_sampling_is_deterministic_under_a_seed(net, sampler):
    s = LinearSchedule(20)
    noise = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = sampler(net, s, noise, generator=torch.Generator().manual_seed(5))
    b = sampler(net, s, noise, generator=torch.Generator().manual_seed(5))
    c = sampler(net, s, noise, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.min() >= -1.0001 and a.max() <= 1.0001


def test_guidance_scale_convention(net):
    s = LinearSchedule(20)
    x = torch.randn(3, 1, 28, 28)
    t = torch.full((3,), 10)
    cond = torch.tensor([1, 2, 3])
    unc = DDIM(5, clip_x0=False).predict(net, s, x, t, None)[1]
    con = DDIM(5, clip_x0=False).predict(net, s, x, t, cond)[1]
    w3 = DDIM(5, guidance_scale=3.0, clip_x0=False).predict(net, s, x, t, cond)[1]
    w0 = DDIM(5, guidance_scale=0.0, clip_x0=False).predict(net, s, x, t, cond)[1]
    torch.testing.assert_close(w0, unc, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w3, unc + 3 * (con - unc), atol=1e-4, rtol=1e-4)


def test_guidance_one_is_the_conditional_net_and_guidance_asks_for_the_null_condition(net):
    s = LinearSchedule(20)
    noise = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cond = torch.tensor([4, 5, 6])
    seen = []

    def conditional_only(x, t, c):  # the conditional net, whatever condition it is asked for
        seen.append(c)
        return net(x, t, cond)

    one = DDIM(5, eta=0.5, guidance_scale=1.0)(net, s, noise, cond=cond, generator=torch.Generator().manual_seed(1))
    two = DDIM(5, eta=0.5, guidance_scale=2.0)(
        conditional_only, s, noise, cond=cond, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(one, two, atol=1e-5, rtol=1e-5)
    assert len(seen) == 10 and sum(c is None for c in seen) == 5


def test_step_count_above_T_is_refused():
    with pytest.raises(ValueError, match="sampler.steps=60 exceeds"):
        DDIM(60).check(50)
    with pytest.raises(ValueError, match="spacing"):
        DDIM(10, spacing="uniform")


class GaussianOracle:
    """The exact eps-predictor for data ~ N(m, s^2) per coordinate: with x_t = a x0 + b eps,
    E[eps | x_t] = b (x_t - a m) / (a^2 s^2 + b^2)."""

    def __init__(self, schedule, m: float, s: float):
        self.schedule, self.m, self.s = schedule, m, s

    def __call__(self, x, t, cond=None):
        ab = self.schedule.alpha_bar[t].to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.m) / (ab * self.s**2 + 1 - ab)


M, S = 0.3, 0.2  # data ~ N(M, S^2): inside [-1, 1], so clip_x0 never acts


@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(1000)], ids=["linear", "cosine"])
@pytest.mark.parametrize("sampler", [DDPM(), DDIM(1000)], ids=["ddpm", "ddim1000"])
def test_samplers_with_the_exact_denoiser_recover_the_data_distribution(schedule, sampler):
    """Over all T steps, ancestral DDPM and deterministic DDIM driven by the analytic eps of a
    Gaussian data law return that law."""
    noise = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sampler(GaussianOracle(schedule, M, S), schedule, noise, generator=torch.Generator().manual_seed(1))
    assert x.mean().item() == pytest.approx(M, abs=0.01)
    assert x.std().item() == pytest.approx(S, rel=0.04)


@pytest.mark.parametrize(
    "sampler",
    [DDIM(50), DDIM(20, spacing="trailing"), DDIM(7, spacing="linspace")],
    ids=["ddim50", "ddim20-trailing", "ddim7-linspace"],
)
def test_ddim_on_few_steps_is_euler_on_the_probability_flow_ode(sampler):
    """Song et al. 2021, eq. 14: with xbar = x / sqrt(ab) and sigma = sqrt((1 - ab) / ab), a DDIM
    step is xbar <- xbar + (sigma_prev - sigma) eps. For the Gaussian oracle eps is affine in xbar,
    so the whole chain is the closed-form product below."""
    schedule = CosineSchedule(1000)
    noise = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0], dtype=torch.float64).view(-1, 1, 1, 1)
    x = sampler(GaussianOracle(schedule, M, S), schedule, noise)
    sig = lambda t: (
        ((1 - schedule.alpha_bar[t]) / schedule.alpha_bar[t]).sqrt()
        if t >= 0
        else torch.tensor(0.0, dtype=torch.float64)
    )
    ts = sampler.timesteps(1000)
    gain = 1.0
    for t, t_prev in zip(ts, ts[1:] + [-1]):
        gain = gain * (1 + (sig(t_prev) - sig(t)) * sig(t) / (S**2 + sig(t) ** 2))
    expected = M + (noise / schedule.alpha_bar[ts[0]].sqrt() - M) * gain
    # float32 schedule buffers: starting at cosine's alpha_bar[999] = 2.4e-9 leaves ~1e-4 of rounding
    torch.testing.assert_close(x, expected.to(x.dtype), rtol=1e-3, atol=1e-3)
