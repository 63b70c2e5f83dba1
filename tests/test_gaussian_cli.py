"""The flow and EDM recipes through train.py / sample.py as a user runs them: smoke, sampling with another
sampler, exact resume, bad input."""

import json
from pathlib import Path

import pytest
import torch
from conftest import need_mnist, run

pytestmark = pytest.mark.usefixtures("mnist_root")

TINY_FLOW = [  # conftest.TINY without its table keys (schedule.num_steps, sampler=ddim)
    "experiment=mnist_flow_cpu",
    "model=unet_tiny",
    "sampler.steps=3",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "trainer.limit_val_batches=1",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=4",
    "callbacks.progress_bar=null",
]


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("experiment", ["mnist_flow_cpu", "mnist_edm_cpu"])
def test_recipes_run_under_trainer_debug(experiment, tmp_path):
    proc = run("train.py", f"experiment={experiment}", "trainer=debug", f"hydra.run.dir={tmp_path}")
    assert "step 1: " in proc.stdout + proc.stderr


def test_flow_checkpoint_samples_with_dpmpp_2m(tmp_path):
    need_mnist()
    run("train.py", *TINY_FLOW, "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'run'}")
    out = tmp_path / "out"
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    run(
        "sample.py",
        f"ckpt_path={last}",
        "sampler=dpmpp_2m",
        "sampler.steps=5",
        "num_samples=4",
        "seed=0",
        f"out_dir={out}",
    )
    x = torch.load(out / "samples.pt")
    assert x.shape == (4, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    sampling = json.loads((out / "metrics.json").read_text())["sampling"]
    assert (sampling["sampler"], sampling["steps"], sampling["nfe"]) == ("DPMSolverPP2M", 5, 5)


def test_flow_resume_gives_the_same_weights_ema_and_step(tmp_path):
    common = [*TINY_FLOW, "trainer.val_check_interval=2", "seed=3"]
    run("train.py", *common, f"hydra.run.dir={tmp_path / 'straight'}")
    run("train.py", *common, "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'half'}")
    half = tmp_path / "half" / "checkpoints" / "last.ckpt"
    run("train.py", *common, f"ckpt_path={half}", f"hydra.run.dir={tmp_path / 'resumed'}")
    a = ckpt(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    b = ckpt(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 4
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    for k, v in a["callbacks"]["EMA"]["shadow"].items():
        torch.testing.assert_close(v, b["callbacks"]["EMA"]["shadow"][k], rtol=0, atol=0, msg=k)


BAD = [
    (["experiment=mnist_flow_cpu", "schedule.time_sampling=beta"], "schedule.time_sampling='beta' is not one of"),
    (["experiment=mnist_edm_cpu", "sampler=ddim"], "sampler=ddim walks the timestep table"),
    (["experiment=mnist_ddpm", "schedule=flow"], "sampler=ddpm walks the timestep table"),
    (["experiment=mnist_flow_cpu", "sampler.steps=0"], "sampler.steps=0"),
    (["experiment=mnist_edm_cpu", "schedule.sigma_data=0"], "schedule.sigma_data=0"),
    (["experiment=mnist_flow_cpu", "schedule.shift=-1"], "schedule.shift=-1"),
    (["experiment=mnist_flow_cpu", "sampler.grid=karras"], "sampler.grid=karras"),
]


@pytest.mark.parametrize(
    "overrides,named",
    BAD,
    ids=["time_sampling", "ddim_edm", "ddpm_flow", "steps", "sigma_data", "shift", "karras_flow"],
)
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(overrides, named, tmp_path):
    proc = run("train.py", *overrides, "trainer=debug", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert named in lines[0]
    assert not (tmp_path / "run").exists()
