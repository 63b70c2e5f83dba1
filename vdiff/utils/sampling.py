"""sample.py's sampler: the checkpoint's, with any of its values overridden on the command line.

Why an open node: `sampler: null` in the defaults list means "no group picked", and Hydra then
has no `sampler` key, so `sampler.steps=5` alone fails ("Key 'sampler' is not in struct"). An
empty `sampler: {}` in sample.yaml does not help either: the whole config is in struct mode, so a
new key under it needs `+sampler.steps=5`. `open_sampler` (registered here in Hydra's ConfigStore
and listed first in sample.yaml's defaults) is an empty `sampler` node whose own struct flag is
off: any key may be set in it, and a picked group (`sampler=ddim`) still merges into it as usual.

The merge (`sampler_config`) is then one rule: the checkpoint's stored sampler (`task.sampler` of
its run config) <- the picked group, if any <- the keys set on the command line. The checkpoint's
values are kept only when they describe the same class: with no group picked, or a group of the
checkpoint's `_target_`. A group of another class (a DDPM checkpoint sampled with `sampler=ddim`)
starts from that group alone, so none of the other class's keys leak in, except `clip_x0`: it says
what the samples are (pixels in [-1, 1], or latents, which must not be clamped), not how they are
drawn, so the checkpoint's value stays unless `sampler.clip_x0` is set on the command line. Picking a
group resets its other keys to the group's defaults (as Hydra groups do); to keep the checkpoint's
values and change one, set the key alone (`sampler.steps=20`).
"""

import inspect

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from vdiff.utils.config import ConfigError

OPEN_SAMPLER = "open_sampler"


def register_open_sampler() -> None:
    """Store `open_sampler` (an empty, non-struct `sampler` node) for sample.yaml's defaults list."""
    node = OmegaConf.create({"sampler": OmegaConf.create({}, flags={"struct": False})})
    ConfigStore.instance().store(name=OPEN_SAMPLER, node=node)


DATA_KEYS = ("clip_x0",)  # sampler keys that describe the samples, kept across a change of class


def sampler_config(
    stored: DictConfig | dict | None, chosen: DictConfig | dict | None, explicit: frozenset = frozenset()
) -> DictConfig | None:
    """The sampler to build: `stored` (the checkpoint's) under `chosen` (picked group and/or keys),
    `stored` left out when `chosen` names another `_target_` but for its DATA_KEYS not in `explicit`
    (the keys set on the command line); None when neither says anything."""
    stored = OmegaConf.create(stored) if stored else None
    chosen = OmegaConf.create(chosen) if chosen else None
    if chosen is None:
        return stored
    if stored is None:
        return chosen
    if "_target_" in chosen and chosen._target_ != stored.get("_target_"):
        kept = {k: stored[k] for k in DATA_KEYS if k in stored and k in chosen and k not in explicit}
        return OmegaConf.merge(chosen, kept)
    return OmegaConf.merge(stored, chosen)


def sampler_changes(stored: DictConfig | dict | None, used: DictConfig | None, overrides: list[str]) -> dict:
    """What the sampler used differs in from the checkpoint's: {key: {"checkpoint": v, "used": v, "by": why}},
    `by` being "command line" for a key set there (`sampler.eta=0`) and "sampler=<group> default" for a key a
    picked group reset. A sampler of another class is one entry, `_target_`. Empty when nothing changed."""
    if not stored or used is None:
        return {}
    stored, used = OmegaConf.to_container(OmegaConf.create(stored)), OmegaConf.to_container(used)
    group = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "sampler"), None)
    keys = ["_target_"] if stored.get("_target_") != used.get("_target_") else sorted(set(stored) | set(used))
    changes = {}
    for key in keys:
        if stored.get(key) != used.get(key):
            explicit = any(o.split("=", 1)[0].lstrip("+~") == f"sampler.{key}" for o in overrides)
            by = "command line" if explicit or group is None else f"sampler={group} default"
            changes[key] = {"checkpoint": stored.get(key), "used": used.get(key), "by": by}
    return changes


def describe_changes(changes: dict) -> str:
    """One line for sample.log: `sampler: eta 1.0 -> 0.0 (sampler=ddim default); ...`."""
    parts = [f"{k} {v['checkpoint']} -> {v['used']} ({v['by']})" for k, v in changes.items()]
    return "sampler: the checkpoint's values changed: " + "; ".join(parts)


def check_sampler_keys(node: DictConfig) -> None:
    """A key the sampler class does not take (`sampler.steps` on DDPM, a typo) is named in one
    sentence with the keys it does take."""
    if "_target_" not in node:
        raise ConfigError("sampler: no sampler class is known; pick one with sampler=<name> (ddpm, ddim, unmask)")
    try:
        cls = get_class(node._target_)
    except Exception as e:
        raise ConfigError(f"sampler._target_={node._target_} is not an importable class") from e
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    taken = [name for name in params if name != "self"]
    for key in node:
        if not key.startswith("_") and key not in taken:
            raise ConfigError(f"sampler.{key}: {cls.__name__} takes no such key (it takes {', '.join(taken)})")


def sampling_record(task, seconds: float, num_samples: int, ckpt_path: str, seed: int) -> dict:
    """The `sampling` block of metrics.json: which sampler ran, with what settings, how fast.
    `steps` is the number of reverse steps actually taken (a Gaussian sampler's timestep list, so
    DDPM gives the schedule's T); `eta` and `guidance_scale` are null for samplers without them
    (the sampler's `settings`, vdiff/contracts.py)."""
    return {
        "sampler": type(task.sampler).__name__,
        **task.sampler.settings(task.schedule.num_steps),
        "num_samples": num_samples,
        "seconds": seconds,
        "seconds_per_sample": seconds / num_samples,
        "ckpt_path": ckpt_path,
        "seed": seed,
    }
