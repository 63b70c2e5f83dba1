"""FID of samples drawn while training, logged as `val/fid`, so a sweep can rank runs by sample
quality (`optimized_metric: val/fid`) rather than by a loss whose weighting may differ between them
(e.g. `task.min_snr_gamma`).

The measure is `vdiff.metrics.ClassifierFID` (the classifier features of sample.py's `metrics=[fid]`)
on `num_samples` samples from a fixed seed, against the same reference; the floor at the same N gives
`val/fid_ratio`, and the classifier's label spread `val/label_entropy` (bits). One ClassifierFID
serves every call, so the reference statistics are computed once per run.

When: at the end of a validation (so on the EMA weights, which the EMA callback swaps in for
validation), on rank 0, never in the sanity check, at least `every_n_steps` steps after the previous
measurement, and always at the run's last step. Lightning validates every `val_check_interval`
steps but not at `max_steps` when that is not a multiple of it; so at the last training step this
callback sets `trainer.should_stop`, which makes Lightning run the validation an early stop would
(the same path as EarlyStopping), and the FID is logged where `pl_module.log` works and reaches
`trainer.callback_metrics`, which train.py returns to the sweeper.
"""

import logging
import time

from lightning.pytorch.callbacks import Callback

from vdiff.contracts import DataModule, GenerativeTask, ReferenceImages, require
from vdiff.generate import generate
from vdiff.metrics.fid import ClassifierFID
from vdiff.samplers.base import GaussianSampler
from vdiff.samplers.continuous import ContinuousSampler
from vdiff.samplers.ddim import DDIM
from vdiff.samplers.ode import Euler
from vdiff.utils.config import ConfigError

log = logging.getLogger("vdiff.callbacks.fid")


class SampleFID(Callback):
    """`sampler_steps`: draw with a deterministic sampler of this many steps (the task sampler's
    guidance scale and clipping kept) instead of the task's sampler, e.g. to measure a DDPM-sampled
    model cheaply: DDIM on the discrete tables, Euler on the uniform grid on continuous paths. `batch_size`: samples per sampler call (64 is about twice as fast per sample as 500 on
    a CPU; raise it on a GPU)."""

    def __init__(
        self,
        every_n_steps: int = 5000,
        num_samples: int = 500,
        seed: int = 0,
        weights: str = "mnist_classifier.ckpt",
        sampler_steps: int | None = None,
        num_reference: int = 10000,
        batch_size: int = 64,
    ):
        if every_n_steps < 1 or num_samples < 2:
            raise ValueError(
                f"callbacks.sample_fid: every_n_steps={every_n_steps} must be at least 1 and "
                f"num_samples={num_samples} at least 2 (FID needs a covariance)"
            )
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.seed = seed
        self.sampler_steps = sampler_steps
        self.batch_size = batch_size
        self.metric = ClassifierFID(weights=weights, num_reference=num_reference)
        self._last = 0

    def sampler(self, pl_module):
        """The sampler the FID samples are drawn with."""
        sampler = pl_module.sampler
        if self.sampler_steps is None:
            return sampler
        kind = DDIM if pl_module.schedule.num_steps is not None else Euler
        return kind(steps=self.sampler_steps, guidance_scale=sampler.guidance_scale, clip_x0=sampler.clip_x0)

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Fail before training on data or a sampler this measure cannot use."""
        dm = trainer.datamodule
        require(dm, DataModule, "data")
        require(pl_module, GenerativeTask, "task")
        shape = dm.shape
        if not isinstance(dm, ReferenceImages) or len(shape) != 3:
            raise ConfigError(
                f"callbacks.sample_fid measures images (C, H, W) against the data's reference images; "
                f"this data's examples have shape {shape}"
            )
        if self.sampler_steps is not None:
            if not isinstance(pl_module.sampler, (GaussianSampler, ContinuousSampler)):
                raise ConfigError(
                    f"callbacks.sample_fid.sampler_steps: the task's sampler ({type(pl_module.sampler).__name__}) "
                    "is not a Gaussian one that DDIM or Euler can replace"
                )
            try:
                self.sampler(pl_module).check(pl_module.schedule.num_steps)
            except ValueError as e:
                raise ConfigError(f"callbacks.sample_fid.sampler_steps={self.sampler_steps}: {e}") from e

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 <= trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True  # Lightning then validates at this step, as after an early stop

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        step = trainer.global_step
        final = trainer.should_stop or 0 <= trainer.max_steps <= step
        if trainer.sanity_checking or (step - self._last < self.every_n_steps and not final):
            return
        self._last = step
        if not trainer.is_global_zero:
            return
        values = self.measure(trainer, pl_module)
        for name, value in values.items():
            pl_module.log(name, value, rank_zero_only=True)

    def measure(self, trainer, pl_module) -> dict[str, float]:
        """Draw the samples and return the logged values."""
        start = time.perf_counter()
        dm = trainer.datamodule
        sampler = pl_module.sampler
        pl_module.sampler = self.sampler(pl_module)
        try:
            samples = generate(
                pl_module,
                data_shape=dm.shape,
                n=self.num_samples,
                seed=self.seed,
                num_classes=dm.num_classes,
                batch_size=self.batch_size,
            )
        finally:
            pl_module.sampler = sampler
        m = self.metric(samples, dm, pl_module.device)
        log.info(
            "step %d: FID %.3f (floor %.3f at N = %d), label entropy %.2f bits, %.0f s",
            trainer.global_step,
            m["fid"],
            m["fid_floor"],
            self.num_samples,
            m["label_entropy_bits"],
            time.perf_counter() - start,
        )
        return {
            "val/fid": m["fid"],
            "val/fid_ratio": m["fid"] / m["fid_floor"],
            "val/label_entropy": m["label_entropy_bits"],
        }
