"""Sample-grid logging from fixed noise every N training steps (on the EMA weights during validation)."""
import math

import torch
from lightning.pytorch.callbacks import Callback

from vdiff.callbacks.images import log_grid


class SampleGrid(Callback):
    def __init__(self, every_n_steps: int = 1000, num_samples: int = 64, seed: int = 0, progress: bool = False):
        self.every_n_steps, self.num_samples, self.seed, self.progress = every_n_steps, num_samples, seed, progress
        self._last = None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or (self._last is not None and step - self._last < self.every_n_steps):
            return
        self._last = step
        if trainer.is_global_zero:
            images = sample_images(pl_module, trainer.datamodule, self.num_samples, self.seed, self.progress)
            log_grid(trainer, "samples", images, nrow=int(math.sqrt(self.num_samples)))


def sample_images(task, datamodule, n: int, seed: int, progress: bool = False, generator_device=None) -> torch.Tensor:
    """n samples in [0, 1] from fixed noise (drawn on the CPU from `seed`); labels cycle 0..K-1
    when the data is class-conditional."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *datamodule.shape), generator=g).to(task.device)
    k = getattr(datamodule, "num_classes", None)
    cond = torch.arange(n, device=task.device) % k if k else None
    was_training = task.training
    task.eval()
    try:
        gen = torch.Generator(task.device).manual_seed(seed + 1)
        return task.generate(noise, cond, gen, progress)
    finally:
        task.train(was_training)
