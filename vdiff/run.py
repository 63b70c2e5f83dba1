"""Turning a composed run config into a datamodule, task and Trainer (shared by train.py and the
benchmark). Everything that can fail on bad input fails here, before training writes anything."""

import copy
import glob
import logging
import os
import shlex
import signal

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from vdiff.contracts import DataModule, GenerativeTask, Network, Task, require
from vdiff.utils import stop
from vdiff.utils.cli import start_up_passed
from vdiff.utils.config import ConfigError, build, load_checkpoint, restore_datamodule

log = logging.getLogger("vdiff.run")


def checkpoint_step(path: str) -> int | None:
    """The global step stored in a checkpoint file, or None when the file is not a readable checkpoint
    (the tensors are memory-mapped, not read)."""
    for mmap in (True, False):
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except Exception:
            continue
        return ckpt.get("global_step") if isinstance(ckpt, dict) and "state_dict" in ckpt else None
    return None


def _newest(steps: dict[str, int | None]) -> str | None:
    """The intact file of the highest step; at equal steps last*.ckpt, then the most recently written."""
    intact = [p for p, s in steps.items() if s is not None]
    key = lambda p: (steps[p], os.path.basename(p).startswith("last"), os.path.getmtime(p))
    return max(intact, key=key) if intact else None


def _instead(ckpt_dir: str, steps: dict[str, int | None] | None = None) -> str:
    """`; resume from <the newest intact checkpoint> instead` for an error message, or ''."""
    if steps is None:
        files = glob.glob(os.path.join(glob.escape(ckpt_dir), "*.ckpt")) if os.path.isdir(ckpt_dir) else []
        steps = {p: checkpoint_step(p) for p in files}
    newest = _newest(steps)
    return (
        f"; the newest intact checkpoint there is step {steps[newest]}: pass ckpt_path={newest} to resume from it"
        if newest
        else ""
    )


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> tuple[str | None, dict | None]:
    """(the checkpoint file to resume, its loaded contents), or (None, None) for a fresh start. `last`
    means the newest checkpoint in this run dir's checkpoints/ by global step (else a fresh start);
    an unreadable file there fails rather than being passed over, naming the newest intact one.
    A fresh start in a run dir that already holds checkpoints is refused rather than mixing two runs' files."""
    ckpt_dir = os.path.join(output_dir, "checkpoints")
    files = sorted(glob.glob(os.path.join(glob.escape(ckpt_dir), "*.ckpt"))) if os.path.isdir(ckpt_dir) else []
    files = [p for p in files if os.path.exists(p)]  # not a `last` link whose step file is gone
    if ckpt_path is None and files:
        raise ConfigError(
            f"hydra.run.dir={output_dir} already holds checkpoints; pass ckpt_path=last to resume it or choose another hydra.run.dir"
        )
    if ckpt_path == "last":
        if not files:
            log.info("ckpt_path=last: no checkpoint in %s yet, starting fresh", ckpt_dir)
            return None, None
        steps = {p: checkpoint_step(p) for p in files}
        broken = [p for p, s in steps.items() if s is None]
        if broken:
            raise ConfigError(f"ckpt_path=last: {broken[0]} is not a readable checkpoint{_instead(ckpt_dir, steps)}")
        ckpt_path = _newest(steps)
        log.info("ckpt_path=last: resuming %s (step %d)", ckpt_path, steps[ckpt_path])
    if ckpt_path is None:
        return None, None
    try:
        return ckpt_path, load_checkpoint(ckpt_path)  # fails now, with the file named, if missing or corrupt
    except ConfigError as e:
        raise ConfigError(f"{e}{_instead(os.path.dirname(os.path.abspath(ckpt_path)))}") from e


def resume_command(output_dir: str) -> str:
    """The command line that resumes this run: its overrides, this run dir and ckpt_path=last."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("ckpt_path", "hydra.run.dir")]
    words = ["python", "train.py", *kept, f"hydra.run.dir={os.path.abspath(output_dir)}", "ckpt_path=last"]
    return " ".join(shlex.quote(w) for w in words)


def report_stop(trainer) -> None:
    """After a stop signal (SIGINT, SIGTERM) ended training: one line on the terminal and in train.log
    naming the signal, the step saved and its file, and the command that resumes the run."""
    signum = stop.received()
    if signum is None or not trainer.is_global_zero:
        return
    name = signal.Signals(signum).name
    saved = [cb.last_model_path for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    saved = [path for path in saved if path]
    if not saved or not os.path.exists(saved[0]):
        log.warning(
            "%s: training stopped at step %d; no checkpoint was saved (this run has none)", name, trainer.global_step
        )
        return
    saved_step = checkpoint_step(saved[0])
    log.warning(
        "%s: training stopped at step %d, saved in %s; resume with: %s",
        name,
        saved_step if saved_step is not None else trainer.global_step,
        saved[0],
        resume_command(
            trainer.default_root_dir if not HydraConfig.initialized() else HydraConfig.get().runtime.output_dir
        ),
    )


def save_run_config(cfg: DictConfig, output_dir: str) -> None:
    """Write <run dir>/.hydra/{config,hydra,overrides}.yaml as Hydra would (configs/hydra/default.yaml and
    configs/sample.yaml set hydra.output_subdir to null so that a command failing its start-up checks
    leaves them alone)."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.instance().cfg
    out = os.path.join(output_dir, ".hydra")
    os.makedirs(out, exist_ok=True)
    for name, node in [
        ("config.yaml", cfg),
        ("hydra.yaml", hydra_cfg),
        ("overrides.yaml", hydra_cfg.hydra.overrides.task),
    ]:
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(OmegaConf.to_yaml(node))


def check_layout(net, shape) -> None:
    """A network states the layout of one example (`example_layout`, e.g. "C T H W" for clips); the
    data's example shape must have as many dimensions."""
    layout = net.example_layout
    if len(layout.split()) != len(shape):
        raise ConfigError(
            f"model.net ({type(net).__name__}) takes examples laid out ({', '.join(layout.split())}) but the data's "
            f"examples have shape {tuple(shape)}; choose a model and a data option of the same kind"
        )


def check_sample_shape(task, shape) -> None:
    """A task that samples says what x_T is for the data's examples: its network checks that it takes
    them (the U-Net's `check_input`; a latent task's denoiser on one latent). The network's ValueError
    speaks of its own parameters; the start-up error names the key they are set under, `model.net`
    (as `build` does for the errors a network raises when it is built)."""
    if isinstance(task, GenerativeTask):
        try:
            task.sample_shape(tuple(shape))
        except ValueError as e:
            raise ConfigError(f"model.net: {e}") from e


def check_conditioning(cfg: DictConfig, datamodule) -> None:
    """Label dropout for classifier-free guidance (`task.cond_drop_prob`) needs labels: data that has classes."""
    drop_prob = OmegaConf.select(cfg, "task.cond_drop_prob", default=0.0)
    if drop_prob and not datamodule.num_classes:
        cls = type(datamodule)
        raise ConfigError(
            f"task.cond_drop_prob={drop_prob} drops class labels, but data ({cls.__module__}.{cls.__qualname__}) "
            "has none; set data.conditional=true (and model.net.num_classes) or task.cond_drop_prob=0"
        )


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
    composed = copy.deepcopy(cfg)  # written to .hydra/config.yaml as composed, once the checks below pass
    apply_batch_limit(cfg)
    ckpt_path, checkpoint = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir)
    datamodule = build(cfg.data, "data")
    require(datamodule, DataModule, "data")  # the contracts: vdiff/contracts.py
    try:
        datamodule.prepare_data()
        if checkpoint is not None:
            restore_datamodule(datamodule, checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from e
    check_conditioning(cfg, datamodule)
    with open_dict(cfg):
        cfg.data_info = datamodule.info()
    task = build(cfg.task, "task")
    require(task, Task, "task")
    require(task.net, Network, "model.net")
    check_layout(task.net, datamodule.shape)
    check_sample_shape(task, datamodule.shape)
    task.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [build(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items() if c is not None]
    callbacks += extra_callbacks or []
    loggers = [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    save_run_config(composed, cfg.paths.output_dir)
    start_up_passed()  # the run log writes what it held (vdiff/utils/cli.py RunLogHandler)
    for logger in loggers:  # the resolved run config: TensorBoard's hparams.yaml and HPARAMS tab, wandb's config
        logger.log_hyperparams(task.run_config)
    return datamodule, task, trainer, ckpt_path
