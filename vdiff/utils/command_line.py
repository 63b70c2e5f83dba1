"""The command line's overrides composed once before Hydra does, so that a typo is one sentence with
exit status 2 and the closest valid names, rather than Hydra's exception text and exit status 1.

    python train.py trainer.max_step=10    ->  error: trainer.max_step is not a key of this config; did you mean trainer.max_steps? ...
    python train.py experiment=mnist_dpm   ->  error: experiment=mnist_dpm: no option mnist_dpm in group experiment; did you mean mnist_ddpm? ...

Hydra composes the config before the task function runs, and reports a failure with its own text
(`run_and_report`), so the check composes the same config first, with Hydra's compose API. A sweep
(`-m key=a,b`) is composed with the first value of each swept override; flags such as `--help`,
`--cfg` and `--info` pass through to Hydra. Keys a run adds with `+key=value` are checked later, at
start-up, against the constructor they reach (vdiff/utils/config.py `check_target_keys`).
"""

import os
import sys

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from vdiff.utils.config import close_names

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """Each swept override (`a=1,2`, `a=range(1,3)`) replaced by its first value; glob sweeps dropped."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed):
        if not override.is_sweep_override():
            out.append(text)
            continue
        try:
            first = next(iter(override.sweep_string_iterator()))
        except Exception:  # a glob over a group's options: Hydra's sweeper expands it
            continue
        prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(override.type.name, "")
        out.append(f"{prefix}{override.get_key_element()}={first}")
    return out


def _keys(node, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (not resolved)."""
    keys = []
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        keys.append(path)
        if isinstance(value, dict):
            keys += _keys(value, path)
    return keys


def _unknown_key(config_name: str, overrides: list[str], key: str, error: Exception) -> str:
    """The sentence for an override of a key (or group) that the config does not have."""
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    loader = GlobalHydra.instance().config_loader()
    groups = [g for g in loader.list_groups("") if g != "hydra"]
    try:
        composed = compose(config_name, overrides=rest)
        names = _keys(OmegaConf.to_container(composed, resolve=False)) + groups
    except Exception:  # a second typo: suggest from the groups alone
        names = groups
    return (
        f"{key} is not a key of this config{close_names(key, names)} (`python {config_name}.py <overrides> "
        f"--cfg job` prints every key; +{key}=<value> adds a new one)"
    )


def explain(config_name: str, overrides: list[str], error: Exception) -> str:
    """One sentence for a composition failure, naming the override and the closest valid names."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, option = error.missing_cfg_file.rsplit("/", 1)
        options = list(error.options or GlobalHydra.instance().config_loader().get_group_options(group))
        return (
            f"{group}={option}: no option {option} in group {group}{close_names(option, options)} "
            f"(options: {', '.join(options)})"
        )
    message = str(error).strip()
    first = message.splitlines()[0] if message else type(error).__name__
    if first.startswith("Could not override '") and "No match in the defaults list" not in message:
        return _unknown_key(config_name, overrides, first.split("'")[1], error)
    if first.startswith("Could not override '"):
        key = first.split("'")[1]
        groups = GlobalHydra.instance().config_loader().list_groups("")
        return f"{key} is not a config group{close_names(key, groups)} (groups: {', '.join(sorted(groups))})"
    return first


def check_command_line(config_name: str, argv: list[str] | None = None) -> DictConfig | None:
    """Compose `configs/<config_name>.yaml` with the command line's overrides; on a failure print one
    sentence (`error: ...`) and exit with status 2. Returns the composed config (None when Hydra's own
    flags decide what runs)."""
    args = get_args_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if (
        args.help
        or args.hydra_help
        or args.info
        or args.shell_completion
        or args.config_path
        or args.config_name
        or args.config_dir
        or args.experimental_rerun
    ):
        return None
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        try:
            overrides = _first_of_sweeps(args.overrides)
            return compose(config_name, overrides=overrides)
        except OverrideParseException as e:
            message = f"the command line does not parse as overrides: {str(e).strip().splitlines()[0]}"
        except ConfigCompositionException as e:
            message = explain(config_name, overrides, e)
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
