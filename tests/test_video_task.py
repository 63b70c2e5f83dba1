"""Video through the Gaussian task: joint clip + image batches, resume, sampling to files and metrics."""

import functools
import json

import torch
from conftest import need_mnist, run

from vdiff.diffusion import LinearSchedule
from vdiff.models import VideoUNet
from vdiff.samplers.ddim import DDIM
from vdiff.tasks import GaussianDiffusion

SMALL = [
    "model.net.channels=16",
    "model.net.channel_mult=[1,2]",
    "model.net.num_res_blocks=1",
    "schedule.num_steps=20",
    "sampler.steps=4",
    "data.num_train=64",
    "data.num_val=8",
    "data.num_test=8",
    "data.eval_batch_size=8",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
    "callbacks.samples.num_samples=2",
]


def test_joint_loss_weighs_every_clip_and_image_once():
    torch.manual_seed(0)
    net = VideoUNet(
        image_size=8,
        channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        heads=2,
        groups=4,
        spatial_resolutions=(4,),
        temporal_resolutions=(8, 4),
    )
    task = GaussianDiffusion(net, LinearSchedule(20), DDIM(steps=4), functools.partial(torch.optim.SGD, lr=0.1))
    clips, images = torch.randn(3, 1, 4, 8, 8), torch.randn(5, 1, 1, 8, 8)
    joint = task.loss({"x": [clips, images]}, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the same draws, in the same order, one input at a time
    separate = (3 * task.loss({"x": clips}, g) + 5 * task.loss({"x": images}, g)) / 8
    torch.testing.assert_close(joint, separate)


def test_joint_training_resumes_exactly(tmp_path):
    need_mnist()
    common = [
        "experiment=video_vdm_joint",
        *SMALL,
        "data.batch_size=2",
        "data.image_batch_size=3",
        "callbacks.samples=null",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "seed=5",
    ]
    run("train.py", *common, f"hydra.run.dir={tmp_path / 'straight'}")
    run("train.py", *common, "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'half'}")
    run(
        "train.py",
        *common,
        f"ckpt_path={tmp_path / 'half' / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    a, b = (
        torch.load(tmp_path / d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        for d in ("straight", "resumed")
    )
    assert a["global_step"] == b["global_step"] == 4
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)


def test_video_checkpoint_samples_to_gif_grid_tensor_and_metrics(tmp_path):
    need_mnist()
    run(
        "train.py",
        "experiment=video_moving_mnist",
        *SMALL,
        "data.batch_size=2",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert sorted((tmp_path / "run" / "samples").glob("videos_*.gif")) and sorted(
        (tmp_path / "run" / "samples").glob("videos_*.png")
    )
    out = tmp_path / "out"
    run(
        "sample.py",
        f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
        "num_samples=3",
        "metrics=[temporal_consistency,motion_smoothness]",
        "seed=0",
        f"out_dir={out}",
    )
    samples = torch.load(out / "samples.pt")
    assert samples.shape == (3, 1, 8, 32, 32) and samples.min() >= 0 and samples.max() <= 1
    assert (out / "samples.gif").is_file() and (out / "samples.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["temporal_consistency"]["num_samples"] == 3 and "reference_acceleration" in metrics["motion_smoothness"]
    )
