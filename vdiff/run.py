"""Turning a composed run config into a datamodule, task and Trainer (shared by train.py and the
benchmark). Everything that can fail on bad input fails here, before training writes anything."""
import logging
import os

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from vdiff.contracts import DataModule, Network, Task, require
from vdiff.utils.config import ConfigError, build, load_checkpoint

log = logging.getLogger("vdiff.run")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """`last` means this run dir's last.ckpt when there is one (else a fresh start). A fresh start
    in a run dir that already holds checkpoints is refused rather than mixing two runs' files."""
    ckpt_dir = os.path.join(output_dir, "checkpoints")
    if ckpt_path is None and os.path.isdir(ckpt_dir) and any(f.endswith(".ckpt") for f in os.listdir(ckpt_dir)):
        raise ConfigError(f"hydra.run.dir={output_dir} already holds checkpoints; pass ckpt_path=last to resume it or choose another hydra.run.dir")
    if ckpt_path == "last":
        last = os.path.join(ckpt_dir, "last.ckpt")
        if not os.path.isfile(last):
            log.info("ckpt_path=last: no %s yet, starting fresh", last)
            return None
        ckpt_path = last
    if ckpt_path is not None:
        load_checkpoint(ckpt_path)  # fails now, with the file named, if missing or corrupt
    return ckpt_path


def restore_datamodule(datamodule, checkpoint: dict) -> None:
    """Give the datamodule the state Lightning stored in the checkpoint (a text vocabulary), so a
    mismatch with the data fails now, and sampling can decode without the data file."""
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)


def check_layout(net, shape) -> None:
    """A network states the layout of one example (`example_layout`, e.g. "C T H W" for clips); the
    data's example shape must have as many dimensions."""
    layout = net.example_layout
    if len(layout.split()) != len(shape):
        raise ConfigError(f"model.net ({type(net).__name__}) takes examples laid out ({', '.join(layout.split())}) but the data's "
                          f"examples have shape {tuple(shape)}; choose a model and a data option of the same kind")


def apply_batch_limit(cfg: DictConfig) -> None:
    """`batch_limit` (set by trainer=debug) caps the data's batch sizes, whatever the experiment chose."""
    limit = cfg.get("batch_limit")
    if limit is None:
        return
    for key in ("batch_size", "image_batch_size"):
        if cfg.data.get(key):
            cfg.data[key] = min(cfg.data[key], limit)


def setup(cfg: DictConfig, extra_callbacks: list | None = None):
    """Everything that can fail on bad input is built here, before any training starts."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    apply_batch_limit(cfg)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir)
    datamodule = build(cfg.data, "data")
    require(datamodule, DataModule, "data")  # the contracts: vdiff/contracts.py
    try:
        datamodule.prepare_data()
        if ckpt_path is not None:
            restore_datamodule(datamodule, load_checkpoint(ckpt_path))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from e
    with open_dict(cfg):
        cfg.data_info = datamodule.info()
    task = build(cfg.task, "task")
    require(task, Task, "task")
    require(task.net, Network, "model.net")
    check_layout(task.net, datamodule.shape)
    task.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [build(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items() if c is not None]
    callbacks += extra_callbacks or []
    loggers = [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    return datamodule, task, trainer, ckpt_path
