"""Lightning's TQDM progress bar counting optimizer steps: `step:  40%|███    | 400/1000 [.., 3.10it/s, train/loss=..]`.

Training is step-based over an endless stream of batches (max_epochs=-1, one epoch), so Lightning's bar
showed `Epoch 0` with no total and, after a resume, the batches of this run only. This one counts
`trainer.global_step` of `trainer.max_steps` (no total when max_steps=-1, e.g. with max_time), starts a
resumed run at its step, and computes it/s from the steps this run trained (tqdm's `initial`).
"""

import time

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, _update_n


class StepProgressBar(TQDMProgressBar):
    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        bar.set_description("step", refresh=False)
        return bar

    def on_train_start(self, trainer, *_) -> None:
        super().on_train_start(trainer)
        self._count_steps(trainer)  # a resumed run does not call on_train_epoch_start for its epoch

    def on_train_epoch_start(self, trainer, *_) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self._count_steps(trainer)

    def _count_steps(self, trainer) -> None:
        """Lightning resets the bar to the epoch's batches under `Epoch N`; this sets it to steps, without
        a refresh in between (tqdm's reset would show 0 first)."""
        bar = self.train_progress_bar
        bar.total = trainer.max_steps if trainer.max_steps > 0 else None
        bar.initial = trainer.global_step
        bar.n = trainer.global_step
        bar.last_print_n = trainer.global_step
        bar.start_t = time.time()
        bar.last_print_t = bar.start_t
        bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if bar is not None and self._should_update(trainer.global_step, bar.total):
            _update_n(bar, trainer.global_step)
            bar.set_postfix(self.get_metrics(trainer, pl_module))
