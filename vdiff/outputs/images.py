"""Writes image grids to the run directory and to whichever loggers take images."""

import os

import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid, save_image


def log_grid(trainer, key: str, images: torch.Tensor, nrow: int) -> str:
    """images: (N, C, H, W) in [0, 1]. Saves <run dir>/samples/<key>_<step>.png and logs it; returns the path."""
    grid = make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=1.0)
    step = trainer.global_step
    folder = os.path.join(trainer.default_root_dir, "samples")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{key.replace('/', '_')}_{step:07d}.png")
    save_image(grid, path)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[grid], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, step)
    return path
