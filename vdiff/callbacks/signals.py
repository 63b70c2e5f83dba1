"""SIGINT while training stops the run the way SIGTERM does: after the step in progress.

Python turns SIGINT into a KeyboardInterrupt wherever the interpreter happens to be, possibly between
an optimizer step and the step counter, and Lightning then exits without a checkpoint. From the start
of training the first SIGINT is only recorded (`vdiff.utils.stop.defer`); after the current step this
callback sets `trainer.should_stop` (on every rank when any rank got it), so the run ends as if
`max_steps` were reached and the checkpoint callback writes last.ckpt at this step. A sampling loop
in progress stops at its next step. A second SIGINT interrupts at once, as usual.
"""

import signal

from lightning.pytorch.callbacks import Callback

from vdiff.utils import stop


class StopOnSignal(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        stop.defer(signal.SIGINT)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.strategy.reduce_boolean_decision(stop.received() is not None, all=False):
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        stop.defer()

    def on_exception(self, trainer, pl_module, exception) -> None:
        stop.defer()
