"""train.py / sample.py as a user runs them: experiments, sweeps, resume, DDP, loggers, bad input."""

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, need_mnist, run

pytestmark = pytest.mark.usefixtures("mnist_root")


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run shared by the sampling and bad-input tests."""
    need_mnist()
    out = tmp_path_factory.mktemp("trained")
    run("train.py", "experiment=mnist_ddpm", *TINY, f"hydra.run.dir={out}")
    return out


def test_run_dir_holds_config_checkpoints_logs_and_samples(trained):
    assert (trained / ".hydra" / "config.yaml").is_file()
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert any((trained / "checkpoints").glob("best-*.ckpt"))
    assert (trained / "csv" / "metrics.csv").read_text().count("\n") > 2
    assert sorted((trained / "samples").glob("*.png"))
    c = ckpt(trained / "checkpoints" / "last.ckpt")
    assert c["global_step"] == 4 and "EMA" in c["callbacks"] and c["config"]["data"]["batch_size"] == 8
    assert all(k.startswith("net.") for k in c["state_dict"])


def test_multirun_makes_one_run_dir_per_value(tmp_path):
    run(
        "train.py",
        "-m",
        "experiment=mnist_ddpm",
        "schedule=linear,cosine",
        *TINY,
        "trainer.max_steps=2",
        f"hydra.sweep.dir={tmp_path}",
    )
    runs = sorted(p for p in tmp_path.iterdir() if (p / ".hydra").is_dir())
    assert len(runs) == 2
    schedules = {
        ckpt(p / "checkpoints" / "last.ckpt")["config"]["schedule"]["_target_"].rsplit(".", 1)[1] for p in runs
    }
    assert schedules == {"LinearSchedule", "CosineSchedule"}


def test_slurm_launcher_runs_one_task_per_gpu():
    """launcher=slurm hands multirun jobs to submitit with SLURM tasks = GPUs per node (what
    Lightning's SLURM DDP expects); the default launcher runs them in this process."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        over = ["experiment=mnist_ddpm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
        slurm = compose("train", ["launcher=slurm", *over], return_hydra_config=True)
        local = compose("train", over, return_hydra_config=True)
    launcher = slurm.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (4, 4, 2)
    assert local.hydra.launcher._target_.endswith("BasicLauncher")


def test_resume_gives_the_same_weights_ema_and_step(tmp_path):
    common = ["experiment=mnist_ddpm", *TINY, "trainer.max_steps=6", "trainer.val_check_interval=3", "seed=3"]
    run("train.py", *common, f"hydra.run.dir={tmp_path / 'straight'}")
    run("train.py", *common, "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'half'}")
    half = tmp_path / "half" / "checkpoints" / "last.ckpt"
    run("train.py", *common, f"ckpt_path={half}", f"hydra.run.dir={tmp_path / 'resumed'}")
    a = ckpt(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    b = ckpt(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 6
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    for k, v in a["callbacks"]["EMA"]["shadow"].items():
        torch.testing.assert_close(v, b["callbacks"]["EMA"]["shadow"][k], rtol=0, atol=0, msg=k)
    torch.testing.assert_close(
        a["optimizer_states"][0]["state"][0]["exp_avg"], b["optimizer_states"][0]["state"][0]["exp_avg"]
    )
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]


def test_ckpt_path_last_resumes_the_run_dir(tmp_path):
    run("train.py", "experiment=mnist_ddpm", *TINY, "trainer.max_steps=2", f"hydra.run.dir={tmp_path}")
    run(
        "train.py", "experiment=mnist_ddpm", *TINY, "trainer.max_steps=4", "ckpt_path=last", f"hydra.run.dir={tmp_path}"
    )
    assert ckpt(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    steps = {int(r["step"]) for r in rows if r["train/loss"]}
    assert steps == {1, 2, 3, 4}  # the first run's rows are kept, the resumed run's appended (row N: update N)


def test_ddp_sim_trains_on_two_processes(tmp_path):
    proc = run("train.py", "experiment=mnist_ddpm", *TINY, "trainer=ddp_sim", f"hydra.run.dir={tmp_path}")
    c = ckpt(tmp_path / "checkpoints" / "last.ckpt")
    assert c["global_step"] == 4
    assert (proc.stdout + proc.stderr).count("[vdiff.train][INFO] - step 4: ") == 1  # rank 0 alone says it


def test_wandb_without_credentials_logs_offline(tmp_path):
    env = {"HOME": str(tmp_path), "WANDB_API_KEY": "", "WANDB_MODE": "", "NETRC": str(tmp_path / "none")}
    proc = run("train.py", "experiment=mnist_ddpm", *TINY, "logger=wandb", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert "offline" in proc.stderr
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_sample_writes_grid_and_tensor_deterministically(trained, tmp_path):
    args = [
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        "sampler=ddim",
        "sampler.steps=5",
        "num_samples=6",
        "seed=0",
    ]
    run("sample.py", *args, f"out_dir={tmp_path / 'a'}")
    run("sample.py", *args, f"out_dir={tmp_path / 'b'}", "batch_size=4")
    a, b = torch.load(tmp_path / "a" / "samples.pt"), torch.load(tmp_path / "b" / "samples.pt")
    assert a.shape == (6, 1, 28, 28) and a.dtype == torch.float32 and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert (tmp_path / "a" / "samples.png").stat().st_size > 0


def test_sample_with_fid_writes_metrics(trained, tmp_path):
    run(
        "sample.py",
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        "sampler=ddim",
        "sampler.steps=3",
        "num_samples=40",
        "metrics=[fid]",
        "metrics.fid.num_reference=200",
        f"out_dir={tmp_path}",
    )
    m = json.loads((tmp_path / "metrics.json").read_text())["fid"]
    assert m["fid"] > m["fid_floor"] > 0 and sum(m["label_hist"]) == 40
    assert 0 <= m["label_entropy_bits"] <= m["label_entropy_max_bits"]
    assert 0.1 <= m["confidence_mean"] <= 1 and m["confidence_mean_real"] > 0.9


BAD_TRAIN = [
    (["model=unet_huge"], "model"),
    (["model=unet", "model.net.channels=30"], "model.net"),
    (["sampler=ddim", "sampler.steps=80"], "sampler.steps"),
    (["data.root=/nonexistent/dir", "data.download=false"], "/nonexistent/dir"),
    (["ckpt_path=/nonexistent/last.ckpt"], "/nonexistent/last.ckpt"),
    (
        ["model=factorized_unet", "model.net.image_size=28"],
        "model.net (VideoUNet) takes examples laid out (C, T, H, W)",
    ),
]


@pytest.mark.parametrize(
    "overrides,named", BAD_TRAIN, ids=["group", "groupnorm", "steps", "data", "ckpt", "video_net_on_images"]
)
def test_bad_input_fails_with_one_sentence(overrides, named, trained, tmp_path):
    before = {p: p.read_bytes() for p in (trained / "checkpoints").iterdir()}
    proc = run(
        "train.py",
        "experiment=mnist_ddpm",
        *TINY,
        "ckpt_path=last",
        *overrides,
        f"hydra.run.dir={trained}",
        check=False,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and named in lines[0], proc.stderr[-2000:]
    if lines[0].startswith("error:"):  # ours; Hydra follows its sentence with the available options
        assert len(lines) == 1, lines
    assert before == {p: p.read_bytes() for p in (trained / "checkpoints").iterdir()}


def test_corrupt_checkpoint_is_named(trained, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    for script, extra in [
        ("train.py", ["experiment=mnist_ddpm", *TINY, f"hydra.run.dir={tmp_path / 'r'}"]),
        ("sample.py", [f"out_dir={tmp_path / 's'}"]),
    ]:
        proc = run(script, *extra, f"ckpt_path={bad}", check=False)
        assert (
            proc.returncode == 2
            and proc.stderr.strip() == f"error: ckpt_path={bad}: not a readable checkpoint (UnpicklingError)"
        )


def test_fresh_start_refuses_a_run_dir_with_checkpoints(trained):
    proc = run("train.py", "experiment=mnist_ddpm", *TINY, f"hydra.run.dir={trained}", check=False)
    assert proc.returncode == 2 and "ckpt_path=last" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_optuna_preset_runs_trials_and_reports_the_best(tmp_path):
    run(
        "train.py",
        "hparams_search=mnist_optuna",
        "experiment=mnist_ddpm",
        *TINY,
        "trainer.max_steps=2",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={tmp_path}",
    )
    result = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_value" in result and "task.optimizer.lr" in result
    assert len([p for p in tmp_path.iterdir() if (p / ".hydra").is_dir()]) == 2


@pytest.mark.gpu
def test_gpu_on_device_bf16_compiled_training_resumes(tmp_path):
    fast = ["trainer=gpu", "data.on_device=true", "model.compile=true"]
    run("train.py", "experiment=mnist_ddpm", *TINY, *fast, f"hydra.run.dir={tmp_path}")
    run(
        "train.py",
        "experiment=mnist_ddpm",
        *TINY,
        *fast,
        "trainer.max_steps=6",
        "ckpt_path=last",
        f"hydra.run.dir={tmp_path}",
    )
    c = ckpt(tmp_path / "checkpoints" / "last.ckpt")
    assert c["global_step"] == 6 and all(k.startswith("net.") and "_orig_mod" not in k for k in c["state_dict"])
