"""The valid range of every numeric config value, in one table, checked once at start-up.

train.py applies `TRAIN` to the composed config before anything is built; sample.py applies
`SAMPLE` to its own config and `SAMPLER` to the sampler it builds (the checkpoint's, with the
command line's keys) beside the checkpoint's schedule. A value out of range, of the wrong type or
null where null has no meaning is one sentence naming the key (a `ConfigError`: exit status 2).

A key is a dotted path in the composed config; `*` stands for any one key or list index
(`callbacks.*.every_n_steps`, `task.optimizer.betas.*`). Keys the config does not hold are skipped,
so one table serves every group option. An interval end is a number, `inf`, or the key of another
value (`[1, schedule.num_steps]`), which is left out when that key is absent or not a number.
Constructors keep their own checks for use from Python; this table is what the command line meets
first, and it also covers the classes vdiff does not own (the optimizer, LR schedule, Trainer).
"""

from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vdiff.utils.config import ConfigError

SEED = "[0, 4294967295]"  # what numpy and Lightning's seed_everything take


@dataclass(frozen=True)
class Range:
    interval: str  # "[1, inf)", "(0, 1)", "[1, schedule.num_steps]"
    integer: bool = False
    null: bool = False  # null is allowed (no limit, not used)
    also: tuple = ()  # single values allowed outside the interval (-1: no limit)

    def ends(self) -> tuple[str, str]:
        low, high = (end.strip() for end in self.interval[1:-1].split(","))
        return low, high

    def describe(self, cfg: DictConfig | None = None) -> str:
        """The range in words; with `cfg`, an end naming a key that cfg lacks reads as unbounded."""
        low, high = self.ends()
        if cfg is not None and _bound(cfg, high) is None:
            high = "inf"
        kind = "an integer" if self.integer else "a number"
        if high == "inf":
            text = f"{kind} {'>=' if self.interval[0] == '[' else '>'} {low}"
        else:
            text = f"{kind} in {self.interval}"
        extras = [str(v) for v in self.also] + (["null"] if self.null else [])
        return " or ".join([text, *extras])


def integer(interval: str = "[1, inf)", **kwargs) -> Range:
    return Range(interval, integer=True, **kwargs)


def number(interval: str, **kwargs) -> Range:
    return Range(interval, **kwargs)


COUNT = integer("[1, inf)")
FRACTION = number("[0, 1)")

SAMPLER = {
    "sampler.steps": integer("[1, schedule.num_steps]"),
    "sampler.eta": number("[0, inf)"),
    "sampler.guidance_scale": number("[0, inf)"),
    "sampler.temperature": number("(0, inf)"),
    "sampler.rho": number("(0, inf)"),  # karras grids
    "sampler.shift": number("(0, inf)"),  # shifted grids
    "sampler.s_churn": number("[0, inf)"),  # heun
    "sampler.s_tmin": number("[0, inf)"),
    "sampler.s_tmax": number("[sampler.s_tmin, inf)", null=True),
    "sampler.s_noise": number("(0, inf)"),
    "sampler.top_p": number("(0, 1]"),  # unmask, remask, ancestral: the nucleus; ancestral's top_k:
    "sampler.top_k": integer("[1, inf)", null=True),
}

TRAIN = {
    "seed": integer(SEED),
    "sample_limits.num_samples": integer(null=True),
    "sample_limits.sampler_steps": integer(null=True),
    "batch_limit": integer(null=True),
    # data
    "data.batch_size": COUNT,
    "data.eval_batch_size": COUNT,
    "data.image_batch_size": integer("[0, inf)"),
    "data.num_workers": integer("[0, inf)"),
    "data.val_size": integer("[1, 59999]"),  # of the 60000 training images of MNIST and Fashion-MNIST
    "data.val_fraction": number("(0, 1)"),  # image folders
    "data.resolution": COUNT,
    "data.seq_len": COUNT,
    "data.context": COUNT,  # text_file
    "data.tokenizer.vocab_size": integer("[258, inf)"),  # tokenizer=bpe: [MASK], 256 bytes, a merge
    "data.tokenizer.min_frequency": COUNT,
    "data.frames": COUNT,  # video_folder
    "data.frame_stride": COUNT,
    "data.channels": integer("[1, 3]"),
    "data.max_frames": integer(null=True),
    "data.max_eval_clips": integer(null=True),
    "data.max_eval_windows": integer(null=True),
    "data.splits.*": number("(0, 1)"),
    "data.vocab_size": integer("[3, 27]"),
    "data.min_period": COUNT,
    "data.max_period": integer("[data.min_period, inf)"),
    "data.num_train": COUNT,
    "data.num_val": COUNT,
    "data.num_test": COUNT,
    "data.num_frames": COUNT,
    "data.size": COUNT,
    "data.diameter": integer("[1, data.size)"),
    "data.digit_size": integer("[1, data.size)"),
    "data.num_digits": COUNT,
    "data.step_length": number("(0, inf)"),
    "data.num_directions": integer("[0, inf)"),
    "data.speed": COUNT,
    "data.clear_frames": COUNT,
    # schedule (before the sampler, whose steps it bounds)
    "schedule.num_steps": COUNT,
    "schedule.beta_start": number("(0, 1)"),
    "schedule.beta_end": number("(0, 1)"),
    "schedule.s": number("[0, inf)"),
    "schedule.max_beta": number("(0, 1)"),
    "schedule.eps": FRACTION,
    "schedule.shift": number("(0, inf)"),  # flow
    "schedule.logit_mean": number("(-inf, inf)"),
    "schedule.logit_std": number("(0, inf)"),
    "schedule.sigma_data": number("(0, inf)"),  # edm
    "schedule.sigma_min": number("(0, inf)"),
    "schedule.sigma_max": number("(schedule.sigma_min, inf)"),
    "schedule.p_mean": number("(-inf, inf)"),
    "schedule.p_std": number("(0, inf)"),
    **SAMPLER,
    # model
    "model.net.in_channels": COUNT,
    "model.net.out_channels": integer(null=True),
    "model.net.image_size": COUNT,
    "model.net.channels": COUNT,
    "model.net.channel_mult.*": COUNT,
    "model.net.num_res_blocks": COUNT,
    "model.net.attention_resolutions.*": COUNT,
    "model.net.spatial_resolutions.*": COUNT,
    "model.net.temporal_resolutions.*": COUNT,
    "model.net.full_resolutions.*": COUNT,
    "model.net.heads": COUNT,
    "model.net.groups": COUNT,
    "model.net.dropout": FRACTION,
    "model.net.num_classes": integer(null=True),
    "model.net.emb_dim": COUNT,
    "model.net.width": COUNT,
    "model.net.feature_dim": COUNT,
    "model.net.dim": COUNT,
    "model.net.depth": COUNT,
    "model.net.mlp_ratio": COUNT,
    "model.net.block.heads": COUNT,
    "model.net.block.mlp_ratio": COUNT,
    "model.net.latent_channels": COUNT,
    "model.net.temporal_downsample": COUNT,
    "model.net.hidden_size": COUNT,
    "model.net.input_size.*": COUNT,
    "model.net.patch_size.*": COUNT,
    "model.net.context_dim": COUNT,
    # task, optimizer, LR schedule
    "task.cond_drop_prob": FRACTION,
    "task.min_snr_gamma": number("(0, inf)", null=True),
    "task.t_min": number("(0, 1)"),
    "task.val_t_samples": COUNT,
    "task.block_size": COUNT,  # block diffusion (that it divides data.seq_len is the task's check), and its
    "task.eos_id": integer("[1, inf)", null=True),
    "task.label_smoothing": FRACTION,
    "task.beta": number("[0, inf)"),
    "task.optimizer.lr": number("(0, inf)"),
    "task.optimizer.weight_decay": number("[0, inf)"),
    "task.optimizer.betas.*": FRACTION,
    "task.lr_scheduler.start_factor": number("(0, 1]"),
    "task.lr_scheduler.total_iters": integer("[0, inf)"),
    "task.lr_scheduler.max_lr": number("(0, inf)"),
    "task.lr_scheduler.total_steps": COUNT,
    "task.lr_scheduler.pct_start": number("[0, 1]"),
    "task.lr_scheduler.div_factor": number("(0, inf)"),
    "task.lr_scheduler.final_div_factor": number("(0, inf)"),
    # trainer
    "trainer.max_steps": integer(also=(-1,)),
    "trainer.max_epochs": integer("[-1, inf)", null=True),
    "trainer.val_check_interval": COUNT,
    "trainer.limit_val_batches": number("[0, inf)", null=True),  # 0: no validation (vdiff.bench)
    "trainer.num_sanity_val_steps": integer("[-1, inf)"),
    "trainer.log_every_n_steps": COUNT,
    "trainer.gradient_clip_val": number("[0, inf)", null=True),
    "trainer.num_nodes": COUNT,
    # callbacks
    "callbacks.ema.decay": number("(0, 1)"),
    "callbacks.ema.update_every": COUNT,
    "callbacks.*.every_n_steps": COUNT,
    "callbacks.*.num_samples": COUNT,
    "callbacks.*.num_clips": COUNT,
    "callbacks.*.max_clips": integer(null=True),
    "callbacks.*.max_samples": integer(null=True),
    "callbacks.*.max_sampler_steps": integer(null=True),
    "callbacks.*.sampler_steps": integer(null=True),
    "callbacks.*.num_reference": COUNT,
    "callbacks.*.batch_size": COUNT,
    "callbacks.*.seed": integer(SEED),
    "callbacks.*.fps": COUNT,
    "callbacks.*.save_top_k": integer("[-1, inf)"),
    "callbacks.*.every_n_train_steps": integer("[0, inf)", null=True),
}

SAMPLE = {
    "seed": integer(SEED),
    "max_sampler_steps": integer(null=True),
    "length": integer(null=True),  # token samples' length
    "num_samples": COUNT,
    "batch_size": COUNT,
    "metrics.*.num_reference": integer(null=True),
    "metrics.*.batch_size": COUNT,
    "metrics.*.t_samples": COUNT,
    "metrics.*.num_sequences": COUNT,
    "metrics.*.ratios.*": number("(0, 1)"),
    "metrics.*.threshold": FRACTION,
    "metrics.*.max_chance": number("[0, 1]"),
    "metrics.*.min_mass": number("[0, inf)"),
    "metrics.*.min_displacement": number("[0, inf)"),
    "metrics.*.steps": integer(null=True),
    "metrics.*.min_period": COUNT,
    "metrics.*.max_period": COUNT,
    "metrics.*.seed": integer(SEED),
}


def _children(node):
    return range(len(node)) if isinstance(node, ListConfig) else list(node.keys())


def _find(node, parts: list[str], prefix: str):
    """(key, value) of every value under `node` at the path `parts` (`*`: any child)."""
    if not parts or not isinstance(node, (DictConfig, ListConfig)):
        return
    head, rest = parts[0], parts[1:]
    names = _children(node) if head == "*" else [head] if isinstance(node, DictConfig) and head in node else []
    for name in names:
        key = f"{prefix}{name}"
        try:
            value = node[name]
        except OmegaConfBaseException:  # an interpolation of what start-up fills in later (data_info)
            continue
        if rest:
            yield from _find(value, rest, key + ".")
        else:
            yield key, value


def _is_number(value, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))


def _bound(cfg: DictConfig, end: str) -> tuple[float, str] | None:
    """An interval end as (value, how to name it), or None when it names an absent or non-numeric key."""
    try:
        return float(end), end
    except ValueError:
        pass
    try:
        value = OmegaConf.select(cfg, end)
    except OmegaConfBaseException:
        return None
    return (value, f"{end}={value}") if _is_number(value, integer=False) else None


def check_value(cfg: DictConfig, key: str, value, rule: Range) -> None:
    if value is None and rule.null:
        return
    shown = "null" if value is None else value
    if not _is_number(value, rule.integer):
        raise ConfigError(
            f"{key}={shown} is not {'an integer' if rule.integer else 'a number'}: it must be {rule.describe(cfg)}"
        )
    if value in rule.also:
        return
    (low, high), closed = rule.ends(), (rule.interval[0] == "[", rule.interval[-1] == "]")
    for end, is_low, inclusive in ((low, True, closed[0]), (high, False, closed[1])):
        bound = _bound(cfg, end)
        if bound is None:
            continue
        limit, name = bound
        above = value >= limit if inclusive else value > limit
        inside = above if is_low else (value <= limit if inclusive else value < limit)
        if not inside:
            problem = "is out of range" if name == end else f"is below {name}" if is_low else f"exceeds {name}"
            raise ConfigError(f"{key}={shown} {problem}: it must be {rule.describe(cfg)}")


def check_ranges(cfg: DictConfig, table: dict[str, Range]) -> None:
    """Every value of `cfg` that a key of `table` matches lies in its range, else a ConfigError
    naming the first one that does not."""
    for pattern, rule in table.items():
        for key, value in _find(cfg, pattern.split("."), ""):
            check_value(cfg, key, value, rule)
