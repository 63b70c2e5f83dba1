"""What every task shares: optimizers built from partial configs, RNG state in checkpoints, the
network with its optional torch.compile wrapper, and seeded generators for validation and test;
and what every sampling task shares: x_T's shape, the sampler call and the map to data space."""

import random

import lightning as L
import numpy as np
import torch

from vdiff.contracts import InputCheck


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Task(L.LightningModule):
    """`optimizer(params)` and `lr_scheduler(optimizer)` are partials from the config (`_partial_: true`);
    the scheduler, if any, steps every optimizer step. The global RNG state is saved with each
    checkpoint and restored at the start of resumed training, so a resumed run draws the same noise.

    `net` is the trained network and `denoiser` what the task calls: the net, or its torch.compile
    wrapper with `compile=True` (kept outside the module tree, so checkpoint keys stay `net.*`).
    `val_generator` is seeded with `val_seed` at the start of every validation and test epoch, so
    val/loss draws the same noise each time and compares checkpoints fairly."""

    def __init__(self, net, optimizer, lr_scheduler=None, compile: bool = False, val_seed: int = 0):
        super().__init__()
        self.net = net
        object.__setattr__(self, "denoiser", torch.compile(net) if compile else net)
        self.optimizer_fn = optimizer
        self.lr_scheduler_fn = lr_scheduler
        self.val_seed = val_seed
        self.val_generator: torch.Generator | None = None
        self._rng_to_restore = None
        self.run_config: dict | None = None  # the composed run config (vdiff/run.py), stored in checkpoints

    def configure_optimizers(self):
        optimizer = self.optimizer_fn([p for p in self.parameters() if p.requires_grad])  # frozen parts stay out
        if self.lr_scheduler_fn is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.lr_scheduler_fn(optimizer), "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng"] = _rng_state()
        if self.run_config is not None:
            checkpoint["config"] = self.run_config  # the composed run config, for sample.py

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("rng")

    def on_train_start(self) -> None:
        if self._rng_to_restore is not None:
            _set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_validation_epoch_start(self) -> None:
        self.val_generator = torch.Generator(self.device).manual_seed(self.val_seed)

    def on_test_epoch_start(self) -> None:
        self.val_generator = torch.Generator(self.device).manual_seed(self.val_seed)


class SamplingTask(Task):
    """A task that samples (`GenerativeTask` in vdiff/contracts.py). A subclass sets `schedule` and
    `sampler` and defines `prior(n, shape, generator)`;
    it overrides `sample_shape` when x_T is not shaped like the data (a latent space) and `to_data`
    when the sampler's output is not data (pixels in [-1, 1], latents to decode)."""

    def sample_shape(self, data_shape) -> tuple:
        """The shape of one x_T for examples of shape `data_shape`: the same here. A net that checks its
        input (`InputCheck`, vdiff/contracts.py: the U-Net) raises ValueError here when they do not fit it."""
        if isinstance(self.net, InputCheck):
            self.net.check_input(tuple(data_shape))
        return tuple(data_shape)

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """The sampler's output as data-space values: the same here (token ids)."""
        return x

    @torch.no_grad()
    def generate(self, x: torch.Tensor, cond=None, generator=None, progress: bool = False) -> torch.Tensor:
        """Data-space samples from x_T = `x`, conditioned on (B,) labels `cond` (None: unconditional)."""
        out = self.sampler(self.denoiser, self.schedule, x, cond=cond, generator=generator, progress=progress)
        return self.to_data(out)
