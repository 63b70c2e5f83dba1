"""trainer=debug runs every experiment in seconds, and sampling stops promptly on SIGTERM / SIGINT."""

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import DATA, ROOT, default_sigint, need_mnist, run
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vdiff.callbacks.samples import Samples
from vdiff.diffusion import LinearMasking, LinearSchedule
from vdiff.samplers import DDIM, DDPM, Unmask
from vdiff.utils import stop

EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
DEBUG_SECONDS = 60


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def first_stage(experiment: str, request) -> list[str]:
    """A latent-diffusion experiment reads the VAE checkpoint of a run the user trained first
    (`task.first_stage.ckpt_path`); here it gets a tiny VAE's, trained once. Other experiments get nothing."""
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}"])
    if OmegaConf.select(cfg, "task.first_stage") is None:
        return []
    return [f"task.first_stage.ckpt_path={request.getfixturevalue('tiny_vae_ckpt')}"]


def user_data(experiment: str, folder: Path) -> list[str]:
    """An experiment on the user's own files (`data.root` required) or on CIFAR-10 (not reachable
    offline) gets a handful of small files made here; the others read the bundled data."""
    from PIL import Image
    from test_image_folder import fake_cifar
    from test_text8_recipe import stand_in_text8

    target = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "experiment" / f"{experiment}.yaml")).get(
        "defaults", []
    )
    data = next((d["override /data"] for d in target if isinstance(d, dict) and "override /data" in d), None)
    if data == "cifar10":
        return [f"data.root={fake_cifar(folder)}", "data.val_size=6"]
    if data == "image_folder":
        for i in range(8):
            (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 36), (30 * i, 255 - 30 * i, 90)).save(folder / f"c{i % 2}" / f"{i}.png")
        return [f"data.root={folder}"]
    if data == "text8":
        return [f"data.root={stand_in_text8(folder)}"]
    if data == "video_folder":
        for v in range(4):
            (folder / f"v{v}").mkdir(parents=True)
            for f in range(12):
                Image.new("L", (32, 32), 20 * f + v).save(folder / f"v{v}" / f"{f:03d}.png")
        return [f"data.root={folder}"]
    return []


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_debug_trainer_alone_within_a_minute(experiment, tmp_path, request):
    """The bound is on the smaller of the run's wall time and its CPU seconds (user + system): on idle
    cores the wall time is what a user waits (the CPU seconds of two threads are up to twice it), on a
    machine busy with other work the CPU seconds say more than the wall time. Latent-diffusion
    experiments are given a VAE checkpoint, experiments on a user's files a few small ones, nothing else."""
    need_mnist()
    vae = first_stage(experiment, request)
    files = user_data(experiment, tmp_path / "data")
    cpu, wall = child_cpu_seconds(), time.perf_counter()
    run("train.py", f"experiment={experiment}", "trainer=debug", *vae, *files, f"hydra.run.dir={tmp_path / 'run'}")
    cpu, wall = child_cpu_seconds() - cpu, time.perf_counter() - wall
    assert min(cpu, wall) < DEBUG_SECONDS, (
        f"experiment={experiment} trainer=debug took {wall:.0f} s wall ({cpu:.0f} CPU seconds)"
    )
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_debug_run_twice_in_one_dir(tmp_path):
    for _ in range(2):
        run(
            "train.py",
            "experiment=text_patterns",
            "trainer=debug",
            "callbacks.progress_bar=null",
            f"hydra.run.dir={tmp_path}",
        )
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["text_0000001.txt"]
    assert (tmp_path / "samples" / "text_0000001.txt").read_text().count("\n") >= 4  # 4 samples


def cpu_seconds_so_far(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_with_usage(pid: int, timeout: float) -> tuple[int, float]:
    """(exit code, CPU seconds of the whole process) once it ends; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        assert time.monotonic() < deadline, f"the process did not end within {timeout} s of the signal"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_sampling_ends_the_run_promptly(signum, tmp_path):
    """A debug run whose sample grid is left at full size (64 images, 1000 DDPM steps, a minute or more
    of CPU): the signal comes once the sampler's progress bar shows, and the run must end within a few
    CPU seconds (the wall-time bound is loose for machines busy with other work)."""
    need_mnist()
    log = tmp_path / "stderr.txt"
    args = [
        "experiment=mnist_ddpm",
        "model=unet_tiny",
        "trainer=debug",
        "data.batch_size=8",
        "sample_limits.num_samples=null",
        "sample_limits.sampler_steps=null",
        "callbacks.samples.progress=true",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "VDIFF_DATA_DIR": str(DATA), "WANDB_SILENT": "true"}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=default_sigint,
        )
    try:
        deadline = time.monotonic() + 600
        while "DDPM:" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"train.py ended before sampling:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "sampling did not start within 600 s"
            time.sleep(0.2)
        before = cpu_seconds_so_far(proc.pid)
        proc.send_signal(signum)
        code, total = wait_with_usage(proc.pid, timeout=120)
        proc.returncode = code
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert code == 128 + signum
    assert total - before < 5, f"train.py used {total - before:.1f} CPU seconds after the signal"
    assert "DDPM: 100%" not in log.read_text(errors="replace")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=default_sigint
    )


def test_stop_handler_records_the_signal_and_a_second_one_ends_the_process():
    code = (
        "import os, signal; from vdiff.utils import stop; stop.install(); os.kill(os.getpid(), signal.SIGTERM); "
        "assert stop.received() == signal.SIGTERM; print('recorded', flush=True); os.kill(os.getpid(), signal.SIGTERM); "
        "print('still alive', flush=True)"
    )
    proc = run_python(code)
    assert proc.stdout == "recorded\n", proc.stderr
    assert proc.returncode == -signal.SIGTERM


def test_stop_handler_calls_the_handler_it_replaced():
    code = (
        "import os, signal; from vdiff.utils import stop\n"
        "try:\n    stop.install(); os.kill(os.getpid(), signal.SIGINT)\n"
        "except KeyboardInterrupt:\n    print(stop.received() == signal.SIGINT)"
    )
    proc = run_python(code)
    assert proc.stdout == "True\n", proc.stderr


class CountingNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        if self.calls == 2:
            stop.request(signal.SIGTERM)
        return torch.zeros_like(x)


def test_a_stop_request_ends_the_gaussian_loop_at_the_next_step():
    net = CountingNet()
    try:
        with pytest.raises(stop.Stopped) as info:
            DDPM()(net, LinearSchedule(50), torch.randn(2, 1, 8, 8))
    finally:
        stop.request(None)
    assert net.calls == 2 and info.value.code == 128 + signal.SIGTERM


def test_a_stop_request_ends_the_unmask_loop_at_the_next_step():
    calls = []

    def net(x, t, cond):
        calls.append(1)
        stop.request(signal.SIGINT)
        return torch.zeros(*x.shape, 5)

    try:
        with pytest.raises(stop.Stopped):
            Unmask(steps=8)(net, LinearMasking(), torch.zeros(2, 6, dtype=torch.long))
    finally:
        stop.request(None)
    assert len(calls) == 1


def test_with_max_steps_keeps_the_sampler_kind_and_settings():
    ddpm = DDPM(guidance_scale=2.0).with_max_steps(4, 1000)
    assert isinstance(ddpm, DDIM) and ddpm.eta == 1.0 and ddpm.guidance_scale == 2.0
    assert ddpm.timesteps(1000) == [999, 749, 499, 249]
    assert DDPM().with_max_steps(50, 50).timesteps(50) == list(range(49, -1, -1))
    ddim = DDIM(steps=50, eta=0.5, spacing="trailing").with_max_steps(4, 1000)
    assert (ddim.steps, ddim.eta, ddim.spacing) == (4, 0.5, "trailing")
    few = DDIM(steps=3)
    assert few.with_max_steps(4, 1000) is few
    unmask = Unmask(steps=256, order="confidence", temperature=0.8, mask_id=3).with_max_steps(4)
    assert (unmask.steps, unmask.order, unmask.temperature, unmask.mask_id) == (4, "confidence", 0.8, 3)


def test_sample_callbacks_cap_their_sample_count():
    assert Samples(num_samples=64, max_samples=4).num_samples == 4
    assert Samples(num_samples=2, max_samples=4).num_samples == 2
    assert Samples(num_samples=64).num_samples == 64
