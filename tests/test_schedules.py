"""Noise schedules and the forward process against the published formulas."""

import math

import pytest
import torch

from vdiff.diffusion import CosineSchedule, GaussianSchedule, LinearSchedule


def test_linear_endpoints_and_alpha_bar():
    s = LinearSchedule(1000)
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    # Ho et al.: alpha_bar_T ~ 4.04e-5 for the linear schedule at T = 1000.
    expected = math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(1000))
    assert s.alpha_bar[-1].item() == pytest.approx(expected, rel=1e-4)
    assert expected == pytest.approx(4.04e-5, rel=0.01)


def _cosine_alpha_bar(t, T, s=0.008):
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    return f(t) / f(0)


@pytest.mark.parametrize("T", [1000, 4000, 50])
def test_cosine_matches_nichol_dhariwal(T):
    s = CosineSchedule(T)
    # alpha_bar after the first step, and a middle one, from eq. 17 directly.
    assert s.alpha_bar[0].item() == pytest.approx(_cosine_alpha_bar(1, T), rel=1e-5)
    assert s.alpha_bar[T // 2].item() == pytest.approx(_cosine_alpha_bar(T // 2 + 1, T), rel=1e-4)
    # f(T) = cos^2(pi/2) = 0, so the last beta is clipped to 0.999.
    assert s.betas[-1].item() == pytest.approx(0.999)
    assert s.betas.max().item() <= 0.999 + 1e-7


def test_cosine_first_beta_published_value():
    # improved-diffusion's cosine schedule at T=1000 starts at beta_0 = 1 - alpha_bar(1)/alpha_bar(0).
    assert CosineSchedule(1000).betas[0].item() == pytest.approx(1 - _cosine_alpha_bar(1, 1000), rel=1e-5)
    assert CosineSchedule(1000).betas[0].item() == pytest.approx(4.1e-5, rel=0.05)


def test_posterior_variance_formula():
    s = LinearSchedule(100)
    t = 37
    ab, ab_prev, beta = s.alpha_bar[t], s.alpha_bar[t - 1], s.betas[t]
    assert s.posterior_variance[t].item() == pytest.approx((beta * (1 - ab_prev) / (1 - ab)).item(), rel=1e-5)
    assert s.posterior_variance[0].item() == 0.0


@pytest.mark.parametrize("t", [0, 250, 999])
def test_forward_process_statistics(t):
    s = CosineSchedule(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000,), 0.7)
    tt = torch.full((x0.numel(),), t)
    xt = s.q_sample(x0, tt, torch.randn(x0.shape, generator=g))
    ab = s.alpha_bar[t].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=0.01)
    assert xt.var().item() == pytest.approx(1 - ab, abs=0.01 + 0.01 * (1 - ab))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_targets_invert(prediction):
    s = LinearSchedule(1000, prediction=prediction)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    xt = s.q_sample(x0, t, eps)
    x0_hat, eps_hat = s.to_x0_eps(xt, s.target(x0, eps, t), t)
    torch.testing.assert_close(x0_hat, x0, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(eps_hat, eps, atol=1e-3, rtol=1e-3)


def test_bad_schedule_values():
    with pytest.raises(ValueError, match="prediction"):
        LinearSchedule(10, prediction="score")
    with pytest.raises(ValueError, match="betas"):
        GaussianSchedule(torch.tensor([0.1, 1.5]))


@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_weight_gives_the_same_x0_space_loss_for_every_target(gamma):
    """Hang et al. 2023: the weighted loss is min(SNR_t, gamma) * ||x0_hat - x0||^2, whatever the net predicts."""
    torch.manual_seed(0)
    t = torch.tensor([0, 10, 300, 999])
    x0, eps, x0_hat = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    losses = {}
    for prediction in ("eps", "x0", "v"):
        s = LinearSchedule(1000, prediction=prediction)
        x_t = s.q_sample(x0, t, eps)
        eps_hat = s.eps_from_x0(x_t, x0_hat, t)
        ab = s.alpha_bar[t].reshape(-1, 1, 1, 1)
        out = {"eps": eps_hat, "x0": x0_hat, "v": ab.sqrt() * eps_hat - (1 - ab).sqrt() * x0_hat}[prediction]
        mse = (out - s.target(x0, eps, t)).pow(2).flatten(1).mean(1)
        losses[prediction] = mse * s.min_snr_weight(t, gamma)
    snr = LinearSchedule(1000).alpha_bar[t] / (1 - LinearSchedule(1000).alpha_bar[t])
    expected = snr.clamp(max=gamma) * (x0_hat - x0).pow(2).flatten(1).mean(1)
    for prediction, loss in losses.items():
        assert torch.allclose(loss, expected, rtol=1e-3, atol=1e-6), prediction
