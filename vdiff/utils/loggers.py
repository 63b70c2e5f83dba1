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
            warnings.warn("wandb: no API key and no WANDB_MODE; logging offline (run `wandb sync` later to upload)", stacklevel=2)
    os.makedirs(kwargs.get("save_dir", "."), exist_ok=True)
    return WandbLogger(offline=offline, **kwargs)


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv; a resumed run appends to it instead (its
    header keys are read back, so new keys still rewrite the header)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class CSVLogger(lightning.pytorch.loggers.CSVLogger):
    """CSVLogger whose metrics.csv survives `ckpt_path=last`: the resumed run's rows follow the first's."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
