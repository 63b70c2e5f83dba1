"""Video samples drawn while training (a video datamodule's `log_samples`): clips (N, C, T, H, W)
in [0, 1] written as <run dir>/samples/<key>_<step>.png (one row per clip, one column per frame, up
to 16 clips) and <key>_<step>.gif (looping, the clips side by side), the grid sent to TensorBoard /
wandb as an image and the GIF to wandb as a video."""

import logging
import os

import torch
from einops import rearrange
from lightning.pytorch.loggers import WandbLogger

from vdiff.outputs.files import MAX_CLIPS, video_frames, write_gif
from vdiff.outputs.images import log_grid

log = logging.getLogger(__name__)


def log_video(trainer, clips: torch.Tensor, key: str = "videos", fps: int = 4) -> str:
    """Logs the first MAX_CLIPS clips; returns the GIF's path."""
    clips = clips[:MAX_CLIPS]
    step = trainer.global_step
    log_grid(trainer, key, rearrange(clips, "n c t h w -> (n t) c h w"), nrow=clips.shape[2])
    path = os.path.join(trainer.default_root_dir, "samples", f"{key.replace('/', '_')}_{step:07d}.gif")
    write_gif(video_frames(clips), path, fps)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            log_wandb_video(logger, key=f"{key}_gif", path=path, step=step)
    return path


def log_wandb_video(logger: WandbLogger, key: str, path: str, step: int) -> None:
    """The GIF file as a wandb.Video (a file path needs no moviepy); offline runs keep it in their
    run folder. A failure is logged, not raised: samples must not end a training run."""
    try:
        import wandb

        logger.log_metrics({key: wandb.Video(path, format="gif")}, step=step)
    except Exception as e:  # wandb absent or refusing the file
        log.warning("could not log %s to wandb: %s", path, e)
