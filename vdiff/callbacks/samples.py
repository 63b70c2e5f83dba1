"""Samples from fixed seeds every N training steps, made at the end of validation (so on the EMA
weights), and handed to the datamodule's `log_samples(trainer, samples)`: the data decides how they
are shown (an image grid, a frame grid and GIF, text), as it decides sample.py's files.

`max_samples` and `max_sampler_steps` cap the size of these samples (null: no cap). The config sets
them from the run config's `sample_limits`, which trainer=debug fills in, so a debug run draws a
handful of samples in a few steps with the task's kind of sampler (`with_max_steps`); a shrunk real
run sets them on the command line (`sample_limits.num_samples=8 sample_limits.sampler_steps=20`).
Each draw logs what it draws, with which sampler and how many steps, before it starts (with a bar
over the steps when `progress`) and its time after. The samplers stop at their next step on
SIGTERM / SIGINT (vdiff/utils/stop.py)."""

import logging
import time

from lightning.pytorch.callbacks import Callback

from vdiff.contracts import DataModule, GenerativeTask, Sampler, require
from vdiff.generate import generate

log = logging.getLogger("vdiff.samples")


class Samples(Callback):
    """Draws `num_samples` samples on rank 0 after the first validation at least `every_n_steps`
    steps after the previous one (never during the sanity check)."""

    def __init__(
        self,
        every_n_steps: int = 1000,
        num_samples: int = 64,
        seed: int = 0,
        progress: bool = False,
        max_samples: int | None = None,
        max_sampler_steps: int | None = None,
    ):
        if max_samples is not None:
            num_samples = min(num_samples, max_samples)
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.seed = seed
        self.progress = progress
        self.max_sampler_steps = max_sampler_steps
        self._last = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        require(trainer.datamodule, DataModule, "data")
        require(pl_module, GenerativeTask, "task")
        require(pl_module.sampler, Sampler, "sampler")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or (self._last is not None and step - self._last < self.every_n_steps):
            return
        self._last = step
        if not trainer.is_global_zero:
            return
        if self.max_sampler_steps is None:
            self.log_samples(trainer, pl_module)
            return
        sampler = pl_module.sampler
        pl_module.sampler = sampler.with_max_steps(self.max_sampler_steps, pl_module.schedule.num_steps)
        try:
            self.log_samples(trainer, pl_module)
        finally:
            pl_module.sampler = sampler

    def log_samples(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        settings = pl_module.sampler.settings(pl_module.schedule.num_steps)
        shown = ", ".join(f"{k} {v}" for k, v in settings.items() if v is not None)
        limits = "" if self.max_sampler_steps is not None else "; sample_limits.sampler_steps / num_samples shrink it"
        log.info(
            "step %d: drawing %d samples with %s (%s)%s",
            trainer.global_step,
            self.num_samples,
            type(pl_module.sampler).__name__,
            shown,
            limits,
        )
        start = time.perf_counter()
        samples = generate(
            pl_module,
            data_shape=dm.shape,
            n=self.num_samples,
            seed=self.seed,
            num_classes=dm.num_classes,
            progress=self.progress,
        )
        log.info("step %d: %d samples drawn in %.1f s", trainer.global_step, len(samples), time.perf_counter() - start)
        dm.log_samples(trainer, samples)
