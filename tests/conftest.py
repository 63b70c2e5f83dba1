import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs 2 workers) each worker, and every run it starts, gets one torch
# thread: two workers of two threads each on two cores oversubscribe them and slow every forward pass.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VDIFF_DATA_DIR", ROOT.parent / "shared" / "data"))

# A tiny, fast run: the reference-size U-Net, small batches, a short schedule, one val batch.
TINY = [
    "model=unet_tiny",
    "schedule.num_steps=50",
    "sampler=ddim",
    "sampler.steps=5",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "trainer.limit_val_batches=1",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=4",
    "callbacks.progress_bar=null",
]


def need_mnist():
    if not (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST IDX files not found under {DATA}/MNIST/raw (set VDIFF_DATA_DIR)")


@pytest.fixture
def mnist_root():
    need_mnist()
    return str(DATA)


def default_sigint() -> None:
    """preexec_fn of every child a test starts: SIGINT back to its default. A suite started with SIGINT
    ignored (`nohup make test &`, or a background job of a non-interactive shell) would hand the ignore
    on, and the program rightly keeps an inherited ignore, so a test that sends SIGINT would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(script: str, *overrides: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run train.py / sample.py as a user would; on failure show its output."""
    full_env = {**os.environ, "VDIFF_DATA_DIR": str(DATA), "WANDB_SILENT": "true", **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=default_sigint,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    if os.environ.get("VDIFF_SLOW_TESTS") != "1":
        skip = pytest.mark.skip(reason="minutes long; VDIFF_SLOW_TESTS=1 runs it")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


# A video VAE of width 8 trained for two steps: the first stage of the latent-diffusion tests.
TINY_VAE = [
    "experiment=video_vae",
    "model.net.channels=8",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "data.num_train=64",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "callbacks.reconstructions.num_clips=2",
    "callbacks.progress_bar=null",
]


@pytest.fixture(scope="session")
def tiny_vae_ckpt(tmp_path_factory) -> Path:
    """The last.ckpt of a tiny video VAE, trained once per test session (read-only for the tests)."""
    out = tmp_path_factory.mktemp("tiny_vae")
    run("train.py", *TINY_VAE, f"hydra.run.dir={out}")
    return out / "checkpoints" / "last.ckpt"
