"""Train a task: compose the config, instantiate every part, Trainer.fit (then test).

python train.py experiment=mnist_ddpm trainer=gpu trainer.max_steps=20000
python train.py -m experiment=mnist_ddpm schedule=linear,cosine
python train.py experiment=mnist_ddpm hydra.run.dir=<run dir> ckpt_path=last

The terminal's messages (vdiff's, Lightning's, warnings, the final metrics, an error's sentence) are
also written to <run dir>/train.log (configs/hydra/job_logging/vdiff.yaml).
"""

import logging

import hydra
from omegaconf import DictConfig

from vdiff.run import report_stop, setup
from vdiff.utils import stop
from vdiff.utils.checks import TRAIN, check_ranges
from vdiff.utils.cli import friendly_errors
from vdiff.utils.command_line import check_command_line
from vdiff.utils.config import check_target_keys
from vdiff.utils.help import register_help

log = logging.getLogger("vdiff.train")
register_help()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> float | None:
    logging.captureWarnings(True)  # warnings to stderr and train.log (configs/hydra/job_logging/vdiff.yaml)
    check_target_keys(cfg)  # every key of a `_target_` node is an argument it takes (a `+key` typo)
    check_ranges(cfg, TRAIN)  # every numeric value in its range (vdiff/utils/checks.py) before anything is built
    stop.install()  # sampling loops in callbacks end at their next step on SIGTERM / SIGINT
    datamodule, task, trainer, ckpt_path = setup(cfg)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    except (
        SystemExit
    ):  # Lightning ends on SIGTERM with status 0 and on a second SIGINT with 1: exit with the signal's status
        report_stop(trainer)
        stop.check()
        raise
    report_stop(trainer)  # one line: the signal, the step saved, the file, the command that resumes
    stop.check()  # a signal that came as fitting ended: no test run, a non-zero exit
    metrics = dict(trainer.callback_metrics)
    if trainer.is_global_zero:
        log.info("step %d: %s", trainer.global_step, _summary(metrics))
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update(trainer.callback_metrics)
        if trainer.is_global_zero:
            log.info("test: %s", _summary(trainer.callback_metrics))
    value = metrics.get(cfg.optimized_metric)
    return None if value is None else float(value)


def _summary(metrics: dict) -> str:
    return ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(metrics.items()) if getattr(v, "numel", lambda: 1)() == 1)


if __name__ == "__main__":
    check_command_line("train")  # an unknown key or group option: one sentence naming the closest, exit 2
    main()
