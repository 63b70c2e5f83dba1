"""The `patterns` data's law as metrics: a sample is valid when it is exactly periodic with a period
in [min_period, max_period] (`periodic`; the data tiles such patterns, vdiff/data/patterns.py).

`PatternValidity` is the fraction of samples that are valid.

`PatternTrace` shows where random-order unmasking breaks the law (a masked-diffusion checkpoint). It
unmasks `num_samples` (default: as many as sample.py draws) all-[MASK] sequences with the true reverse
process (`order=random`, `steps` = L by default: one token revealed per step) and, after every step,
checks which periods in [min_period, max_period] the revealed tokens still allow
(`allowed_periods`: within each residue class mod p they must agree). A sample is invalid exactly
when it loses the last allowed period; for those the metric reports how many tokens were revealed
when that happened and how many periods were still allowed just before. Early losses with one
period left mean the net did not infer the period from a few scattered tokens; late ones would
point at the sampler. It samples on its own, so sample.py's samples are unused.
"""

import torch

from vdiff.contracts import MetricDefaults
from vdiff.metrics.text import _need_task
from vdiff.samplers.unmask import Unmask
from vdiff.utils.config import ConfigError


def periodic(x: torch.Tensor, min_period: int = 2, max_period: int = 4) -> torch.Tensor:
    """(N,) bool of (N, L) ids: exactly periodic with some p in [min_period, max_period], no mask."""
    ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for p in range(min_period, max_period + 1):
        ok |= (x[:, p:] == x[:, :-p]).all(1) if p < x.shape[1] else True
    return ok & (x != 0).all(1)


def allowed_periods(x: torch.Tensor, mask_id: int = 0, min_period: int = 2, max_period: int = 4) -> torch.Tensor:
    """(N, P) bool of partly revealed (N, L) ids: column j is True where period min_period + j is still
    possible, i.e. within every residue class mod p the revealed (non-mask) tokens agree."""
    out = []
    for p in range(min_period, max_period + 1):
        ok = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for r in range(min(p, x.shape[1])):
            cls = x[:, r::p]  # (N, ceil((L - r) / p)): the positions congruent to r mod p
            shown = cls != mask_id
            hi = cls.masked_fill(~shown, -1).amax(1)
            lo = cls.masked_fill(~shown, torch.iinfo(cls.dtype).max).amin(1)
            ok &= ~shown.any(1) | (hi == lo)
        out.append(ok)
    return torch.stack(out, 1)


class PatternValidity(MetricDefaults):
    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(self, min_period: int = 2, max_period: int = 4):
        self.min_period = min_period
        self.max_period = max_period

    def __call__(self, samples, datamodule, device, **_) -> dict:
        valid = periodic(samples, self.min_period, self.max_period)
        return {
            "valid_fraction": float(valid.double().mean()),
            "num_valid": int(valid.sum()),
            "num_samples": len(samples),
        }


class PatternTrace(MetricDefaults):
    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(
        self,
        num_samples: int | None = None,
        steps: int | None = None,
        batch_size: int = 250,
        min_period: int = 2,
        max_period: int = 4,
        early: int = 12,
        seed: int = 0,
    ):
        self.num_samples = num_samples
        self.steps = steps
        self.batch_size = batch_size
        self.min_period = min_period
        self.max_period = max_period
        self.early = early
        self.seed = seed

    def check_checkpoint(self, task, datamodule) -> None:
        """It runs its own random-order unmasking of whole windows: a bidirectional masked model only."""
        if not _need_task("pattern_trace", task).bidirectional:
            raise ConfigError(
                f"metrics.pattern_trace traces the unmasking of whole windows, which this checkpoint's task "
                f"({type(task).__name__}) does not do; use metrics=[valid_patterns] for it"
            )

    @torch.no_grad()
    def __call__(self, samples, datamodule, device, task=None, **_) -> dict:
        self.check_checkpoint(task, datamodule)
        task = task.eval()
        length = datamodule.seq_len
        sampler = Unmask(steps=self.steps or length, order="random", mask_id=task.mask_id)
        gen = torch.Generator(device).manual_seed(self.seed)
        num_samples = self.num_samples or len(samples)
        lost_at, left_before = [], []  # per sample: revealed count when no period was left (0: never), periods before
        for n in torch.arange(num_samples).split(self.batch_size):
            x = torch.full((len(n), length), task.mask_id, dtype=torch.long, device=device)
            states = [x]
            sampler(task.denoiser, task.schedule, x, generator=gen, trace=states)
            allowed = torch.stack(
                [allowed_periods(s, task.mask_id, self.min_period, self.max_period).sum(1) for s in states]
            )  # (steps + 1, B): periods still allowed after each step
            revealed = torch.stack([(s != task.mask_id).sum(1) for s in states])  # (steps + 1, B)
            dead = allowed == 0
            first = torch.where(dead.any(0), dead.double().argmax(0), torch.zeros_like(dead[0], dtype=torch.long))
            cols = torch.arange(len(n), device=device)
            lost_at.append(torch.where(dead.any(0), revealed[first, cols], 0).cpu())
            left_before.append(torch.where(dead.any(0), allowed[(first - 1).clamp_min(0), cols], 0).cpu())
        lost_at, left_before = torch.cat(lost_at), torch.cat(left_before)
        invalid = lost_at > 0
        hist = torch.bincount(lost_at[invalid], minlength=length + 1)
        return {
            "num_samples": num_samples,
            "steps": sampler.steps,
            "invalid_fraction": float(invalid.double().mean()),
            "num_invalid": int(invalid.sum()),
            "lost_within_early": int((invalid & (lost_at <= self.early)).sum()),
            "early": self.early,
            "one_period_left": int((invalid & (left_before == 1)).sum()),
            "lost_at_revealed": {int(k): int(v) for k, v in enumerate(hist) if v},
        }
