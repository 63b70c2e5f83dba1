"""Generative perplexity: how likely an autoregressive model finds the samples (`metrics=[gen_ppl]`).

MDLM and its successors report the perplexity of their samples under GPT-2 Large; no pretrained LM
can be fetched here, so the reference is an autoregressive checkpoint of our own, trained on the same
data (`task=autoregressive sampler=ancestral`, e.g. `experiment=text_shakespeare_ar_cpu` or
`experiment=text8_ar`), named by `ar_ckpt`:

    PPL = exp( sum over samples and scored tokens of -log p_AR(x_l | x_<l) / number of scored tokens )

in float64. A sample longer than the AR model's context (`net.seq_len`) is scored in consecutive
chunks of seq_len tokens, each from the start token (as MDLM's evaluation splits long samples); where
the sampled task stops at an end-of-text id (`eos_id`, block diffusion), the tokens after a sample's
first one are not scored. Beside it: `entropy_bits`, the mean over samples of each sample's unigram
token entropy in bits (repetitive text, of low entropy, deflates the perplexity: compare it with
`reference_entropy_bits`), and `reference_ppl`, the AR model's perplexity of `num_reference` real
windows of `split`, so the reader sees what real text scores.

Every check that does not need the samples runs before sampling: `ar_ckpt` is set, readable and of
an autoregressive task (when the metric is built), and of the same vocabulary as the sampled
checkpoint (`check_checkpoint`); each failure is a ConfigError naming metrics.gen_ppl.ar_ckpt.
"""

import math

import torch
from hydra.utils import get_object
from omegaconf import OmegaConf

from vdiff.contracts import MetricDefaults, TokenData, TokenTask
from vdiff.diffusion.masked import token_nll
from vdiff.metrics.text import _val_tokens, check_split
from vdiff.tasks.autoregressive import Autoregressive
from vdiff.utils.config import ConfigError, build, ema_weights, load_checkpoint, restore_datamodule

KEY = "metrics.gen_ppl.ar_ckpt"
NO_AR_CKPT = (
    f"{KEY} is not set: pass {KEY}=<an autoregressive checkpoint, e.g. one trained with "
    "experiment=text_shakespeare_ar_cpu>; no pretrained LM can be fetched here, so our own AR baseline is the reference"
)


def checkpoint_data(ckpt: dict, path: str, key: str):
    """The datamodule a checkpoint was trained on, holding the vocabulary it stored (no data read)."""
    run = OmegaConf.create(ckpt["config"])
    datamodule = build(run.data, f"{key} (its data)")
    try:
        restore_datamodule(datamodule, ckpt)
    except ValueError as e:
        raise ConfigError(f"{key}={path}: {e}") from e
    if not isinstance(datamodule, TokenData):
        raise ConfigError(f"{key}={path}: its data ({run.data._target_}) is not token data")
    return datamodule


def load_autoregressive(path: str) -> tuple[Autoregressive, object]:
    """(the autoregressive task of checkpoint `path` with its (EMA) weights, in eval mode; its datamodule
    with the stored vocabulary), or a ConfigError naming metrics.gen_ppl.ar_ckpt."""
    ckpt = load_checkpoint(path, KEY)  # missing or unreadable: one sentence naming the key
    if "config" not in ckpt:
        raise ConfigError(f"{KEY}={path}: the checkpoint carries no run config (it was not written by train.py)")
    run = OmegaConf.create(ckpt["config"])
    target = OmegaConf.select(run, "task._target_")
    try:
        cls = get_object(target)
    except Exception:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, Autoregressive)):
        raise ConfigError(
            f"{KEY}={path}: its task is {target}, not an autoregressive model; pass a checkpoint trained with "
            "task=autoregressive sampler=ancestral"
        )
    task = build(run.task, f"{KEY} (its task)", compile=False)
    state = dict(ckpt["state_dict"])
    state.update(ema_weights(ckpt) or {})
    task.load_state_dict(state)
    return task.eval().requires_grad_(False), checkpoint_data(ckpt, path, KEY)


def symbols(datamodule) -> tuple[int, list[str]]:
    """(vocab_size, the text of each id): a vocabulary compared across datamodule classes."""
    size = datamodule.vocab_size
    return size, datamodule.decode_batch(torch.arange(size)[:, None])


def scored_tokens(x: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """(N, L) bool: the tokens scored, every one, or those up to and with each row's first `eos_id`."""
    if eos_id is None:
        return torch.ones_like(x, dtype=torch.bool)
    is_eos = (x == eos_id).long()
    return (is_eos.cumsum(-1) - is_eos) == 0  # nothing before it was an eos


def row_entropy_bits(x: torch.Tensor, keep: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(N,) float64: the unigram entropy in bits of each row's kept tokens."""
    counts = torch.zeros(x.shape[0], vocab_size, dtype=torch.float64)
    counts.scatter_add_(1, x.long(), keep.double())
    p = counts / counts.sum(1, keepdim=True).clamp(min=1)
    return -(p * p.clamp(min=1e-300).log2()).sum(1)


class GenerativePerplexity(MetricDefaults):
    example_layout = "L"  # token sequences; sample.py checks the checkpoint's examples before sampling

    def __init__(
        self,
        ar_ckpt: str | None = None,
        batch_size: int = 32,
        split: str = "val",
        num_reference: int | None = 256,
    ):
        if ar_ckpt is None:
            raise ConfigError(NO_AR_CKPT)
        self.ar_ckpt = str(ar_ckpt)
        self.batch_size = batch_size
        self.split = check_split("gen_ppl", split)
        self.num_reference = num_reference
        self.task, self.ar_data = load_autoregressive(self.ar_ckpt)

    def check_checkpoint(self, task, datamodule) -> None:
        """Before sampling: the sampled checkpoint is a token model of the AR model's vocabulary."""
        if not isinstance(task, TokenTask):
            raise ConfigError(
                "metrics.gen_ppl needs a token-model checkpoint (masked, autoregressive or block diffusion)"
            )
        self.check_vocab(datamodule)

    def check_vocab(self, datamodule) -> None:
        """ConfigError naming metrics.gen_ppl.ar_ckpt and both vocabulary sizes when `datamodule`'s
        vocabulary (the sampled checkpoint's) is not the AR model's."""
        ar_size, ar_symbols = symbols(self.ar_data)
        size, own = symbols(datamodule)
        if (ar_size, ar_symbols) != (size, own):
            raise ConfigError(
                f"{KEY}={self.ar_ckpt}: its vocabulary (vocab_size {ar_size}) is not the sampled checkpoint's "
                f"(vocab_size {size}); score the samples with an autoregressive model trained on the same data"
            )

    @torch.no_grad()
    def nats(self, x: torch.Tensor, device, eos_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """((N,) float64 nats of each row's scored tokens, (N,) their number) under the AR model: rows of
        more than its context in consecutive chunks of net.seq_len tokens, each from the start token."""
        task = self.task.to(device)
        context = task.net.seq_len
        keep = scored_tokens(x, eos_id)
        nats = torch.zeros(len(x), dtype=torch.float64)
        for rows in torch.arange(len(x)).split(self.batch_size):
            xb, kb = x[rows].to(device), keep[rows].to(device)
            for start in range(0, x.shape[1], context):
                chunk, k = xb[:, start : start + context], kb[:, start : start + context]
                if not k.any():
                    continue
                nll = token_nll(task.next_token_logits(chunk), chunk, mask_id=task.mask_id, dtype=torch.float64)
                nats[rows] += torch.where(k, nll, 0).sum(-1).cpu()
        return nats, keep.sum(-1)

    def __call__(self, samples, datamodule, device, task=None, **_) -> dict:
        self.check_checkpoint(task, datamodule)
        samples = samples.long().cpu()
        eos_id = task.eos_id  # block diffusion's end-of-text id; None elsewhere
        nats, counts = self.nats(samples, device, eos_id=eos_id)
        keep = scored_tokens(samples, eos_id)
        ref = _val_tokens(datamodule, self.split, self.num_reference).long()
        ref_nats, ref_counts = self.nats(ref, device)
        vocab_size = self.ar_data.vocab_size
        return {
            "gen_ppl": math.exp(float(nats.sum() / counts.sum())),
            "entropy_bits": float(row_entropy_bits(samples, keep, vocab_size).mean()),
            "reference_ppl": math.exp(float(ref_nats.sum() / ref_counts.sum())),
            "reference_entropy_bits": float(
                row_entropy_bits(ref, torch.ones_like(ref, dtype=torch.bool), vocab_size).mean()
            ),
            "ar_ckpt": self.ar_ckpt,
            "num_tokens": int(counts.sum()),
            "num_samples": len(samples),
            "num_reference": len(ref),
            "split": self.split,
            "ar_seq_len": self.task.net.seq_len,
            "mask_fraction": float((samples == self.task.mask_id).double().mean()),
        }
