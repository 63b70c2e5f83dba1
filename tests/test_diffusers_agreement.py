"""Each continuous sampler against the diffusers scheduler it is equivalent to, step by step, on the
same network and noise: <= 1e-4 max abs difference over 10 steps.

diffusers' Euler / Heun schedulers carry x in the variance-exploding scale x / alpha = x sqrt(sigma^2 + 1)
and scale it back for the network (`scale_model_input`); our samplers carry x_t itself, so their states
are compared as x_ve / sqrt(sigma^2 + 1). DPM-Solver and FlowMatch carry x_t as we do.
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="diffusers (a dev extra: pip install -e .[dev]) is not installed")

from vdiff.diffusion import FlowSchedule, LinearSchedule  # noqa: E402
from vdiff.models import UNetTiny  # noqa: E402
from vdiff.samplers import DPMSolverPP2M, DPMSolverPP2MSDE, Euler, Heun  # noqa: E402

STEPS = 10
TABLE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}


M, S = 0.3, 0.5  # the test network: the exact denoiser of data ~ N(M, S^2) plus a small random U-Net


def gaussian_denoiser(x, a, s):
    """(x0, eps) = E[x0 | x_t], E[eps | x_t] for x_t = a x0 + s eps and x0 ~ N(M, S^2) per pixel."""
    x0 = M + a * S**2 * (x - a * M) / (a**2 * S**2 + s**2)
    return x0, (x - a * x0) / s


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNetTiny().eval().requires_grad_(False)


def network(unet, schedule):
    """net(x, t, cond): an eps-predictor for the table (t a float index), a velocity for flow (t = 1000 t).
    diffusers hands one timestep for the batch, our samplers one per example."""

    def call(x, t, cond=None):
        t = torch.as_tensor(t).double()
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        if isinstance(schedule, FlowSchedule):
            a, s = 1 - t / 1000, t / 1000
        else:
            a, s = schedule.alpha_sigma(t)
        a, s = (v.float().view(-1, 1, 1, 1) for v in (a, s))
        x0, eps = gaussian_denoiser(x, a, s)
        exact = eps - x0 if isinstance(schedule, FlowSchedule) else eps
        return exact + 0.05 * unet(x, t.float(), cond)

    return call


@pytest.fixture(scope="module")
def noise():
    return torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def ours(sampler, net, schedule, noise, generator=None):
    trace = []
    sampler(net, schedule, noise, generator=generator, trace=trace)
    return trace


def assert_steps_agree(ours_trace, theirs_trace):
    assert len(ours_trace) == len(theirs_trace) == STEPS
    for i, (a, b) in enumerate(zip(ours_trace, theirs_trace)):
        diff = (a - b).abs().max().item()
        assert diff <= 1e-4, f"step {i}: max abs difference {diff:.2e}"


@pytest.mark.parametrize("sde", [False, True], ids=["dpmpp_2m", "dpmpp_2m_sde"])
def test_dpmpp_2m_matches_dpm_solver_multistep(unet, noise, sde):
    scheduler = diffusers.DPMSolverMultistepScheduler(
        **TABLE,
        algorithm_type="sde-dpmsolver++" if sde else "dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
        prediction_type="epsilon",
    )
    scheduler.set_timesteps(STEPS)
    schedule = LinearSchedule(1000)
    net = network(unet, schedule)
    sampler = (DPMSolverPP2MSDE if sde else DPMSolverPP2M)(STEPS, grid="uniform", clip_x0=False)
    assert sampler.times(schedule)[:-1].tolist() == scheduler.timesteps.tolist()  # trailing spacing
    g = torch.Generator().manual_seed(3)
    z = [torch.randn(noise.shape, generator=g) for _ in range(STEPS)]  # our sampler's draws, in order
    theirs, x = [], noise.clone()
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(net(x, t), t, x, variance_noise=z[i] if sde else None).prev_sample
        theirs.append(x)
    assert_steps_agree(ours(sampler, net, schedule, noise, torch.Generator().manual_seed(3)), theirs)


def karras_scheduler(cls):
    scheduler = cls(**TABLE, use_karras_sigmas=True, prediction_type="epsilon")
    scheduler.set_timesteps(STEPS)
    return scheduler


def test_euler_matches_euler_discrete_with_karras_sigmas(unet, noise):
    scheduler = karras_scheduler(diffusers.EulerDiscreteScheduler)
    schedule, sampler = LinearSchedule(1000), Euler(STEPS, grid="karras", clip_x0=False)
    net = network(unet, schedule)
    times = sampler.times(schedule)
    torch.testing.assert_close(schedule.ve_sigma(times).float(), scheduler.sigmas, rtol=1e-4, atol=0)
    torch.testing.assert_close(times[:-1].float(), scheduler.timesteps, rtol=0, atol=1e-2)
    sigmas = scheduler.sigmas.double()
    theirs, x = [], noise * (sigmas[0] ** 2 + 1).sqrt().float()  # the same x_T in the VE scale
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(net(scheduler.scale_model_input(x, t), t), t, x).prev_sample
        theirs.append(x / (sigmas[i + 1] ** 2 + 1).sqrt().float())
    assert_steps_agree(ours(sampler, net, schedule, noise), theirs)


def test_heun_matches_heun_discrete_with_karras_sigmas(unet, noise):
    scheduler = karras_scheduler(diffusers.HeunDiscreteScheduler)
    schedule, sampler = LinearSchedule(1000), Heun(STEPS, grid="karras", clip_x0=False)
    net = network(unet, schedule)
    sigmas = sampler.times(schedule)
    sigmas = schedule.ve_sigma(sigmas)
    assert len(scheduler.timesteps) == 2 * STEPS - 1  # EDM's 2N - 1 network calls
    theirs, x = [], noise * (sigmas[0] ** 2 + 1).sqrt().float()
    for t in scheduler.timesteps:
        x = scheduler.step(net(scheduler.scale_model_input(x, t), t), t, x).prev_sample
        if scheduler.state_in_first_order or len(theirs) == STEPS - 1:  # a whole step (or the last, Euler's)
            theirs.append(x / (sigmas[len(theirs) + 1] ** 2 + 1).sqrt().float())
    assert_steps_agree(ours(sampler, net, schedule, noise), theirs)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_matches_flow_match_euler_discrete(unet, noise, shift):
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    schedule = FlowSchedule()
    net = network(unet, schedule)
    sampler = Euler(STEPS, grid="shifted", shift=shift, clip_x0=False)
    uniform = Euler(STEPS, grid="uniform").times(schedule)
    scheduler.set_timesteps(sigmas=uniform[:-1].tolist())  # diffusers shifts them, as our grid does
    torch.testing.assert_close(sampler.times(schedule).float(), scheduler.sigmas, rtol=0, atol=1e-6)
    theirs, x = [], noise.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(net(x, t), t, x).prev_sample
        theirs.append(x)
    assert_steps_agree(ours(sampler, net, schedule, noise), theirs)
