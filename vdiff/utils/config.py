"""Building objects from config nodes with errors that name the config key, and start-up checks.

Every start-up failure is a `ConfigError`: the entry points print its one sentence and exit with
status 2, before anything in the run directory is written or overwritten. A fault during training is
a `RunFault`: one sentence, exit status 3.
"""

import difflib
import inspect
import os
import re

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf


class ConfigError(Exception):
    """A bad config value or input file, described in one sentence that names the key or file."""


class RunFault(Exception):
    """A fault that ended training (a diverged loss, a checkpoint that would hold NaN), described in one
    sentence that names the step; the entry points print it and exit with status 3."""


def _root_cause(e: BaseException) -> BaseException:
    while isinstance(e, InstantiationException) and e.__cause__ is not None:
        e = e.__cause__
    return e


def build(node: DictConfig, key: str, **kwargs):
    """instantiate(node) where `key` is the node's config path. Children given as interpolations of
    other groups (`net: ${model.net}`) are built first under their own key, so a bad value in them
    is reported as e.g. `model.net`, not as the parent."""
    for name in list(node.keys()):
        if name not in kwargs and OmegaConf.is_interpolation(node, name):
            child = node[name]
            if isinstance(child, DictConfig) and "_target_" in child:
                source = node._get_node(name)._value().strip("${}")
                kwargs[name] = build(child, source)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = _root_cause(e)
        sub = re.search(r"full_key: (\S+)", str(e))
        where = f"{key}.{sub.group(1)}" if sub and not sub.group(1).startswith(key) else (sub.group(1) if sub else key)
        raise ConfigError(_naming(where, cause)) from e
    except (ValueError, TypeError) as e:
        raise ConfigError(_naming(key, e)) from e


def _naming(key: str, error: BaseException) -> str:
    """The error's sentence prefixed with the key it came from, unless it names that key already
    (`model.net.input_size=... is not divisible ...` stays as it is)."""
    message = str(error)
    if re.match(rf"{re.escape(key)}[.=\s]", message):
        return message
    return f"{key}: {message}"


def load_checkpoint(path: str, key: str = "ckpt_path") -> dict:
    """Load a checkpoint file on the CPU, or raise ConfigError naming the key and file."""
    if not os.path.isfile(path):
        raise ConfigError(f"{key}={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"{key}={path}: not a readable checkpoint ({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{key}={path}: not a Lightning checkpoint (no state_dict)")
    return upgrade_stored_config(ckpt)


def upgrade_stored_config(ckpt: dict) -> dict:
    """The run config a checkpoint stores, brought to today's form, so that a checkpoint written before a
    change rebuilds and samples as it did. Latent diffusion (a task with a `first_stage`) used to turn its
    sampler's clip_x0 off itself, whatever the config said; it now takes clip_x0 from the config and
    refuses true, so a stored clip_x0: true is read as the false it acted as."""
    config = ckpt.get("config") or {}
    if "first_stage" in (config.get("task") or {}):
        for sampler in (config["task"].get("sampler"), config.get("sampler")):
            if sampler and sampler.get("clip_x0"):
                sampler["clip_x0"] = False
    return ckpt


def close_names(name: str, names, n: int = 3) -> str:
    """`; did you mean a or b?` for the valid names closest to a misspelt `name`, or ''."""
    matches = difflib.get_close_matches(name, list(dict.fromkeys(names)), n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(matches)}?" if matches else ""


def _target_nodes(node: DictConfig, path: str = ""):
    """(config path, node) of every node with a `_target_`, each at its own place: a child given as an
    interpolation of another group (`net: ${model.net}`) is visited there, not again here."""
    if "_target_" in node:
        yield path, node
    for key in node:
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            yield from _target_nodes(child, f"{path}.{key}" if path else str(key))


def check_target_keys(cfg: DictConfig, skip: tuple = ("hydra",)) -> None:
    """Every key of a `_target_` node is an argument its class or function takes (unless it takes
    **kwargs): `+task.optimizer.learning_rate=1e-3` fails here, at start-up, in one sentence naming the
    key and the closest argument, not as a TypeError once training has begun."""
    for path, node in _target_nodes(cfg):
        if path.split(".")[0] in skip or OmegaConf.is_interpolation(node, "_target_"):
            continue
        try:
            params = inspect.signature(get_object(node._target_)).parameters
        except Exception as e:  # not importable, or a builtin without a signature: building it will say
            if isinstance(e, ValueError | TypeError):
                continue
            raise ConfigError(f"{path}._target_={node._target_} cannot be imported ({type(e).__name__}: {e})") from e
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            continue
        taken = [name for name, p in params.items() if p.kind != p.VAR_POSITIONAL and name != "self"]
        for key in node:
            if not str(key).startswith("_") and key not in taken:
                raise ConfigError(
                    f"{path}.{key}: {node._target_} takes no argument `{key}`{close_names(str(key), taken)} "
                    f"(it takes {', '.join(taken)})"
                )


def ema_weights(checkpoint: dict, attr: str = "net") -> dict[str, torch.Tensor] | None:
    """The EMA weights stored in a Lightning checkpoint, keyed like the task's state_dict, or None."""
    state = checkpoint.get("callbacks", {}).get("EMA")
    if not state or state.get("shadow") is None:
        return None
    return {f"{attr}.{k}": v for k, v in state["shadow"].items()}


def restore_datamodule(datamodule, checkpoint: dict) -> None:
    """Give the datamodule the state Lightning stored in the checkpoint (a text vocabulary), so a
    mismatch with the data fails now, and sampling can decode without the data file."""
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)
