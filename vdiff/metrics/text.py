"""Metrics for token samples and token-model checkpoints (used by `sample.py metrics=[...]`).

Each metric is called as `metric(samples (N, L) long, datamodule, device, task=..., out_dir=...)` and
returns a JSON-able dict. The `patterns` data's metrics are in vdiff/metrics/patterns.py; generative
perplexity under an autoregressive checkpoint is in vdiff/metrics/gen_ppl.py.
  SampleEntropy     unigram entropy of the samples against that of the validation text, and the
                    fraction of [MASK] left (must be 0)
  BitsPerToken      any token task's bits per token and bits per character on a split (`val` or
                    `test`; the windows' characters from the batches, `window_chars`: the same number
                    for character data), from `task.window_nll` in float64: the exact NLL of the
                    autoregressive model, the NELBO of the diffusion tasks averaged over `t_samples`
                    draws of (t, mask) per sequence; beside it two per-token baselines: uniform over the
                    V - 1 symbols (and what it becomes under the task's schedule), and the training
                    split's unigram frequencies
  MaskedAccuracy    accuracy of the most likely real token (the [MASK] logit excluded) at masked
                    positions against the masking ratio, with chance and the table written as
                    masked_accuracy.png; bidirectional masked diffusion only
"""

import math
import os

import torch

from vdiff.contracts import MetricDefaults, TokenTask
from vdiff.data.tokens import window_chars
from vdiff.diffusion.masked import LogLinearMasking, mask_tokens
from vdiff.outputs.text import unigram_entropy
from vdiff.tasks.tokens import accuracy
from vdiff.utils.config import ConfigError

SPLITS = ("val", "test")


def unigram_cross_entropy_bits(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int) -> float:
    """Bits per token of eval_ids under the unigram frequencies of train_ids over the symbols
    1..V-1 (the mask id 0 excluded), add-one smoothed so an unseen symbol costs finite bits."""
    counts = torch.bincount(train_ids.flatten().long(), minlength=vocab_size)[1:].double() + 1
    log2p = counts.log2() - counts.sum().log2()
    eval_ids = eval_ids.flatten().long()
    return float(-log2p[eval_ids - 1].sum() / len(eval_ids))


def check_split(name: str, split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"metrics.{name}.split={split!r} must be one of {', '.join(SPLITS)}")
    return split


def _val_batches(datamodule, split: str) -> list[dict]:
    """The batches of the datamodule's `val` or `test` loader."""
    if split == "test":
        datamodule.setup("test")
        return list(datamodule.test_dataloader())
    datamodule.setup("validate")
    return list(datamodule.val_dataloader())


def _val_tokens(datamodule, split: str, limit: int | None) -> torch.Tensor:
    x = torch.cat([b["x"] for b in _val_batches(datamodule, split)])
    return x[:limit]


def _need_task(name: str, task):
    if not isinstance(task, TokenTask):
        raise ConfigError(f"metrics.{name} needs a token-model checkpoint (masked, autoregressive or block diffusion)")
    return task


class SampleEntropy(MetricDefaults):
    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(self, split: str = "val", num_reference: int | None = 256):
        self.split = check_split("entropy", split)
        self.num_reference = num_reference

    def __call__(self, samples, datamodule, device, **_) -> dict:
        ref = _val_tokens(datamodule, self.split, self.num_reference)
        mask_id = datamodule.mask_id
        return {
            "unigram_entropy_bits": unigram_entropy(samples, datamodule.vocab_size),
            "reference_unigram_entropy_bits": unigram_entropy(ref, datamodule.vocab_size),
            "mask_fraction": float((samples == mask_id).double().mean()),
            "num_samples": len(samples),
        }


class BitsPerToken(MetricDefaults):
    """Any token task's bits per token and per character on a split, from `task.window_nll`: the
    exact NLL of the autoregressive model, the NELBO (an upper bound) of the diffusion tasks. Beside
    it for scale: `uniform_bits` (log2 of the V - 1 symbols: the entropy of text one knows nothing
    about), `uniform_bits_under_schedule` (what a model that knows nothing scores under the task's
    schedule: (1 - eps) log2(V - 1) under the log-linear one, whose eps leaves a fraction eps of the
    tokens visible at t = 1, so its NELBO may fall up to eps x the entropy below the true one; else
    uniform_bits) and `unigram_bits` (the split's cross-entropy under the training split's character
    frequencies: knowing only which characters are common)."""

    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(self, split: str = "val", t_samples: int = 8, batch_size: int = 64, seed: int = 0):
        self.split = check_split("bits_per_char", split)
        self.t_samples = t_samples
        self.batch_size = batch_size
        self.seed = seed

    def check_checkpoint(self, task, datamodule) -> None:
        _need_task("bits_per_char", task)

    @torch.no_grad()
    def __call__(self, samples, datamodule, device, task=None, **_) -> dict:
        task = _need_task("bits_per_char", task).eval()
        batches = _val_batches(datamodule, self.split)
        x = torch.cat([b["x"] for b in batches])
        chars = int(torch.cat([window_chars(b) for b in batches]).sum())  # of the split's windows
        gen = torch.Generator(device).manual_seed(self.seed)
        total = torch.zeros((), dtype=torch.float64)
        tokens = 0
        for _ in range(self.t_samples):
            for xb in x.split(self.batch_size):
                xb = xb.to(device)
                total += task.window_nll(xb, gen, torch.float64).sum().cpu()
                tokens += xb.numel()
        uniform = math.log2(datamodule.vocab_size - 1)
        return {
            "bits_per_token": float(total / tokens / math.log(2)),
            "bits_per_char": float(total / (chars * self.t_samples) / math.log(2)),
            "split": self.split,
            "num_tokens": tokens // self.t_samples,
            "num_chars": chars,
            "t_samples": self.t_samples,
            "uniform_bits": uniform,
            "uniform_bits_under_schedule": uniform_bits_under_schedule(getattr(task, "schedule", None), uniform),
            "unigram_bits": unigram_cross_entropy_bits(datamodule.train_tokens(), x, datamodule.vocab_size),
        }


def uniform_bits_under_schedule(schedule, uniform_bits: float) -> float:
    """What a model that knows nothing (uniform over the V - 1 symbols) scores under `schedule`: the
    log-linear schedule's NELBO is (1 - eps) x uniform_bits, as a fraction eps of the tokens stays
    visible at t = 1; other schedules (and the autoregressive task's exact NLL) give uniform_bits."""
    return (1 - schedule.eps) * uniform_bits if isinstance(schedule, LogLinearMasking) else uniform_bits


class MaskedAccuracy(MetricDefaults):
    """Accuracy of the most likely real token at masked positions against the masking ratio. It asks
    the denoiser `task.denoiser(x_t, t)` for every masked position at once, so it needs a task that
    declares `bidirectional = True` (masked diffusion); the argmax excludes the [MASK] logit, to which
    the SUBS parameterisation gives zero mass."""

    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(
        self,
        ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        split: str = "val",
        num_sequences: int | None = 512,
        seed: int = 0,
    ):
        self.ratios = list(ratios)
        self.split = check_split("masked_accuracy", split)
        self.num_sequences = num_sequences
        self.seed = seed

    def check_checkpoint(self, task, datamodule) -> None:
        if not _need_task("masked_accuracy", task).bidirectional:
            raise ConfigError(
                f"metrics.masked_accuracy needs a bidirectional masked-diffusion checkpoint, and this one's task "
                f"({type(task).__name__}) is not bidirectional; use metrics=[bits_per_char] for it"
            )

    @torch.no_grad()
    def __call__(self, samples, datamodule, device, task=None, out_dir=None, **_) -> dict:
        self.check_checkpoint(task, datamodule)
        task = task.eval()
        x = _val_tokens(datamodule, self.split, self.num_sequences).to(device)
        gen = torch.Generator(device).manual_seed(self.seed)
        acc = []
        for r in self.ratios:
            t = torch.full((len(x),), _time_of_ratio(task.schedule, r), device=device)
            xt, masked = mask_tokens(x, t, schedule=task.schedule, mask_id=task.mask_id, generator=gen)
            acc.append(float(accuracy(task.denoiser(xt, t), x, masked, task.mask_id)))
        result = {"ratio": self.ratios, "accuracy": acc, "chance": 1 / (datamodule.vocab_size - 1)}
        if out_dir is not None:
            result["plot"] = _plot(
                self.ratios, acc, chance=result["chance"], path=os.path.join(out_dir, "masked_accuracy.png")
            )
        return result


def _time_of_ratio(schedule, ratio: float) -> float:
    """The t in (0, 1] with m(t) = ratio, by bisection (m is increasing)."""
    lo = 0.0
    hi = 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(schedule.mask_prob(torch.tensor(mid, dtype=torch.float64))) < ratio else (lo, mid)
    return hi


def _plot(ratios, acc, chance, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(ratios, acc, "o-", label="model")
    ax.axhline(chance, color="grey", ls="--", label="chance")
    ax.set(xlabel="masking ratio", ylabel="masked-token accuracy", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
