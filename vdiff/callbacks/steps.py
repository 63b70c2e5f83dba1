"""Logged rows numbered as the checkpoints are.

A row's `step` is the number of optimizer steps done when it was logged: the `trainer.global_step` that
names the checkpoint saved then. The train loss of the batch of update N, the learning rate of update N
and the validation of the weights after update N are all in rows of step N, beside `step000000N.ckpt`;
`log_every_n_steps: 50` gives rows 50, 100, ... Lightning numbers rows by the batches stepped before the
current one (N - 1 for update N); its logger connector takes a logged metric named `step` as the row's
step instead (the mechanism Lightning documents for a custom x-axis), which `StepNumbering` logs.
`LearningRateMonitor` logs the rates through the module too, so they share the train row of their
step rather than a row of their own numbered by Lightning. The sample callbacks' images already use
`trainer.global_step`.
"""

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks import LearningRateMonitor as _LearningRateMonitor


class StepNumbering(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pl_module.log("step", float(trainer.global_step + 1), on_step=True, on_epoch=False, batch_size=1)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            pl_module.log("step", float(trainer.global_step), on_epoch=True, sync_dist=True, batch_size=1)


class LearningRateMonitor(_LearningRateMonitor):
    """Lightning's, with each step's rates logged through the module (in the train row of that step)."""

    def on_train_batch_start(self, trainer, pl_module, *args, **kwargs) -> None:
        if self.logging_interval == "epoch" or not trainer._logger_connector.should_update_logs:
            return
        for key, value in self._extract_stats(trainer, "step" if self.logging_interval is None else "any").items():
            pl_module.log(key, float(value), on_step=True, on_epoch=False, batch_size=1)
