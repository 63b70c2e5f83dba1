"""sample.py's output folder checked before Hydra creates it, logs into it or saves its config.

`OutDirCheck` is a Hydra callback (sample.yaml's `hydra.callbacks`) whose run / multirun start
hooks run before Hydra touches `out_dir` (the run dir, or the sweep dir of `-m`). It refuses, in one
sentence with exit status 2:
- an out_dir that already holds files (an earlier run's samples, or an earlier sweep's job folders
  and table), unless `overwrite=true`;
- an out_dir that cannot be created or written (read-only, or a file in the way).
Hydra turns exceptions in callbacks into warnings, so the hooks exit through `friendly_errors`.

Both callbacks here (`OutDirCheck` for sample.py, `NoteRunDir` for train.py) first note whether the
folder exists yet (`vdiff.utils.cli.note_run_dir`): one that this command creates is removed again
when the command fails its start-up checks, so a retry finds the folder as it was.
"""

import os
import tempfile

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vdiff.utils.cli import friendly_errors, note_run_dir
from vdiff.utils.config import ConfigError


def check_out_dir(path: str, overwrite: bool, what: str = "run") -> None:
    """`path` is a writable folder that holds nothing yet (or `overwrite`); it is created if missing."""
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise ConfigError(
            f"out_dir={path} already holds files of an earlier {what}; pass overwrite=true to write over them "
            f"or choose another out_dir"
        )
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(
            f"out_dir={path} cannot be written ({e.strerror or type(e).__name__}); choose another out_dir"
        ) from e


class OutDirCheck(Callback):
    @friendly_errors
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)  # for the `hydra:` interpolations in out_dir
        note_run_dir(config.hydra.run.dir)
        check_out_dir(os.path.abspath(config.hydra.run.dir), config.get("overwrite", False), "run")

    @friendly_errors
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)
        note_run_dir(config.hydra.sweep.dir)
        check_out_dir(os.path.abspath(config.hydra.sweep.dir), config.get("overwrite", False), "sweep")


class NoteRunDir(Callback):
    """train.py's run dir (or sweep dir) noted before Hydra creates it; train.py checks its contents
    itself (vdiff/run.py resolve_ckpt_path), since a run dir with checkpoints is one to resume."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)
        note_run_dir(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)
        note_run_dir(config.hydra.sweep.dir)
