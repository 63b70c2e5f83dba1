"""vdiff/contracts.py: a toy dataset and network (tests/toy) added through the contracts alone train,
resume and sample; an object missing a member fails at start-up with one sentence naming it; a task
whose x_T has another shape than the data samples through `generate` unchanged."""

import json

import pytest
import torch
from conftest import ROOT, run

from tests.toy import MLP, NoShapeDataModule, RingDataModule
from vdiff.contracts import DataModule, GenerativeTask, Network, require
from vdiff.diffusion import LinearSchedule
from vdiff.generate import generate
from vdiff.models import UNetTiny
from vdiff.samplers import DDIM
from vdiff.tasks import GaussianDiffusion
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


def test_the_toy_writes_points_in_its_own_coordinates(tmp_path):
    # the task hands (x + 1) / 2; the files hold the ring's (x, y) back in [-1, 1]
    paths = RingDataModule().write_samples(torch.tensor([[0.85, 0.5], [0.5, 0.15]]), str(tmp_path))
    assert (tmp_path / "samples.csv").read_text().splitlines() == ["0.7000,0.0000", "0.0000,-0.7000"]
    assert torch.allclose(torch.load(paths[0]), torch.tensor([[0.7, 0.0], [0.0, -0.7]]))


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


class HalfSizeLatents(GaussianDiffusion):
    """A task whose x_T lives in a space of another shape (a stand-in for a VAE latent): half the
    data's height and width, mapped to data space by nearest upsampling."""

    def sample_shape(self, data_shape) -> tuple:
        channels, height, width = data_shape
        return (channels, height // 2, width // 2)

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        return super().to_data(torch.nn.functional.interpolate(x, scale_factor=2.0))


def test_generate_asks_the_task_for_the_shape_of_x_T_and_gets_data_space_samples():
    net = UNetTiny(num_classes=3).eval()
    task = HalfSizeLatents(net, LinearSchedule(10), DDIM(2), optimizer=None)
    require(task, GenerativeTask, "task")
    seen = []
    task.net.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    samples = generate(task, data_shape=(1, 32, 32), n=5, seed=0, num_classes=3, batch_size=4)
    assert samples.shape == (5, 1, 32, 32) and samples.min() >= 0 and samples.max() <= 1
    assert set(seen) == {(4, 1, 16, 16), (1, 1, 16, 16)}  # the net runs on x_T's shape, in batches
