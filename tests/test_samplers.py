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


def test_step_count_above_T_is_refused():
    with pytest.raises(ValueError, match="sampler.steps=60 exceeds"):
        DDIM(60).check(50)
    with pytest.raises(ValueError, match="spacing"):
        DDIM(10, spacing="uniform")
