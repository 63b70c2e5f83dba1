"""Sample from a checkpoint: rebuild its task from the stored run config, run a sampler, write files.

    python sample.py ckpt_path=<file> sampler=ddim sampler.steps=50 num_samples=64 seed=0 out_dir=<dir>
    python sample.py ckpt_path=<file> num_samples=10000 metrics=[fid] out_dir=<dir>

    python sample.py ckpt_path=<text ckpt> sampler=unmask sampler.steps=256 num_samples=16 out_dir=<dir>
    python sample.py ckpt_path=<text ckpt> prompt="ROMEO: O, ____ me" out_dir=<dir>   # infill the _

The data decides the files: images give <out_dir>/samples.png (grid) and samples.pt ((N, C, H, W)
float in [0, 1]); videos give samples.gif, samples.png (one row per clip, one column per frame),
samples.pt ((N, C, T, H, W) in [0, 1]) and samples.mp4 when PyAV is installed; text gives
samples.txt and samples.json (token ids and text). With metrics, <out_dir>/metrics.json.
"""
import json
import logging
import os

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from vdiff.callbacks.ema import ema_weights
from vdiff.generate import generate
from vdiff.run import restore_datamodule
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
    datamodule = build(run.data, "data", **({"root": cfg.paths.data_dir} if "root" in run.data else {}))
    try:
        restore_datamodule(datamodule, ckpt)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return task, datamodule


def prompt_tokens(cfg: DictConfig, datamodule) -> torch.Tensor | None:
    """`prompt` as (num_samples, L) ids: its characters kept, its mask characters and the positions
    after it generated."""
    if cfg.prompt is None:
        return None
    if not hasattr(datamodule, "encode"):
        raise ConfigError("prompt: this checkpoint's data is not text; a prompt applies to token data only")
    try:
        ids = datamodule.encode(cfg.prompt)
    except ValueError as e:
        raise ConfigError(f"prompt: {e}") from e
    (length,) = datamodule.shape
    if len(ids) > length:
        raise ConfigError(f"prompt: {len(ids)} characters exceed the model's sequence length {length}")
    init = torch.full((length,), datamodule.mask_id, dtype=torch.long)
    init[: len(ids)] = ids
    return init.expand(cfg.num_samples, length).clone()


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
@friendly_errors
def main(cfg: DictConfig) -> None:
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples={cfg.num_samples} must be at least 1")
    task, datamodule = load_task(cfg)
    metrics = {k: build(m, f"metrics.{k}") for k, m in (cfg.get("metrics") or {}).items()}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else torch.device(cfg.device)
    task.to(device)
    init = prompt_tokens(cfg, datamodule)
    try:
        samples = generate(task, datamodule.shape, cfg.num_samples, cfg.seed, datamodule.num_classes, cfg.labels,
                           cfg.batch_size, cfg.progress, init)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    datamodule.write_samples(samples, cfg.out_dir)
    if metrics:
        results = {name: metric(samples, datamodule, device, task=task, out_dir=cfg.out_dir) for name, metric in metrics.items()}
        with open(os.path.join(cfg.out_dir, "metrics.json"), "w") as f:
            json.dump(results, f, indent=2)
        for name, r in results.items():
            log.info("%s: %s", name, {k: v for k, v in r.items() if not isinstance(v, list)})
    log.info("wrote %d samples to %s", len(samples), cfg.out_dir)


if __name__ == "__main__":
    main()
