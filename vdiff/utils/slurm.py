"""`launcher=slurm` outside a SLURM cluster: one sentence and exit status 2 before any job is submitted,
rather than submitit's traceback when it runs `sbatch`. A Hydra callback (configs/launcher/slurm.yaml)
whose multirun start hook runs before the launcher is built; Hydra turns exceptions in callbacks into
warnings, so the hook exits through `friendly_errors`."""

import shutil

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vdiff.utils.cli import friendly_errors
from vdiff.utils.config import ConfigError


class SlurmCheck(Callback):
    @friendly_errors
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if shutil.which("sbatch") is None:
            raise ConfigError(
                "launcher=slurm submits each job with sbatch, which is not on this machine's PATH: run the command "
                "on a SLURM cluster's login node, or leave out launcher=slurm to run the jobs here"
            )
