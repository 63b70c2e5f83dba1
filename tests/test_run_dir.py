"""What a run leaves and shows, as a user runs train.py: train.log, `last` as a link, the step progress
bar, metrics.csv rows numbered as the checkpoints, the run config as hyperparameters, --help, and one
sentence for the bench without a GPU and for launcher=slurm outside a cluster."""

import csv
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, TINY, need_mnist, run

INJECT = {"PYTHONPATH": str(ROOT / "tests")}
COMMON = [
    "experiment=mnist_ddpm",
    *[a for a in TINY if not a.startswith("callbacks.progress_bar")],
    "callbacks.samples=null",
    "logger=tensorboard",
    "+logger.csv._target_=vdiff.utils.loggers.CSVLogger",
    "+logger.csv.save_dir=${paths.output_dir}",
    "+logger.csv.name=csv",
    "+logger.csv.version=''",
    "+callbacks.warn._target_=fault_injection.WarnAtStart",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """4 steps (checkpoints every 2), then resumed to 6 with ckpt_path=last: (run dir, first, resumed)."""
    need_mnist()
    out = tmp_path_factory.mktemp("run")
    first = run("train.py", *COMMON, f"hydra.run.dir={out}", env=INJECT)
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    log = (out / "train.log").read_text()
    resumed = run("train.py", *COMMON, "trainer.max_steps=6", "ckpt_path=last", f"hydra.run.dir={out}", env=INJECT)
    return out, first, resumed, files, log


def bar_counts(output: str) -> list[tuple[int, int]]:
    """(n, total) of every refresh of the training bar `step: ..% | n/total [...]`."""
    return [(int(n), int(t)) for n, t in re.findall(r"step: +\d+%\|[^|]*\| (\d+)/(\d+) ", output)]


def test_train_log_holds_lightnings_messages_warnings_and_the_final_metrics(runs):
    out, first, _, _, log = runs
    assert "`Trainer.fit` stopped: `max_steps=4` reached." in log
    assert "[lightning.pytorch" in log and "GPU available: False" in log
    assert "Trainable params" in log  # the model summary
    assert "[py.warnings][WARNING]" in log and "injected warning for the run log" in log
    assert re.search(r"\[vdiff.train\]\[INFO\] - step 4: .*val/loss=", log)
    assert "injected warning for the run log" in first.stderr  # the terminal still shows it, on stderr
    assert "ckpt_path=last: resuming" in (out / "train.log").read_text()  # the resume appends


def test_a_fault_during_training_lands_in_train_log(tmp_path):
    need_mnist()
    proc = run(
        "train.py",
        "experiment=mnist_ddpm",
        *TINY,
        "callbacks.samples=null",
        "trainer.max_steps=40",
        "task.optimizer.lr=1e4",
        "callbacks.nonfinite.watch=[loss]",
        f"hydra.run.dir={tmp_path}",
        check=False,
    )
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 3 and line.startswith("error: ") and "step 2" in line, proc.stderr[-2000:]
    assert f"[vdiff.errors][ERROR] - {line}" in (tmp_path / "train.log").read_text()


def test_last_is_a_link_to_the_newest_step_checkpoint(runs):
    out, _, _, files, _ = runs
    ckpts = out / "checkpoints"
    assert len(files) == 3 and files[0].startswith("best-step") and files[1:] == ["last.ckpt", "step0000004.ckpt"]
    assert os.readlink(ckpts / "last.ckpt") == "step0000006.ckpt"  # relinked after the resume
    assert sorted(p.name for p in ckpts.iterdir() if not p.is_symlink())[1:] == ["step0000006.ckpt"]
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 6


def test_progress_bar_counts_steps_of_max_steps(runs):
    _, first, resumed, _, _ = runs
    assert "Epoch" not in first.stdout + first.stderr
    assert bar_counts(first.stdout)[-1] == (4, 4) and {t for _, t in bar_counts(first.stdout)} == {4}
    counts = bar_counts(resumed.stdout)
    assert counts[0][0] >= 4 and counts[-1] == (6, 6) and {t for _, t in counts} == {6}, counts
    last = resumed.stdout.rsplit("step:", 1)[1].split("\n")[0]
    assert re.search(r"\d+(\.\d+)?(it/s|s/it)", last) and "train/loss=" in last, last


def test_metrics_rows_are_numbered_as_the_checkpoints(runs):
    """Row N holds the train loss and learning rate of update N and the validation of the weights after
    it, the weights of step000000N.ckpt; the best checkpoint's score is the val/loss of its row."""
    out, *_ = runs
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    train = [int(r["step"]) for r in rows if r["train/loss"]]
    assert train == [1, 2, 3, 4, 5, 6]
    assert all(r["lr-AdamW"] for r in rows if r["train/loss"])  # in the train row of the same step
    val = {int(r["step"]): float(r["val/loss"]) for r in rows if r["val/loss"]}
    assert sorted(val) == [2, 4, 6]
    best = next((out / "checkpoints").glob("best-step*.ckpt"))
    state = torch.load(best, map_location="cpu", weights_only=False)
    score = next(s["best_model_score"] for s in state["callbacks"].values() if s.get("monitor") == "val/loss")
    assert state["global_step"] == int(best.stem[len("best-step") :])
    assert float(score) == pytest.approx(val[state["global_step"]])


def test_tensorboard_hparams_hold_the_resolved_run_config(runs):
    """Written by the first run in the run dir (Lightning keeps an existing hparams.yaml on a resume)."""
    out, *_ = runs
    hparams = yaml.safe_load((out / "tensorboard" / "hparams.yaml").read_text())
    assert hparams["trainer"]["max_steps"] == 4 and hparams["data"]["batch_size"] == 8
    assert hparams["task"]["net"]["_target_"].endswith("UNetTiny") and "${" not in str(hparams)


def help_text(script: str) -> str:
    proc = run(script, "--help")
    return proc.stdout


def groups(text: str) -> set[str]:
    return set(re.findall(r"^(\w+) {2,}\S", text.split("== Groups", 1)[1], flags=re.M))


def test_help_lists_each_scripts_own_groups_with_a_line_and_options():
    train, sample = help_text("train.py"), help_text("sample.py")
    assert groups(train) == {
        "experiment", "data", "schedule", "model", "sampler", "task", "lr_scheduler",
        "trainer", "callbacks", "logger", "launcher", "hparams_search", "paths",
    }  # fmt: skip
    assert groups(sample) == {"sampler", "metrics", "paths"}
    assert re.search(r"^trainer +Lightning's Trainer.*\n +cpu, ddp, ddp_sim, debug, default, gpu$", train, re.M)
    assert re.search(
        r"^metrics +what to measure.*\n +bits_per_char, class_accuracy, direction_accuracy, entropy, fid,", sample, re.M
    )


def test_bench_on_gpu_without_a_gpu_is_one_sentence():
    proc = subprocess.run(
        [sys.executable, "-m", "vdiff.bench", "--accelerator", "gpu"],
        cwd=ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [
        "error: --accelerator gpu: torch sees no CUDA GPU on this machine; use --accelerator cpu"
    ], proc.stderr[-2000:]


def test_slurm_launcher_outside_a_cluster_is_one_sentence(tmp_path):
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"}  # no sbatch there
    proc = run(
        "train.py", "-m", "launcher=slurm", "experiment=mnist_ddpm", f"hydra.sweep.dir={tmp_path}", env=env, check=False
    )
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "sbatch" in lines[0] and "Traceback" not in proc.stderr, (
        proc.stderr[-2000:]
    )
