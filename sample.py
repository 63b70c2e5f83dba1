"""Sample from a checkpoint: rebuild its task from the stored run config, run a sampler, write files.

    python sample.py ckpt_path=<file> sampler=ddim sampler.steps=50 num_samples=64 seed=0 out_dir=<dir>
    python sample.py ckpt_path=<file> num_samples=10000 metrics=[fid] out_dir=<dir>

Writes <out_dir>/samples.png (grid), <out_dir>/samples.pt ((N, C, H, W) float in [0, 1]) and, with
metrics, <out_dir>/metrics.json.
"""
import json
import logging
import math
import os

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from vdiff.callbacks.ema import ema_weights
from vdiff.generate import generate
from vdiff.utils.cli import friendly_errors
from vdiff.utils.config import ConfigError, build, load_checkpoint

log = logging.getLogger("vdiff.sample")


def load_task(cfg: DictConfig):
    """The checkpoint's task with its (EMA) weights, the sampler chosen here, and its datamodule."""
    ckpt = load_checkpoint(cfg.ckpt_path)
    if "config" not in ckpt:
        raise ConfigError(f"ckpt_path={cfg.ckpt_path}: the checkpoint carries no run config (it was not written by train.py)")
    run = OmegaConf.create(ckpt["config"])
    overrides = {"compile": False}
    if cfg.get("sampler") is not None:
        overrides["sampler"] = build(cfg.sampler, "sampler")
    task = build(run.task, "task", **overrides)
    state = dict(ckpt["state_dict"])
    ema = ema_weights(ckpt) if cfg.use_ema else None
    if cfg.use_ema and ema is None:
        log.warning("use_ema=true but %s holds no EMA weights; using the trained weights", cfg.ckpt_path)
    state.update(ema or {})
    task.load_state_dict(state)
    datamodule = build(run.data, "data", root=cfg.paths.data_dir)
    return task, datamodule


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
@friendly_errors
def main(cfg: DictConfig) -> None:
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples={cfg.num_samples} must be at least 1")
    task, datamodule = load_task(cfg)
    metrics = {k: build(m, f"metrics.{k}") for k, m in (cfg.get("metrics") or {}).items()}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else torch.device(cfg.device)
    task.to(device)
    try:
        samples = generate(task, datamodule.shape, cfg.num_samples, cfg.seed, datamodule.num_classes, cfg.labels, cfg.batch_size, cfg.progress)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    os.makedirs(cfg.out_dir, exist_ok=True)
    torch.save(samples, os.path.join(cfg.out_dir, "samples.pt"))
    grid = samples[:256]
    save_image(grid, os.path.join(cfg.out_dir, "samples.png"), nrow=int(math.ceil(math.sqrt(len(grid)))), padding=2, pad_value=1.0)
    if metrics:
        results = {name: metric(samples, datamodule, device) for name, metric in metrics.items()}
        with open(os.path.join(cfg.out_dir, "metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        for name, r in results.items():
            log.info("%s: %s", name, {k: v for k, v in r.items() if not isinstance(v, list)})
    log.info("wrote %d samples to %s", len(samples), cfg.out_dir)


if __name__ == "__main__":
    main()
