"""Text samples drawn while training (a token datamodule's `log_samples`): written to
<run dir>/samples/text_<step>.txt, sent to TensorBoard / wandb, and their unigram entropy logged
(a collapsing sampler shows up there)."""

import os

import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from vdiff.metrics.text import unigram_entropy
from vdiff.outputs import format_texts


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
