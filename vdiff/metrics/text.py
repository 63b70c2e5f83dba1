"""Metrics for token samples and masked-diffusion checkpoints (used by `sample.py metrics=[...]`).

Each metric is called as `metric(samples (N, L) long, datamodule, device, task=..., out_dir=...)` and
returns a JSON-able dict. The `patterns` data's metrics are in vdiff/metrics/patterns.py.
  SampleEntropy     unigram entropy of the samples against that of the validation text, and the
                    fraction of [MASK] left (must be 0)
  BitsPerToken      the validation NELBO in bits per token and bits per character (the windows'
                    characters from the batches, `window_chars`: the same number for character
                    data), float64, averaged over `t_samples` draws of (t, mask) per sequence; beside
                    it two per-token baselines: uniform over the V - 1 symbols, and the training
                    split's unigram frequencies
  MaskedAccuracy    accuracy of the most likely token at masked positions against the masking ratio,
                    with chance and the table written as masked_accuracy.png
"""

import math
import os

import torch

from vdiff.contracts import MetricDefaults, TokenTask
from vdiff.data.tokens import window_chars
from vdiff.diffusion.masked import mask_tokens, nelbo_per_token
from vdiff.outputs.text import unigram_entropy
from vdiff.utils.config import ConfigError


def unigram_cross_entropy_bits(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int) -> float:
    """Bits per token of eval_ids under the unigram frequencies of train_ids over the symbols
    1..V-1 (the mask id 0 excluded), add-one smoothed so an unseen symbol costs finite bits."""
    counts = torch.bincount(train_ids.flatten().long(), minlength=vocab_size)[1:].double() + 1
    log2p = counts.log2() - counts.sum().log2()
    eval_ids = eval_ids.flatten().long()
    return float(-log2p[eval_ids - 1].sum() / len(eval_ids))


def _val_batches(datamodule, split: str) -> list[dict]:
    datamodule.setup("validate")
    return list(datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader())


def _val_tokens(datamodule, split: str, limit: int | None) -> torch.Tensor:
    x = torch.cat([b["x"] for b in _val_batches(datamodule, split)])
    return x[:limit]


def _need_task(name: str, task):
    if not isinstance(task, TokenTask):
        raise ConfigError(f"metrics.{name} needs a masked-diffusion checkpoint")
    return task


class SampleEntropy(MetricDefaults):
    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(self, split: str = "val", num_reference: int | None = 256):
        self.split = split
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
    """The model's NELBO in bits per token, with `uniform_bits` (log2 of the V - 1 symbols: knowing
    nothing) and `unigram_bits` (the split's cross-entropy under the training split's character
    frequencies: knowing only which characters are common) beside it for scale."""

    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(self, split: str = "val", t_samples: int = 8, batch_size: int = 64, seed: int = 0):
        self.split = split
        self.t_samples = t_samples
        self.batch_size = batch_size
        self.seed = seed

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
                t, masked, nll, _ = task.forward_terms(xb, gen, torch.float64)
                total += nelbo_per_token(nll, masked, t=t, schedule=task.schedule).sum().cpu() * xb.shape[1]
                tokens += xb.numel()
        return {
            "bits_per_token": float(total / tokens / math.log(2)),
            "bits_per_char": float(total / (chars * self.t_samples) / math.log(2)),
            "split": self.split,
            "num_tokens": tokens // self.t_samples,
            "num_chars": chars,
            "t_samples": self.t_samples,
            "uniform_bits": math.log2(datamodule.vocab_size - 1),
            "unigram_bits": unigram_cross_entropy_bits(datamodule.train_tokens(), x, datamodule.vocab_size),
        }


class MaskedAccuracy(MetricDefaults):
    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(
        self,
        ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        split: str = "val",
        num_sequences: int | None = 512,
        seed: int = 0,
    ):
        self.ratios = list(ratios)
        self.split = split
        self.num_sequences = num_sequences
        self.seed = seed

    @torch.no_grad()
    def __call__(self, samples, datamodule, device, task=None, out_dir=None, **_) -> dict:
        task = _need_task("masked_accuracy", task).eval()
        x = _val_tokens(datamodule, self.split, self.num_sequences).to(device)
        gen = torch.Generator(device).manual_seed(self.seed)
        acc = []
        for r in self.ratios:
            t = torch.full((len(x),), _time_of_ratio(task.schedule, r), device=device)
            xt, masked = mask_tokens(x, t, schedule=task.schedule, mask_id=task.mask_id, generator=gen)
            pred = task.denoiser(xt, t).argmax(-1)
            acc.append(float(((pred == x) & masked).sum() / masked.sum().clamp(min=1)))
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
