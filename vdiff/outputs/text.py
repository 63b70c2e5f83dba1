"""Text samples drawn while training (a token datamodule's `log_samples`): written to
<run dir>/samples/text_<step>.txt, sent to TensorBoard / wandb, and their unigram entropy logged
(a collapsing sampler shows up there; `unigram_entropy` is also the `entropy` metric's measure)."""

import os

import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from vdiff.outputs.files import format_texts


def unigram_entropy(ids: torch.Tensor, vocab_size: int) -> float:
    """Entropy in bits of the token histogram of ids (any shape)."""
    p = torch.bincount(ids.flatten().long(), minlength=vocab_size).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log2()).sum())


def log_text(trainer, ids: torch.Tensor, texts: list[str], vocab_size: int) -> str:
    """ids (N, L) and their decoded texts; returns the path of the text file."""
    step = trainer.global_step
    folder = os.path.join(trainer.default_root_dir, "samples")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"text_{step:07d}.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(format_texts(texts))
    entropy = unigram_entropy(ids, vocab_size)
    for logger in trainer.loggers:
        logger.log_metrics({"samples/unigram_entropy_bits": entropy}, step=step)
        if isinstance(logger, WandbLogger):
            logger.log_text(key="samples", columns=["text"], data=[[t] for t in texts], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text("samples", "\n\n".join(f"    {t}".replace("\n", "\n    ") for t in texts), step)
    return path
