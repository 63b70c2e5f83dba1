"""Input vs reconstruction of fixed validation clips every N training steps, for a task that
reconstructs (a VAE, contracts.ReconstructionTask): the first `num_clips` clips of the validation
split and their reconstructions, interleaved (input i, then its reconstruction), handed to the
datamodule's `log_samples` like drawn samples (a video grid: input row above reconstruction row,
and a GIF). `max_clips` caps the count (trainer=debug sets it through sample_limits)."""

import torch
from einops import rearrange
from lightning.pytorch.callbacks import Callback

from vdiff.contracts import DataModule, ReconstructionTask, ReferenceClips, require


def interleave(inputs: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
    """(N, ...) and (N, ...) -> (2N, ...): input 0, reconstruction 0, input 1, ..."""
    return rearrange(torch.stack([inputs, recons], 1), "n two ... -> (n two) ...")


class Reconstructions(Callback):
    def __init__(self, every_n_steps: int = 1000, num_clips: int = 8, split: str = "val", max_clips: int | None = None):
        self.every_n_steps = every_n_steps
        self.num_clips = num_clips if max_clips is None else min(num_clips, max_clips)
        self.split = split
        self._last = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        require(trainer.datamodule, DataModule, "data")
        require(trainer.datamodule, ReferenceClips, "data")
        require(pl_module, ReconstructionTask, "task")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or (self._last is not None and step - self._last < self.every_n_steps):
            return
        self._last = step
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        inputs = dm.reference_clips(self.split, self.num_clips)  # [0, 1]
        recons = pl_module.reconstruct(inputs.to(pl_module.device) * 2 - 1).cpu()
        dm.log_samples(trainer, interleave(inputs, recons))
