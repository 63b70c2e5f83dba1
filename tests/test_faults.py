"""Runs that survive faults: divergence, stop signals, SIGKILL, stale and truncated checkpoints."""

import csv
import os
import random
import signal
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, TINY, need_mnist, run

from vdiff.callbacks import Checkpoint, NonFiniteGuard
from vdiff.utils.config import RunFault

BASE = ["experiment=mnist_ddpm", *TINY, "callbacks.samples=null", "logger.csv.flush_logs_every_n_steps=1"]
STEPS = ["trainer.max_steps=10", "trainer.val_check_interval=4", "seed=3"]
INJECT = {"PYTHONPATH": str(ROOT / "tests")}


def inject(step: int, signum: int, during: str = "step") -> list[str]:
    return [
        "+callbacks.fault._target_=fault_injection.SignalAt",
        f"+callbacks.fault.step={step}",
        f"+callbacks.fault.signum={int(signum)}",
        f"+callbacks.fault.during={during}",
    ]


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def snapshot(run_dir: Path) -> dict:
    """Every file under a run dir with its bytes and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run_dir.rglob("*")) if p.is_file()}


def rows(run_dir: Path) -> list[dict]:
    return list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))


def assert_same_training(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    for k, v in a["callbacks"]["EMA"]["shadow"].items():
        torch.testing.assert_close(v, b["callbacks"]["EMA"]["shadow"][k], rtol=0, atol=0, msg=k)


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[-1]


# -- 1. divergence ------------------------------------------------------------------------------


def test_a_diverged_run_stops_naming_the_step_and_keeps_the_good_checkpoint(tmp_path):
    need_mnist()
    proc = run(
        "train.py",
        *BASE,
        "trainer.max_steps=40",
        "trainer.val_check_interval=10",
        "task.optimizer.lr=1e4",
        "callbacks.nonfinite.watch=[loss]",
        f"hydra.run.dir={tmp_path}",
        check=False,
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert proc.returncode == 3
    line = error_line(proc)
    assert (
        line.startswith("error: training diverged at step 22: train/loss is nan;")
        and f"{last} (step 20) is kept" in line
    ), line
    c = ckpt(last)
    assert c["global_step"] == 20
    assert all(torch.isfinite(v).all() for v in c["state_dict"].values())
    assert all(torch.isfinite(v).all() for v in c["callbacks"]["EMA"]["shadow"].values())


def test_skipping_bad_steps_stops_after_too_many_in_a_row(tmp_path):
    need_mnist()
    proc = run(
        "train.py",
        *BASE,
        "trainer.max_steps=40",
        "task.optimizer.lr=1e4",
        "callbacks.nonfinite.action=skip",
        "callbacks.nonfinite.max_consecutive_skips=3",
        f"hydra.run.dir={tmp_path}",
        check=False,
    )
    line = error_line(proc)
    assert proc.returncode == 3 and "for 4 steps in a row (callbacks.nonfinite.max_consecutive_skips=3)" in line, line
    skipped = [float(r["train/skipped_steps"]) for r in rows(tmp_path) if r.get("train/skipped_steps")]
    assert skipped and skipped[-1] == 3


class Toy(L.LightningModule):
    """A linear regression whose loss is NaN at the steps in `spikes`, or whose weights turn NaN at `poison`."""

    def __init__(self, spikes=(), poison=None):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.spikes, self.poison = set(spikes), poison

    def training_step(self, batch, batch_idx):
        x = torch.randn(8, 4)
        loss = (self.layer(x) - x.sum(1, keepdim=True)).pow(2).mean()
        return loss * float("nan") if self.global_step in self.spikes else loss

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        if self.global_step == self.poison:
            with torch.no_grad():
                self.layer.weight.fill_(float("nan"))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(range(1000), batch_size=1)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.1)


def toy_trainer(tmp_path, *callbacks, steps=6) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )


def test_a_rare_spike_is_skipped_and_counted(tmp_path):
    guard = NonFiniteGuard(action="skip")
    model = Toy(spikes={2, 4})
    torch.manual_seed(0)
    toy_trainer(tmp_path, guard).fit(model)
    assert guard.skipped == 2 and torch.isfinite(model.layer.weight).all()


def test_a_checkpoint_holding_nan_is_never_written(tmp_path):
    """Weights that turn NaN after an update (here set by hand after the fourth) are caught on the save path."""
    saver = Checkpoint(
        dirpath=tmp_path, filename="step{step}", every_n_train_steps=1, save_last=True, auto_insert_metric_name=False
    )
    torch.manual_seed(0)
    with pytest.raises(
        RunFault,
        match=r"refused to write a checkpoint at step 4: state_dict.layer.weight holds non-finite values; .*last.ckpt \(step 3\) is kept",
    ):
        toy_trainer(tmp_path, NonFiniteGuard(), saver).fit(Toy(poison=3))
    assert ckpt(tmp_path / "last.ckpt")["global_step"] == 3
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["last.ckpt", "step3.ckpt"]


# -- 2, 6, 7: stops, SIGKILL, resumes ------------------------------------------------------------


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """10 steps without a fault, checkpoints every 4: last.ckpt must still hold step 10."""
    need_mnist()
    out = tmp_path_factory.mktemp("straight")
    run("train.py", *BASE, *STEPS, f"hydra.run.dir={out}")
    return out


def test_last_holds_the_final_step_and_top_k_files_do_not_pile_up(straight):
    files = sorted(p.name for p in (straight / "checkpoints").glob("*.ckpt"))
    assert len(files) == 3 and files[1:] == ["last.ckpt", "step0000010.ckpt"] and files[0].startswith("best-step"), (
        files
    )
    assert ckpt(straight / "checkpoints" / "last.ckpt")["global_step"] == 10
    assert os.readlink(straight / "checkpoints" / "last.ckpt") == "step0000010.ckpt"  # a link, not a third copy


SIGNALS = [(signal.SIGTERM, "step", 5), (signal.SIGINT, "step", 5), (signal.SIGTERM, "validation", 4)]


@pytest.mark.parametrize("signum,during,step", SIGNALS, ids=["sigterm", "sigint", "sigterm_while_sampling"])
def test_a_stop_signal_saves_the_current_step_and_the_resume_is_exact(signum, during, step, straight, tmp_path):
    """The signal lands inside a training step (which completes) or at the start of validation, whose
    sample grid then stops at its first sampler step; last.ckpt is written on the way out (the last
    periodic save, at 4, is older or the same) and resuming it gives the uninterrupted run's result."""
    base = [a for a in BASE if a != "callbacks.samples=null"] if during == "validation" else BASE
    extra = ["callbacks.checkpoint_last.every_n_train_steps=3"] if during == "validation" else []
    proc = run(
        "train.py",
        *base,
        *STEPS,
        *extra,
        *inject(step, signum, during),
        f"hydra.run.dir={tmp_path}",
        check=False,
        env=INJECT,
    )
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    saved = step + 1 if during == "step" else step
    last = ckpt(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == saved
    said = (  # one line on the terminal and in train.log: the signal, the step saved, the file, the resume command
        f"{signal.Signals(signum).name}: training stopped at step {saved}, saved in "
        f"{tmp_path / 'checkpoints' / 'last.ckpt'}; resume with: python train.py "
    )
    line = next(x for x in (tmp_path / "train.log").read_text().splitlines() if said in x)
    assert line.endswith(f" hydra.run.dir={tmp_path} ckpt_path=last") and said in proc.stdout
    if during == "validation":  # the trained weights, not the EMA weights swapped in for validation
        key = next(iter(last["callbacks"]["EMA"]["shadow"]))
        assert not torch.equal(last["state_dict"][f"net.{key}"], last["callbacks"]["EMA"]["shadow"][key])
    run("train.py", *BASE, *STEPS, "ckpt_path=last", f"hydra.run.dir={tmp_path}")
    assert_same_training(ckpt(straight / "checkpoints" / "last.ckpt"), ckpt(tmp_path / "checkpoints" / "last.ckpt"))


def train_rows(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["train/loss"]) for r in rows(run_dir) if r["train/loss"]]


def test_a_run_killed_at_a_random_step_resumes_to_the_same_result(straight, tmp_path):
    step = random.Random(14).randint(5, 9)  # after the first checkpoint (step 4)
    proc = run(
        "train.py", *BASE, *STEPS, *inject(step, signal.SIGKILL), f"hydra.run.dir={tmp_path}", check=False, env=INJECT
    )
    assert proc.returncode == -signal.SIGKILL
    run("train.py", *BASE, *STEPS, "ckpt_path=last", f"hydra.run.dir={tmp_path}")
    assert_same_training(ckpt(straight / "checkpoints" / "last.ckpt"), ckpt(tmp_path / "checkpoints" / "last.ckpt"))
    got = train_rows(tmp_path)
    assert len(got) == len({s for s, _ in got}), f"duplicate rows: {got}"
    assert got == train_rows(straight)


# -- 6, 8: which checkpoint `last` means; a failing command changes nothing -------------------------


def copy_run(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def test_ckpt_path_last_is_the_newest_by_step(straight, tmp_path):
    """A copied run dir holding a stale last.ckpt beside the newest last-v1.ckpt resumes the newest,
    and the resumed run keeps one file per kind."""
    run_dir = copy_run(straight, tmp_path / "run")
    ckpts = run_dir / "checkpoints"
    (ckpts / "last.ckpt").rename(ckpts / "last-v1.ckpt")
    (ckpts / "last.ckpt").write_bytes((ckpts / next(p.name for p in ckpts.glob("best-*.ckpt"))).read_bytes())
    proc = run(
        "train.py",
        *BASE,
        "trainer.max_steps=12",
        "trainer.val_check_interval=3",
        "seed=3",
        "ckpt_path=last",
        f"hydra.run.dir={run_dir}",
    )
    assert f"resuming {ckpts / 'last-v1.ckpt'} (step 10)" in proc.stderr + proc.stdout
    # the last file keeps its name (vdiff/callbacks/checkpoint.py): step 12 goes to last.ckpt, and the
    # `last` link resumed from goes (its target, the step-10 file, is pruned as any older periodic save)
    assert ckpt(ckpts / "last.ckpt")["global_step"] == 12 and not (ckpts / "last-v1.ckpt").exists()
    assert len(list(ckpts.glob("best-*.ckpt"))) == 1 and len(list(ckpts.glob("step*.ckpt"))) == 1


def test_resuming_a_truncated_checkpoint_changes_nothing_and_names_an_intact_one(straight, tmp_path):
    run_dir = copy_run(straight, tmp_path / "run")
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # through the link: step0000010.ckpt
    before = snapshot(run_dir)
    proc = run("train.py", *BASE, "trainer.max_steps=12", "ckpt_path=last", f"hydra.run.dir={run_dir}", check=False)
    intact = next((run_dir / "checkpoints").glob("best-step*.ckpt"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: ckpt_path=last: {last} is not a readable checkpoint; the newest intact checkpoint "
        f"there is step {int(intact.stem[len('best-step') :])}: pass ckpt_path={intact} to resume from it"
    )
    assert snapshot(run_dir) == before
