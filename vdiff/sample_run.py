"""What sample.py does with a checkpoint, step by step: rebuild its task (with the sampler chosen on
the command line) and datamodule, check the request against them (metrics, labels, prompt) before
any sampling, then draw samples, or reconstruct real examples for a task that reconstructs (a VAE).
sample.py's `main` calls these in order and writes the files and metrics.json.
"""

import logging
import os
import time

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from vdiff.callbacks.reconstructions import interleave
from vdiff.contracts import (
    DataModule,
    GenerativeTask,
    LabelNames,
    Metric,
    ReconstructionTask,
    ReferenceClips,
    ReferenceLabels,
    Sampler,
    TokenData,
    require,
)
from vdiff.generate import class_labels, generate
from vdiff.tasks.autoencoder import psnr
from vdiff.utils.checks import SAMPLER, check_ranges
from vdiff.utils.config import ConfigError, build, close_names, ema_weights, load_checkpoint, restore_datamodule
from vdiff.utils.sampling import check_sampler_keys, sampler_changes, sampler_config, sampling_record

log = logging.getLogger("vdiff.sample")


def load_task(cfg: DictConfig):
    """The checkpoint's task with its (EMA) weights, the sampler chosen here, its datamodule, and what the
    sampler changed from the checkpoint's (`sampler_changes`)."""
    ckpt = load_checkpoint(cfg.ckpt_path)
    if "config" not in ckpt:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: the checkpoint carries no run config (it was not written by train.py)"
        )
    run = OmegaConf.create(ckpt["config"])
    if "sampler" not in run.task and cfg.get("sampler"):
        raise ConfigError(
            f"sampler: this checkpoint's task ({run.task._target_}) has no sampler; it reconstructs real examples"
        )
    command_line = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    explicit = frozenset(o.split("=", 1)[0].lstrip("+~").removeprefix("sampler.") for o in command_line)
    sampler = sampler_config(run.task.get("sampler"), cfg.get("sampler"), explicit=explicit)
    changes = sampler_changes(run.task.get("sampler"), sampler, command_line)
    overrides = {"compile": False}
    if sampler is not None:
        check_sampler_keys(sampler)
        check_ranges(OmegaConf.create({"sampler": sampler, "schedule": run.get("schedule")}), SAMPLER)
        overrides["sampler"] = build(sampler, "sampler")
    task = build(run.task, "task", **overrides)
    if not isinstance(task, ReconstructionTask):  # a VAE reconstructs; every other task samples
        require(task, GenerativeTask, "task")  # the contracts: vdiff/contracts.py
        require(task.sampler, Sampler, "sampler")
        if cfg.get("max_sampler_steps") is not None:  # a smoke run: the same kind of sampler, fewer steps
            task.sampler = task.sampler.with_max_steps(cfg.max_sampler_steps, task.schedule.num_steps)
    state = dict(ckpt["state_dict"])
    ema = ema_weights(ckpt) if cfg.use_ema else None
    if cfg.use_ema and ema is None:
        log.warning("use_ema=true but %s holds no EMA weights; using the trained weights", cfg.ckpt_path)
    state.update(ema or {})
    task.load_state_dict(state)
    datamodule = build(run.data, "data", **data_root(run, cfg))
    require(datamodule, DataModule, "data")
    try:
        restore_datamodule(datamodule, ckpt)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return task, datamodule, changes


def data_root(run: DictConfig, cfg: DictConfig) -> dict:
    """The data's root here: a checkpoint whose data lay under its run's data dir (`paths.data_dir`, the
    bundled datasets) reads them under this command's; one trained on a folder of the user's own
    (`data.root=<dir>`) reads that folder."""
    if "root" not in run.data:
        return {}
    stored_root, stored_data_dir = run.data.get("root"), OmegaConf.select(run, "paths.data_dir")
    return {"root": cfg.paths.data_dir} if stored_root == stored_data_dir else {}


def example_shape(cfg: DictConfig, datamodule) -> tuple:
    """The shape of one sample's data: the datamodule's, or (`length`,) for token data."""
    if cfg.get("length") is None:
        return tuple(datamodule.shape)
    if not isinstance(datamodule, TokenData):
        raise ConfigError("length: this checkpoint's data is not text; a length applies to token data only")
    return (int(cfg.length),)


def check_length(cfg: DictConfig, datamodule, task) -> None:
    """`length` fits the task (a multiple of its block size; within the context of a task that cannot
    go past it), checked before sampling, with or without a prompt."""
    if cfg.get("length") is not None:
        try:
            task.sample_shape(example_shape(cfg, datamodule))
        except ValueError as e:
            raise ConfigError(str(e)) from e


def prompt_tokens(cfg: DictConfig, datamodule) -> torch.Tensor | None:
    """`prompt` as (num_samples, L) ids: its characters kept, its mask characters and the positions
    after it generated."""
    if cfg.prompt is None:
        return None
    if not isinstance(datamodule, TokenData):
        raise ConfigError("prompt: this checkpoint's data is not text; a prompt applies to token data only")
    try:
        ids = datamodule.encode(cfg.prompt)
    except ValueError as e:
        raise ConfigError(f"prompt: {e}") from e
    (length,) = example_shape(cfg, datamodule)
    if len(ids) > length:
        raise ConfigError(f"prompt: {len(ids)} characters exceed the sample length {length}")
    init = torch.full((length,), datamodule.mask_id, dtype=torch.long)
    init[: len(ids)] = ids
    return init.expand(cfg.num_samples, length).clone()


def build_metrics(cfg: DictConfig, datamodule, task) -> dict:
    """The chosen metrics, failing now, before sampling, when one cannot measure this checkpoint:
    its examples are laid out otherwise (`example_layout`: images, clips, token sequences), it
    compares samples with their requested class (`needs_labels`) and the data has no classes, it
    cannot measure this task (`check_checkpoint`: a token metric on an image model), or the data
    files it reads are missing or corrupt."""
    metrics = {k: build(m, f"metrics.{k}") for k, m in (cfg.get("metrics") or {}).items()}
    for name, metric in metrics.items():
        require(metric, Metric, f"metrics.{name}")
        layout = metric.example_layout
        if layout is not None and len(layout.split()) != len(datamodule.shape):
            raise ConfigError(
                f"metrics.{name} measures examples laid out ({', '.join(layout.split())}) but this checkpoint's "
                f"examples have shape {tuple(datamodule.shape)}; choose a metric for its kind of data"
            )
        if metric.needs_labels and not datamodule.num_classes:
            raise ConfigError(
                f"metrics.{name} needs class-conditional samples, but this checkpoint's data has no classes"
            )
        metric.check_checkpoint(task, datamodule)
    if metrics:
        try:
            datamodule.prepare_data()
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(str(e)) from e
    return metrics


def check_labels(cfg: DictConfig, datamodule) -> None:
    """`labels` (the classes to draw, cycled) must be classes of the checkpoint's data: integers in
    0..K-1, or, for data whose classes have names (`LabelNames`: class folders, CIFAR-10), those names,
    which are turned into their indices here. Checked before sampling, so a typo costs no sampling time."""
    labels = cfg.get("labels")
    num_classes = datamodule.num_classes
    if labels is None or not num_classes:
        return
    values = list(labels) if isinstance(labels, ListConfig) else [labels]
    names = datamodule.label_names() if isinstance(datamodule, LabelNames) else None
    if names and any(isinstance(v, str) for v in values):
        unknown = [v for v in values if isinstance(v, str) and v not in names]
        if unknown:
            raise ConfigError(
                f"labels: {unknown[0]!r} is not a class of this checkpoint's data{close_names(str(unknown[0]), names)} "
                f"(its classes: {', '.join(names)})"
            )
        values = [names.index(v) if isinstance(v, str) else v for v in values]
        with open_dict(cfg):
            cfg.labels = values
    valid = all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_classes for v in values)
    if not values or not valid:
        shown = f"[{','.join(str(v) for v in values)}]" if isinstance(labels, ListConfig) else labels
        raise ConfigError(
            f"labels={shown} is out of range: it must be a list of integers in 0..{num_classes - 1}, "
            "the classes of this checkpoint's data" + (f", or their names ({', '.join(names)})" if names else "")
        )


def draw(
    cfg: DictConfig, task, datamodule, init: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """(samples, their requested labels or None, the `sampling` block of metrics.json); `init` is
    `prompt_tokens`' (the prompt to infill) or None."""
    try:
        labels = class_labels(cfg.num_samples, datamodule.num_classes, cfg.labels)
        start = time.perf_counter()
        samples = generate(
            task,
            data_shape=example_shape(cfg, datamodule),
            n=cfg.num_samples,
            seed=cfg.seed,
            num_classes=datamodule.num_classes,
            labels=cfg.labels,
            batch_size=cfg.batch_size,
            progress=cfg.progress,
            init=init,
        )
        seconds = time.perf_counter() - start
    except ValueError as e:
        raise ConfigError(str(e)) from e
    record = sampling_record(task, seconds=seconds, num_samples=len(samples), ckpt_path=cfg.ckpt_path, seed=cfg.seed)
    return samples, labels, record


@torch.no_grad()
def reconstruct(cfg: DictConfig, task, datamodule, out_dir: str) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """A reconstructing task (a VAE): the first num_samples real examples of `reconstruct_split` through
    it. Returns (reconstructions, the examples' true labels or None, the `reconstruction` block of
    metrics.json: MSE and PSNR on [0, 1] pixels); <out_dir>/comparison/ holds input i above its
    reconstruction, written like samples."""
    require(datamodule, ReferenceClips, "data")
    split = cfg.reconstruct_split
    inputs = datamodule.reference_clips(split, cfg.num_samples)  # [0, 1]
    was_training = task.training
    task.eval()
    start = time.perf_counter()
    try:
        recons = torch.cat([task.reconstruct(x.to(task.device) * 2 - 1).cpu() for x in inputs.split(cfg.batch_size)])
    finally:
        task.train(was_training)
    seconds = time.perf_counter() - start
    labels = None
    if datamodule.num_classes and isinstance(datamodule, ReferenceLabels):
        labels = datamodule.reference_labels(split, cfg.num_samples)
    datamodule.write_samples(interleave(inputs, recons), os.path.join(out_dir, "comparison"))
    mse = float((recons - inputs).pow(2).mean())
    record = {
        "task": type(task).__name__,
        "split": split,
        "num_samples": len(recons),
        "mse": mse,
        "psnr": psnr(mse),
        "seconds": seconds,
        "seconds_per_sample": seconds / len(recons),
        "ckpt_path": cfg.ckpt_path,
    }
    return recons, labels, record


def pick_device(cfg: DictConfig) -> torch.device:
    """`device`: cuda when available for `auto`, else the named device."""
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)
