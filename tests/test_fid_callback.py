"""SampleFID: FID logged during training (at the last step whatever val_check_interval is), equal to
ClassifierFID on the same samples, and returned by train.py to an Optuna sweep over val/fid."""

import csv
import math

import pytest
import torch
import yaml
from conftest import ROOT, TINY, need_mnist, run
from hydra import compose, initialize_config_dir

from vdiff.callbacks import EMA, SampleFID
from vdiff.generate import generate
from vdiff.metrics import ClassifierFID
from vdiff.run import setup
from vdiff.samplers import DDIM
from vdiff.utils.config import ConfigError

pytestmark = pytest.mark.usefixtures("mnist_root")

# Validations at steps 2 and 4 (val_check_interval) and 5 (max_steps, not a multiple of 2); the FID
# every 4 steps: at 4, and at 5 because it is the last step.
FID = [
    "+callbacks.sample_fid._target_=vdiff.callbacks.SampleFID",
    "+callbacks.sample_fid.every_n_steps=4",
    "+callbacks.sample_fid.num_samples=16",
    "+callbacks.sample_fid.sampler_steps=2",
    "+callbacks.sample_fid.num_reference=500",
    "+callbacks.sample_fid.seed=3",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny MNIST run in this process, so the test can redraw the callback's samples."""
    need_mnist()
    out = tmp_path_factory.mktemp("fid_run")
    overrides = [
        "experiment=mnist_ddpm",
        *TINY,
        "trainer.max_steps=5",
        "callbacks.samples=null",
        *FID,
        f"paths.output_dir={out}",
        f"paths.root_dir={ROOT}",
    ]
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides)
    datamodule, task, trainer, _ = setup(cfg)
    trainer.fit(task, datamodule=datamodule)
    with open(out / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return trainer, task, datamodule, rows


def test_fid_is_logged_periodically_and_at_the_last_step(fitted):
    trainer, _, _, rows = fitted
    assert trainer.global_step == 5
    val = [r for r in rows if r["val/loss"]]
    fid = [r for r in rows if r["val/fid"]]
    assert len(val) == 3, "Lightning validates at steps 2, 4 and, asked by the callback, 5"
    assert len(fid) == 2 and fid[-1] is val[-1]
    for r in fid:
        assert (
            float(r["val/fid"]) > 0
            and float(r["val/fid_ratio"]) > 0
            and 0 <= float(r["val/label_entropy"]) <= math.log2(10)
        )
    assert float(trainer.callback_metrics["val/fid"]) == pytest.approx(float(fid[-1]["val/fid"]), rel=1e-6)


def test_logged_fid_equals_classifier_fid_on_the_same_samples(fitted):
    trainer, task, datamodule, _ = fitted
    ema = next(c for c in trainer.callbacks if isinstance(c, EMA))
    ema.swap(task)  # validation measured on the EMA weights
    try:
        task.sampler = DDIM(steps=2)
        samples = generate(task, data_shape=datamodule.shape, n=16, seed=3)
    finally:
        ema.swap(task)
    expected = ClassifierFID(num_reference=500)(samples, datamodule, task.device)
    logged = trainer.callback_metrics
    assert float(logged["val/fid"]) == pytest.approx(expected["fid"], rel=1e-6, abs=1e-4)
    assert float(logged["val/fid_ratio"]) == pytest.approx(expected["fid"] / expected["fid_floor"], rel=1e-5)
    assert float(logged["val/label_entropy"]) == pytest.approx(expected["label_entropy_bits"], abs=1e-5)


def test_classifier_fid_keeps_its_reference_between_calls(fitted):
    _, _, datamodule, _ = fitted
    metric = ClassifierFID(num_reference=300)
    x = datamodule.reference_images("val", 32)
    first = metric(x, datamodule, "cpu")
    reference = metric._fid.real_features_sum.clone()
    metric(x[:16], datamodule, "cpu")
    assert torch.equal(metric._fid.real_features_sum, reference)
    assert metric(x, datamodule, "cpu") == first == ClassifierFID(num_reference=300)(x, datamodule, "cpu")


def test_sampler_steps_beyond_the_schedule_fail_before_training(fitted):
    trainer, task, _, _ = fitted
    with pytest.raises(ConfigError, match="callbacks.sample_fid.sampler_steps=80"):
        SampleFID(sampler_steps=80).setup(trainer, task, "fit")  # schedule.num_steps=50


def test_sampler_steps_swap_in_euler_on_continuous_paths():
    """DDIM needs a table; on flow and EDM the cheap deterministic sampler is Euler on the uniform grid."""
    from types import SimpleNamespace

    from vdiff.diffusion import EDMSchedule, FlowSchedule, LinearSchedule
    from vdiff.samplers import DPMSolverPP2M, Euler

    task_sampler = DPMSolverPP2M(steps=20, guidance_scale=2.0, clip_x0=False)
    for schedule, kind in [(FlowSchedule(), Euler), (EDMSchedule(), Euler), (LinearSchedule(50), DDIM)]:
        swapped = SampleFID(sampler_steps=3).sampler(SimpleNamespace(sampler=task_sampler, schedule=schedule))
        assert type(swapped) is kind and swapped.steps == 3
        assert swapped.guidance_scale == 2.0 and swapped.clip_x0 is False
        if kind is Euler:
            assert swapped.grid == "uniform" and len(swapped.times(schedule)) == 4


def test_optuna_sweep_minimises_val_fid(tmp_path):
    """Two tiny trials of the CPU search; each returns its last-step FID (about 20 s of CPU)."""
    run(
        "train.py",
        "-m",
        "experiment=mnist_ddpm_cpu",
        "hparams_search=mnist_cpu_optuna",
        "schedule.num_steps=50",
        "data.eval_batch_size=16",
        "trainer.limit_val_batches=1",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "callbacks.sample_fid.num_samples=16",
        "callbacks.sample_fid.sampler_steps=2",
        "+callbacks.sample_fid.num_reference=500",
        "callbacks.samples=null",
        "callbacks.progress_bar=null",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={tmp_path}",
    )
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert math.isfinite(result["best_value"]) and result["best_value"] > 0
    assert set(result["best_params"]) == {
        "task.optimizer.lr",
        "data.batch_size",
        "task.min_snr_gamma",
        "callbacks.ema.decay",
        "model.net.channels",
    }
    logged = []
    for trial in sorted(p for p in tmp_path.iterdir() if (p / ".hydra").is_dir()):
        with open(trial / "csv" / "metrics.csv") as f:
            logged += [float(r["val/fid"]) for r in csv.DictReader(f) if r["val/fid"]]
    assert len(logged) == 2 and result["best_value"] == pytest.approx(min(logged), rel=1e-6)
