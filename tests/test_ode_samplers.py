"""The continuous samplers: convergence at their order on an exact score, guidance, grids, determinism."""

import math

import pytest
import torch

from vdiff.diffusion import EDMSchedule, FlowSchedule, LinearSchedule
from vdiff.models import UNetTiny
from vdiff.samplers import DPMSolverPP2M, DPMSolverPP2MSDE, Euler, Heun
from vdiff.samplers.grids import karras_sigmas

M, S = 0.3, 0.5  # data ~ N(M, S^2) per coordinate


def oracle(path):
    """The exact network of each path for Gaussian data: it reads t and x back from what the path gives it
    (net_time, net_input) and returns the path's target of E[x0 | x_t] (eps, the flow velocity, EDM's F)."""

    def net(x_in, t_in, cond=None):
        t_in = t_in.double().view(-1, *[1] * (x_in.ndim - 1))
        if isinstance(path, FlowSchedule):
            t = t_in / 1000
            a, s, x = 1 - t, t, x_in
        elif isinstance(path, EDMSchedule):
            t = (t_in / 250).exp()
            a, s, x = torch.ones_like(t), t, x_in * (t**2 + path.sigma_data**2).sqrt()
        else:
            (a, s), x = path.alpha_sigma(t_in), x_in
        x0 = M + a * S**2 * (x - a * M) / (a**2 * S**2 + s**2)
        eps = (x - a * x0) / s
        if isinstance(path, FlowSchedule):
            return eps - x0
        if isinstance(path, EDMSchedule):
            c_skip, c_out, _, _ = path.preconditioning(t)
            return (x0 - c_skip * x) / c_out
        return eps

    return net


def ode_solution(path, x_T, t_T):
    """For Gaussian data z = (x - alpha M) / sqrt(alpha^2 S^2 + sigma^2) is constant along the probability-flow ODE."""
    a, s = path.alpha_sigma(torch.tensor(t_T, dtype=torch.float64))
    return M + S * (x_T - a * M) / (a**2 * S**2 + s**2).sqrt()


CASES = [  # (path, grid, sampler class, order)
    *[(FlowSchedule(), "uniform", cls, order) for cls, order in [(Euler, 1), (Heun, 2)]],
    *[(EDMSchedule(), "karras", cls, order) for cls, order in [(Euler, 1), (Heun, 2), (DPMSolverPP2M, 2)]],
    *[(LinearSchedule(1000), "karras", cls, order) for cls, order in [(Euler, 1), (Heun, 2), (DPMSolverPP2M, 2)]],
]


@pytest.mark.parametrize(
    "path,grid,cls,order", CASES, ids=[f"{type(c[0]).__name__}-{c[1]}-{c[2].__name__}" for c in CASES]
)
def test_error_shrinks_with_steps_at_the_solver_order(path, grid, cls, order):
    x_T = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64).view(-1, 1, 1, 1) * path.prior_std
    errors = []
    for n in (16, 32, 64):
        sampler = cls(n, grid=grid, clip_x0=False)
        x0 = sampler(oracle(path), path, x_T)
        errors.append((x0 - ode_solution(path, x_T, float(sampler.times(path)[0]))).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    observed = math.log2(errors[0] / errors[2]) / 2  # per halving of the step
    assert observed > order - 0.2, errors


def test_dpmpp_2m_converges_on_the_flow_path_from_pure_noise():
    """At t = 1 (alpha = 0, lambda = -inf) the first step is x' = sigma' x + alpha' x0 and the second one's
    correction vanishes; on a uniform t grid the two end steps, infinite in lambda, are first order."""
    path = FlowSchedule()
    x_T = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64).view(-1, 1, 1, 1)
    errors = [
        (DPMSolverPP2M(n, clip_x0=False)(oracle(path), path, x_T) - ode_solution(path, x_T, 1.0)).abs().max()
        for n in (8, 32, 128)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3


def test_heun_churn_keeps_the_gaussian_law():
    """Algorithm 2 with churn is a stochastic sampler of the same law: the exact denoiser returns N(M, S^2)
    (at 128 steps; churn's added noise leaves a discretisation excess in the std that shrinks with steps)."""
    path = EDMSchedule()
    x_T = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    churn = Heun(128, s_churn=160, s_tmin=0.05, s_tmax=50, clip_x0=False)
    x = churn(oracle(path), path, x_T, generator=torch.Generator().manual_seed(1))
    assert x.mean().item() == pytest.approx(M, abs=0.01) and x.std().item() == pytest.approx(S, rel=0.03)
    plain = Heun(128, clip_x0=False)(oracle(path), path, x_T)
    assert not torch.allclose(x, plain)  # the churn did act


def test_dpmpp_2m_sde_samples_the_gaussian_law():
    path = LinearSchedule(1000)
    x_T = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = DPMSolverPP2MSDE(50, clip_x0=False)(oracle(path), path, x_T, generator=torch.Generator().manual_seed(1))
    assert x.mean().item() == pytest.approx(M, abs=0.01) and x.std().item() == pytest.approx(S, rel=0.03)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNetTiny(num_classes=10).eval()


SAMPLERS = [Euler(4), Heun(4, grid="uniform"), DPMSolverPP2M(4), DPMSolverPP2MSDE(4)]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=[s.name for s in SAMPLERS])
@pytest.mark.parametrize("path", [LinearSchedule(1000), FlowSchedule(), EDMSchedule()], ids=["linear", "flow", "edm"])
def test_guidance_one_is_one_call_and_guidance_asks_for_the_null_condition(net, sampler, path):
    noise = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * path.prior_std
    cond = torch.tensor([4, 5, 6])
    seen = []

    def conditional_only(x, t, c):  # the conditional net, whatever condition it is asked for
        seen.append(c)
        return net(x, t, cond)

    one = sampler(net, path, noise, cond=cond, generator=torch.Generator().manual_seed(1))
    guided = type(sampler)(4, grid=sampler.grid, guidance_scale=2.0)
    two = guided(conditional_only, path, noise, cond=cond, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(one, two, atol=1e-5, rtol=1e-5)
    nfe = sampler.settings()["nfe"]
    assert len(seen) == 2 * nfe and sum(c is None for c in seen) == nfe
    calls = []
    sampler(
        lambda x, t, c: calls.append(c) or net(x, t, c),
        path,
        noise,
        cond=cond,
        generator=torch.Generator().manual_seed(1),
    )
    assert len(calls) == nfe and all(c is cond for c in calls)  # w = 1: one conditional call per evaluation


def test_guidance_combines_outputs_with_the_house_convention(net):
    path, x, t = FlowSchedule(), torch.randn(3, 1, 28, 28), torch.tensor(0.6, dtype=torch.float64)
    cond = torch.tensor([1, 2, 3])
    predict = lambda w, c: Euler(2, guidance_scale=w, clip_x0=False).denoise(net, path, x, t, c)[0]
    unc, con = predict(1.0, None), predict(1.0, cond)
    torch.testing.assert_close(predict(0.0, cond), unc, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(predict(3.0, cond), unc + 3 * (con - unc), atol=1e-4, rtol=1e-4)


def test_grids():
    table = LinearSchedule(1000)
    assert Euler(10).times(table).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99, -1]  # trailing
    assert Euler(4).times(FlowSchedule()).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    shifted = Euler(4, grid="shifted", shift=3.0).times(FlowSchedule())
    torch.testing.assert_close(shifted, torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0], dtype=torch.float64))
    edm = Heun(5).times(EDMSchedule())  # Karras et al. eq. 5, rho = 7, then 0
    expected = [(80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(5)] + [0.0]
    torch.testing.assert_close(edm, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(karras_sigmas(80.0, 0.002, 5), edm[:-1])


def test_sampling_is_deterministic_under_a_seed_and_stays_in_range(net):
    noise = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    s = DPMSolverPP2MSDE(5)
    a = s(net, FlowSchedule(), noise, generator=torch.Generator().manual_seed(5))
    b = s(net, FlowSchedule(), noise, generator=torch.Generator().manual_seed(5))
    c = s(net, FlowSchedule(), noise, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1.0001 and a.max() <= 1.0001


def test_heun_default_grid_is_karras_where_finite_and_uniform_on_flow():
    from vdiff.samplers.grids import time_grid

    heun = Heun(4)
    assert torch.equal(heun.times(EDMSchedule()), time_grid(EDMSchedule(), 4, "karras"))
    assert torch.equal(heun.times(LinearSchedule(1000)), time_grid(LinearSchedule(1000), 4, "karras"))
    assert torch.equal(heun.times(FlowSchedule()), time_grid(FlowSchedule(), 4, "uniform"))


def test_with_max_steps_and_settings():
    s = Heun(18, s_churn=1.0)
    short = s.with_max_steps(2, None)
    assert (short.steps, short.s_churn, s.steps) == (2, 1.0, 18) and s.with_max_steps(50, None) is s
    assert s.settings() == {
        "steps": 18,
        "eta": None,
        "guidance_scale": 1.0,
        "grid": "auto",
        "nfe": 35,
        "s_churn": 1.0,
    }
    with pytest.raises(ValueError, match="sampler.steps=60 exceeds"):
        DPMSolverPP2M(60).check(50)
