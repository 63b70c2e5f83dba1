"""Logger factories that need more than a `_target_`."""

import csv
import os
import warnings

import lightning.pytorch.loggers
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb(offline: bool | None = None, **kwargs) -> WandbLogger:
    """WandbLogger that never prompts: with no API key, no netrc entry and no WANDB_MODE it runs
    offline (files under save_dir/wandb, `wandb sync` uploads them later) and says so."""
    if offline is None:
        offline = not (_wandb_credentials() or os.environ.get("WANDB_MODE"))
        if offline:
            warnings.warn(
                "wandb: no API key and no WANDB_MODE; logging offline (run `wandb sync` later to upload)", stacklevel=2
            )
    os.makedirs(kwargs.get("save_dir", "."), exist_ok=True)
    return WandbLogger(offline=offline, **kwargs)


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv; a resumed run keeps it instead (its header
    keys are read back, so new keys still rewrite the header). The resumed run's first save drops the
    rows it logs again (those written after the checkpoint it resumed from), so re-trained steps
    replace their rows rather than repeat them."""

    def _check_log_dir_exists(self) -> None:
        self._resumed = self._fs.isfile(self.metrics_file_path)
        self._first = None
        if self._resumed:
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))

    def save(self) -> None:
        if self._resumed and self.metrics:
            self._drop_rows_logged_again()
        super().save()

    def _drop_rows_logged_again(self) -> None:
        """At the first save, drop the rows of every step after the first one this run logs; at that
        step (which may be a validation redone after the checkpoint, beside a train row that is not)
        drop, save after save, the earlier rows of the metrics this run logs there again."""
        steps = [int(m["step"]) for m in self.metrics]
        if self._first is None:
            self._first = min(steps)
        again = {
            k
            for m in self.metrics
            if int(m["step"]) == self._first
            for k, v in m.items()
            if k not in ("step", "epoch") and v is not None
        }
        if min(steps) > self._first:
            self._resumed = False
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = list(csv.DictReader(f))

        def logged_again(row) -> bool:
            step = int(float(row["step"])) if row.get("step") else -1
            return step > self._first or (step == self._first and any(row.get(k) not in (None, "") for k in again))

        kept = [r for r in rows if not logged_again(r)]
        if len(kept) < len(rows):
            with self._fs.open(self.metrics_file_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)


class CSVLogger(lightning.pytorch.loggers.CSVLogger):
    """CSVLogger whose metrics.csv survives `ckpt_path=last`: the resumed run's rows follow the first's,
    replacing those of steps it trains again. Rows are flushed to disk at every checkpoint as well as
    every `flush_logs_every_n_steps` log calls, so a killed run loses no row from before its last checkpoint."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.save()
