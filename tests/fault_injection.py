"""Callbacks that inject faults into a train.py run (tests put this directory on PYTHONPATH):
`+callbacks.fault._target_=fault_injection.SignalAt +callbacks.fault.step=7 +callbacks.fault.signum=9`."""

import os

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Send the process signal `signum` at training step `step`: in the middle of the step (after its
    backward, before its update), or at the start of the validation that follows it (`during: validation`)."""

    def __init__(self, step: int, signum: int, during: str = "step"):
        self.step, self.signum, self.during = step, signum, during

    def _fire(self, trainer, during: str) -> None:
        if during == self.during and trainer.global_step == self.step and not trainer.sanity_checking:
            os.kill(os.getpid(), self.signum)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._fire(trainer, "step")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._fire(trainer, "validation")


class WarnAtStart(Callback):
    """Issue a Lightning warning (rank_zero_warn, a Python UserWarning) when training starts."""

    def on_train_start(self, trainer, pl_module) -> None:
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn("injected warning for the run log")
