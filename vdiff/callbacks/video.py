"""Video samples every N training steps: `num_samples` clips (N, C, T, H, W) in [0, 1] from fixed
seeds, written as <run dir>/samples/<key>_<step>.png (one row per clip, one column per frame, up to
16 clips) and <key>_<step>.gif (looping, the clips side by side), the grid sent to TensorBoard /
wandb as an image and the GIF to wandb as a video."""
import logging
import os

from einops import rearrange
from lightning.pytorch.loggers import WandbLogger

from vdiff.callbacks.images import log_grid
from vdiff.callbacks.samples import PeriodicSamples
from vdiff.generate import generate
from vdiff.outputs import MAX_CLIPS, video_frames, write_gif

log = logging.getLogger(__name__)


class VideoSamples(PeriodicSamples):
    def __init__(self, every_n_steps: int = 1000, num_samples: int = 16, seed: int = 0, progress: bool = False,
                 key: str = "videos", fps: int = 4, max_samples: int | None = None, max_sampler_steps: int | None = None):
        super().__init__(every_n_steps=every_n_steps, num_samples=num_samples, seed=seed, progress=progress,
                         max_samples=max_samples, max_sampler_steps=max_sampler_steps)
        self.key, self.fps = key, fps

    def log_samples(self, trainer, pl_module) -> None:
        dm, step = trainer.datamodule, trainer.global_step
        clips = generate(pl_module, dm.shape, self.num_samples, self.seed, dm.num_classes, progress=self.progress)[:MAX_CLIPS]
        log_grid(trainer, self.key, rearrange(clips, "n c t h w -> (n t) c h w"), nrow=clips.shape[2])
        path = os.path.join(trainer.default_root_dir, "samples", f"{self.key.replace('/', '_')}_{step:07d}.gif")
        write_gif(video_frames(clips), path, self.fps)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                log_wandb_video(logger, f"{self.key}_gif", path, step)


def log_wandb_video(logger: WandbLogger, key: str, path: str, step: int) -> None:
    """The GIF file as a wandb.Video (a file path needs no moviepy); offline runs keep it in their
    run folder. A failure is logged, not raised: samples must not end a training run."""
    try:
        import wandb

        logger.log_metrics({key: wandb.Video(path, format="gif")}, step=step)
    except Exception as e:  # wandb absent or refusing the file
        log.warning("could not log %s to wandb: %s", path, e)
