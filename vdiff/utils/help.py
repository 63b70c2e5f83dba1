"""`--help` of train.py and sample.py: Hydra's help template (configs/hydra/help/<script>.yaml) lists the
script's own groups with a line each; the options of a group come from this resolver, read from
configs/<group>/, so a new option file shows up without editing the template."""

import os

from omegaconf import OmegaConf

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")


def group_options(group: str) -> str:
    """The option names of a config group, e.g. `mnist, fashion_mnist, ...` for `data`."""
    folder = os.path.join(CONFIGS, group)
    names = sorted(f[: -len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))
    return ", ".join(names)


def register_help() -> None:
    if not OmegaConf.has_resolver("vdiff_options"):
        OmegaConf.register_new_resolver("vdiff_options", group_options)
