"""Train a task: compose the config, instantiate every part, Trainer.fit (then test).

python train.py experiment=mnist_ddpm trainer=gpu trainer.max_steps=20000
python train.py -m experiment=mnist_ddpm schedule=linear,cosine
python train.py experiment=mnist_ddpm hydra.run.dir=<run dir> ckpt_path=last
"""

import hydra
from omegaconf import DictConfig

from vdiff.run import setup
from vdiff.utils import stop
from vdiff.utils.checks import TRAIN, check_ranges
from vdiff.utils.cli import friendly_errors


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> float | None:
    check_ranges(cfg, TRAIN)  # every numeric value in its range (vdiff/utils/checks.py) before anything is built
    stop.install()  # sampling loops in callbacks end at their next step on SIGTERM / SIGINT
    datamodule, task, trainer, ckpt_path = setup(cfg)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    except (
        SystemExit
    ):  # Lightning ends on SIGTERM with status 0 and on a second SIGINT with 1: exit with the signal's status
        stop.check()
        raise
    stop.check()  # a signal that came as fitting ended: no test run, a non-zero exit
    metrics = dict(trainer.callback_metrics)
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update(trainer.callback_metrics)
    value = metrics.get(cfg.optimized_metric)
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
