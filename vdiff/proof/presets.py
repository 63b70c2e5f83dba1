"""Proof presets: configs/proof/<device>/<variant>.yaml, read, checked and scaled to a budget.

title: MNIST DDPM (`mnist_ddpm`)
order: 1                      # variants run in this order
budget_minutes: 20            # the training budget the recipe is tuned to
train: [experiment=mnist_ddpm, trainer.max_steps=2000, ...]          # train.py overrides
evals: {ddim: [sampler=ddim, num_samples=1000, "metrics=[fid]"]}     # sample.py -m overrides, per eval
columns: [{header: FID, key: fid.fid, fmt: ".2f"}]                   # the eval table (keys into metrics.json)
targets: [{label: ..., value: ddim/fid.fid, ratio_to: ddim/fid.fid_floor, max: 5}]   # see vdiff/proof/targets.py
show: [ddim]                  # evals whose samples go into the docs
needs: [video_vae]            # variants whose outputs this one reads (run first); `{logs}` in an override is
                              # the proof's logs dir, e.g. task.first_stage.ckpt_path={logs}/video_vae/train/...
"""

import contextlib
import os

import yaml

from vdiff.proof.targets import check_target
from vdiff.utils.config import ConfigError

REQUIRED = ("title", "order", "budget_minutes", "train", "evals")
OPTIONAL = ("columns", "targets", "show", "needs")
# Overrides a --budget-scale multiplies, and the least value each may become.
SCALED_TRAIN = {"trainer.max_steps": 2, "trainer.val_check_interval": 1}
SCALED_EVAL = {"num_samples": 16}
# Below scale 1 (a smoke run) samplers take at most this many steps, in training's sample callbacks
# and in the evals: a sampler's cost does not shrink with the training budget.
SMOKE_SAMPLER_STEPS = 4


def load_presets(folder: str) -> dict[str, dict]:
    """{variant: preset} for every <variant>.yaml in `folder`, in the presets' `order`."""
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: no such preset folder")
    presets = {}
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".yaml")):
        path = os.path.join(folder, name)
        with open(path) as f:
            presets[name[: -len(".yaml")]] = check_preset(yaml.safe_load(f), path)
    for name, p in presets.items():
        missing = [n for n in p["needs"] if n not in presets or presets[n]["order"] >= p["order"]]
        if missing:
            raise ConfigError(
                f"{os.path.join(folder, name)}.yaml: needs {', '.join(missing)}, which must be presets of a lower order"
            )
    return dict(sorted(presets.items(), key=lambda kv: (kv[1]["order"], kv[0])))


def check_preset(p, path: str) -> dict:
    if not isinstance(p, dict) or any(k not in p for k in REQUIRED) or set(p) - set(REQUIRED) - set(OPTIONAL):
        raise ConfigError(f"{path}: a preset holds {', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}")
    evals = p["evals"]
    if not isinstance(evals, dict) or not all(isinstance(v, list) for v in [p["train"], *evals.values()]):
        raise ConfigError(
            f"{path}: train must be a list of overrides and evals a mapping of names to lists of overrides"
        )
    for t in p.get("targets") or []:
        check_target(t, path, evals, p.get("needs") or ())
    for c in p.get("columns") or []:
        if not isinstance(c, dict) or set(c) - {"header", "key", "fmt"} or "key" not in c:
            raise ConfigError(f"{path}: a column is {{header, key, fmt}} with key a path into a job's metrics.json")
    if set(p.get("show") or []) - set(evals):
        raise ConfigError(f"{path}: show names evals that are not in evals ({', '.join(evals)})")
    p["train"] = [str(o) for o in p["train"]]
    p["evals"] = {k: [str(o) for o in v] for k, v in evals.items()}
    return {"columns": [], "targets": [], "show": [], "needs": [], **p}


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+")


def scale_overrides(overrides: list[str], scale: float, least: dict[str, int]) -> list[str]:
    """Multiply the integer values (comma sweeps too) of the keys in `least` by `scale`, rounding and
    keeping at least least[key]; scale 1 leaves the list as written."""
    if scale == 1:
        return list(overrides)
    out = []
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and _key(o) in least:
            with contextlib.suppress(ValueError):  # not an integer (an interpolation, a fraction): as written
                value = ",".join(str(max(least[_key(o)], round(int(v) * scale))) for v in value.split(","))
        out.append(f"{key}{sep}{value}")
    return out


def _clamp(override: str, least: int, most: int) -> str:
    key, _, value = override.partition("=")
    return f"{key}={min(max(int(value), least), most)}" if value.isdigit() else override


def scaled(preset: dict, scale: float) -> dict:
    """The preset with its train and eval overrides scaled. Below scale 1 (a smoke run) a training also
    validates at most twice, on one batch, with sample grids of 4 samples, and every sampler takes at
    most SMOKE_SAMPLER_STEPS steps: at a few dozen training steps, validation and sampling at full size
    would cost more than the training."""
    train = scale_overrides(preset["train"], scale, SCALED_TRAIN)
    steps = next((o.partition("=")[2] for o in reversed(train) if _key(o) == "trainer.max_steps"), "")
    if scale < 1 and steps.isdigit():
        half = -(-int(steps) // 2)
        train = [
            _clamp(o, least=half, most=int(steps)) if _key(o) == "trainer.val_check_interval" else o
            for o in train
            if _key(o) != "trainer.limit_val_batches"
        ]
        train += [
            "trainer.limit_val_batches=1",
            f"sample_limits.sampler_steps={SMOKE_SAMPLER_STEPS}",
            "sample_limits.num_samples=4",
        ]
    elif scale != 1 and steps.isdigit():
        train = [_clamp(o, least=1, most=int(steps)) if _key(o) == "trainer.val_check_interval" else o for o in train]
    evals = {k: scale_overrides(v, scale, SCALED_EVAL) for k, v in preset["evals"].items()}
    if scale < 1:
        evals = {k: [*v, f"max_sampler_steps={SMOKE_SAMPLER_STEPS}"] for k, v in evals.items()}
    return {**preset, "train": train, "evals": evals}
