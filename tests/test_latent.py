"""Latent diffusion (task=latent_diffusion): the frozen first stage, the latent scale factor, resume,
sampling from the one checkpoint, and bad input, on a tiny VAE and a tiny DiT."""

import json
import shutil

import lightning as L
import pytest
import torch
from conftest import ROOT, TINY_VAE, run
from hydra import compose, initialize_config_dir
from test_input import one_sentence

from vdiff.utils.config import build

# A DiT of width 32 and one block on the tiny VAE's 4 x 8 x 8 x 8 latents; 4 steps, validation every 2.
TINY_LDM = [
    "experiment=latent_dit",
    "model.net.hidden_size=32",
    "model.net.depth=1",
    "model.net.heads=2",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=4",
    "sampler.steps=2",
    "callbacks.progress_bar=null",
    "seed=3",
]
SCALE_MESSAGE = "latent scale factor"


def ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def untouched(run_dir) -> bool:
    """A refused run leaves no checkpoint, run config or samples: at most Hydra's log of the error."""
    return not run_dir.exists() or {p.name for p in run_dir.iterdir()} <= {"train.log"}


@pytest.fixture(scope="module")
def ldm_run(tiny_vae_ckpt, tmp_path_factory):
    """A 4-step latent_dit run whose VAE file is deleted once it has trained."""
    out = tmp_path_factory.mktemp("ldm_run")
    vae = out / "vae" / "last.ckpt"
    vae.parent.mkdir()
    shutil.copyfile(tiny_vae_ckpt, vae)
    proc = run("train.py", *TINY_LDM, f"task.first_stage.ckpt_path={vae}", f"hydra.run.dir={out / 'run'}")
    shutil.rmtree(vae.parent)
    return out / "run", proc


# --- the frozen first stage and the scale factor, in one process ---------------------------------


class FirstBatch(L.Callback):
    """Records the first training batch and the state of the task as it meets it."""

    def on_train_batch_start(self, trainer, task, batch, batch_idx):
        if batch_idx == 0:
            self.x = batch["x"].clone()
            self.vae_training = task.first_stage.training
            self.scale_before = task.scale_factor.clone()


def tiny_task(vae_ckpt):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", [*TINY_LDM, f"task.first_stage.ckpt_path={vae_ckpt}"])
    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()
    return build(cfg.task, "task"), datamodule


def test_first_stage_is_frozen_absent_from_the_optimizer_and_scales_latents_to_unit_std(tiny_vae_ckpt):
    torch.manual_seed(0)
    task, datamodule = tiny_task(tiny_vae_ckpt)
    vae_before = {k: v.clone() for k, v in task.first_stage.state_dict().items()}
    net_before = [p.detach().clone() for p in task.net.parameters()]
    assert torch.isnan(task.scale_factor)  # not estimated before the first step of a fresh run
    task.train()
    assert task.net.training and not any(m.training for m in task.first_stage.modules())
    first = FirstBatch()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[first],
    )
    trainer.fit(task, datamodule=datamodule)

    assert first.vae_training is False and torch.isnan(first.scale_before)
    for p in task.first_stage.parameters():
        assert p.grad is None and not p.requires_grad
    for k, v in task.first_stage.state_dict().items():
        assert torch.equal(v, vae_before[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(net_before, task.net.parameters()))  # the denoiser trained
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in task.net.parameters()}
    assert optimized.isdisjoint(id(p) for p in task.first_stage.parameters())

    scale = task.scale_factor.item()
    latents = task.first_stage.encode(first.x).mode()
    assert 0 < scale < float("inf")
    assert scale * latents.std().item() == pytest.approx(1.0, rel=1e-4)  # 1 / std of the first batch's latents


def test_first_stage_weights_and_scale_factor_travel_in_the_checkpoint(ldm_run, tiny_vae_ckpt):
    run_dir, proc = ldm_run
    state = ckpt(run_dir / "checkpoints" / "last.ckpt")
    vae = ckpt(tiny_vae_ckpt)["state_dict"]
    stored = {k[len("first_stage.") :]: v for k, v in state["state_dict"].items() if k.startswith("first_stage.")}
    assert stored.keys() == {k[len("net.") :] for k in vae if k.startswith("net.")}
    for k, v in stored.items():
        assert torch.equal(v, vae[f"net.{k}"]), k
    assert torch.isfinite(state["state_dict"]["scale_factor"])
    assert state["config"]["task"]["first_stage"]["net"]["_target_"] == "vdiff.models.VideoVAE"
    assert proc.stdout.count(SCALE_MESSAGE) == 1


def test_resume_keeps_the_scale_factor_and_equals_a_straight_run(ldm_run, tiny_vae_ckpt, tmp_path):
    """N/2 steps + resume + N/2 steps give the straight run's weights and scale factor; the resumed
    run reuses the stored factor rather than estimating one on its first batch."""
    straight = ckpt(ldm_run[0] / "checkpoints" / "last.ckpt")
    common = [*TINY_LDM, f"task.first_stage.ckpt_path={tiny_vae_ckpt}"]
    half = run("train.py", *common, "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'half'}")
    half_ckpt = tmp_path / "half" / "checkpoints" / "last.ckpt"
    resumed = run("train.py", *common, f"ckpt_path={half_ckpt}", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert SCALE_MESSAGE in half.stdout and SCALE_MESSAGE not in resumed.stdout
    final = ckpt(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == straight["global_step"] == 4
    assert torch.equal(final["state_dict"]["scale_factor"], ckpt(half_ckpt)["state_dict"]["scale_factor"])
    assert final["state_dict"].keys() == straight["state_dict"].keys()
    for k, v in straight["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][k], v, rtol=0, atol=0, msg=k)


def test_sample_py_needs_only_the_latent_checkpoint(ldm_run, tmp_path):
    run_dir, _ = ldm_run
    out = tmp_path / "out"
    run(
        "sample.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "num_samples=4",
        "sampler.steps=2",
        "labels=[0,1,2,3]",
        "metrics=[direction_accuracy]",
        "progress=false",
        f"out_dir={out}",
    )
    samples = torch.load(out / "samples.pt")
    assert samples.shape == (4, 1, 8, 32, 32) and samples.min() >= 0 and samples.max() <= 1
    assert (out / "samples.gif").is_file() and (out / "samples.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sampling"]["num_samples"] == 4
    assert 0 <= metrics["direction_accuracy"]["accuracy"] <= 1


def test_temporal_compression_trains_a_latent_dit_on_half_the_frames_and_decodes_full_clips(tmp_path):
    """temporal_downsample: 2 end to end: the VAE codes 8 frames as 4 latent frames, a DiT of input_size
    [4, 8, 8] trains on them, and its samples decode to 8-frame clips."""
    vae_dir = tmp_path / "vae"
    run("train.py", *TINY_VAE, "model.net.temporal_downsample=2", f"hydra.run.dir={vae_dir}")
    run_dir = tmp_path / "run"
    run(
        "train.py",
        *TINY_LDM,
        "model.net.input_size=[4,8,8]",
        f"task.first_stage.ckpt_path={vae_dir / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={run_dir}",
    )
    task_state = ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert task_state["global_step"] == 4
    out = tmp_path / "out"
    run(
        "sample.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "num_samples=2",
        "sampler.steps=2",
        "progress=false",
        f"out_dir={out}",
    )
    assert torch.load(out / "samples.pt").shape == (2, 1, 8, 32, 32)


# --- bad input: one sentence naming the key or file, exit status 2, nothing written --------------


def refused_train(tmp_path, *overrides):
    run_dir = tmp_path / "run"
    proc = run("train.py", *TINY_LDM, *overrides, f"hydra.run.dir={run_dir}", check=False)
    line = one_sentence(proc)
    assert untouched(run_dir), sorted(p.name for p in run_dir.iterdir())
    return line


def test_missing_first_stage_checkpoint_is_named(tmp_path):
    missing = tmp_path / "no_vae.ckpt"
    assert refused_train(tmp_path, f"task.first_stage.ckpt_path={missing}") == (
        f"error: task.first_stage.ckpt_path={missing}: no such file; train the VAE first "
        "(python train.py experiment=video_vae)"
    )


def test_unset_first_stage_checkpoint_is_named(tmp_path):
    assert refused_train(tmp_path, "task.first_stage.ckpt_path=null").startswith(
        "error: task.first_stage.ckpt_path is not set; pass the checkpoint of a video VAE"
    )


def test_a_checkpoint_that_is_not_a_vae_is_refused_as_first_stage(ldm_run, tmp_path):
    latent = ldm_run[0] / "checkpoints" / "last.ckpt"
    assert refused_train(tmp_path, f"task.first_stage.ckpt_path={latent}") == (
        f"error: task.first_stage.ckpt_path={latent} is not a VAE checkpoint: its network (vdiff.models.dit.DiT) "
        "lacks encode, decode or latent_shape (FirstStage, vdiff/contracts.py)"
    )


@pytest.mark.parametrize(
    "override, error",
    [
        (
            "model.net.patch_size=[1,3,3]",
            "error: model.net: input_size=[8, 8, 8] (latent T, H, W) is not divisible by patch_size=[1, 3, 3]; "
            "pick a patch size that divides the latent size",
        ),
        (
            "model.net.input_size=[4,8,8]",
            "error: model.net: cannot take the first stage's latents of shape (4, 8, 8, 8): latents of size [8, 8, 8] "
            "(T, H, W) do not match input_size=[4, 8, 8]",
        ),
        (
            "model.net.hidden_size=30",
            "error: model.net: hidden_size=30 is not divisible by heads=4",
        ),
        ("model.net.patch_size=[1,0,2]", "error: model.net.patch_size.1=0 is out of range: it must be an integer >= 1"),
        ("model.net.depth=0", "error: model.net.depth=0 is out of range: it must be an integer >= 1"),
    ],
    ids=["patch_size", "input_size", "heads", "patch_zero", "depth"],
)
def test_a_latent_shape_or_dit_size_the_denoiser_cannot_take_is_named(override, error, tiny_vae_ckpt, tmp_path):
    overrides = [f"task.first_stage.ckpt_path={tiny_vae_ckpt}", override]
    if "hidden_size" in override:
        overrides.append("model.net.heads=4")
    assert refused_train(tmp_path, *overrides) == error


def test_label_dropout_on_unconditional_data_is_named(tiny_vae_ckpt, tmp_path):
    line = refused_train(
        tmp_path,
        f"task.first_stage.ckpt_path={tiny_vae_ckpt}",
        "data=bouncing_blobs",
        "model.net.num_classes=null",
    )
    assert line == (
        "error: task.cond_drop_prob=0.1 drops class labels, but data (vdiff.data.video.BouncingBlobsDataModule) "
        "has none; set data.conditional=true (and model.net.num_classes) or task.cond_drop_prob=0"
    )


def test_labels_outside_the_directions_are_named(ldm_run, tmp_path):
    out = tmp_path / "out"
    proc = run(
        "sample.py",
        f"ckpt_path={ldm_run[0] / 'checkpoints' / 'last.ckpt'}",
        "num_samples=4",
        "sampler.steps=2",
        "labels=[5]",
        "progress=false",
        f"out_dir={out}",
        check=False,
    )
    assert one_sentence(proc) == (
        "error: labels=[5] is out of range: it must be a list of integers in 0..3, the classes of this "
        "checkpoint's data"
    )
    assert not list(out.rglob("samples.*")) and not (out / "metrics.json").exists()
