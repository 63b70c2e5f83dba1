"""vdiff/contracts.py: a toy dataset and network (tests/toy) added through the contracts alone train,
resume and sample; an object missing a member fails at start-up with one sentence naming it."""

import json

import pytest
import torch
from conftest import ROOT, run

from tests.toy import MLP, NoShapeDataModule, RingDataModule
from vdiff.contracts import DataModule, GenerativeTask, Network, require
from vdiff.utils.config import ConfigError

TOY = [
    f"hydra.searchpath=[file://{ROOT / 'tests' / 'toy' / 'configs'}]",
    "data=toy_ring",
    "model=toy_mlp",
    "schedule.num_steps=50",
    "sampler=ddim",
    "sampler.steps=5",
    "data.batch_size=16",
    "data.num_val=32",
    "trainer.limit_val_batches=1",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=4",
    "callbacks.progress_bar=null",
]


def test_the_toy_meets_the_contracts():
    assert isinstance(RingDataModule(), DataModule) and isinstance(MLP(), Network)
    assert not isinstance(NoShapeDataModule(), DataModule)
    with pytest.raises(
        ConfigError,
        match=r"^data \(tests\.toy\.NoShapeDataModule\) does not provide `shape`, which the "
        r"task's samplers need; see vdiff/contracts.py$",
    ):
        require(NoShapeDataModule(), DataModule, "data")
    with pytest.raises(ConfigError, match=r"^task \(tests\.toy\.MLP\) does not provide `net`, which training needs"):
        require(MLP(), GenerativeTask, "task")


def test_toy_trains_resumes_and_samples(tmp_path):
    out = tmp_path / "run"
    run("train.py", *TOY, "trainer.max_steps=2", f"hydra.run.dir={out}")
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "samples" / "step0000002" / "samples.csv").is_file()  # DataDefaults.log_samples -> write_samples
    run("train.py", *TOY, "trainer.max_steps=4", "ckpt_path=last", f"hydra.run.dir={out}")
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 4
    run(
        "sample.py",
        f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
        "num_samples=8",
        f"out_dir={tmp_path / 'samples'}",
    )
    samples = torch.load(tmp_path / "samples" / "samples.pt")
    assert samples.shape == (8, 2) and len((tmp_path / "samples" / "samples.csv").read_text().splitlines()) == 8
    record = json.loads((tmp_path / "samples" / "metrics.json").read_text())["sampling"]
    assert (record["sampler"], record["steps"], record["eta"]) == ("DDIM", 5, 0.0)


def test_a_datamodule_missing_a_member_is_named_at_start(tmp_path):
    proc = run(
        "train.py",
        *TOY,
        "data._target_=tests.toy.NoShapeDataModule",
        "trainer.max_steps=2",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert proc.returncode == 2
    assert (
        "data (tests.toy.NoShapeDataModule) does not provide `shape`, which the task's samplers need; "
        "see vdiff/contracts.py"
    ) in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
