"""Text samples every N training steps: written to <run dir>/samples/text_<step>.txt, sent to
TensorBoard / wandb, and their unigram entropy logged (a collapsing sampler shows up there)."""
import os

from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from vdiff.callbacks.samples import PeriodicSamples
from vdiff.generate import generate
from vdiff.metrics.text import unigram_entropy
from vdiff.outputs import format_texts


class TextSamples(PeriodicSamples):
    def __init__(self, every_n_steps: int = 1000, num_samples: int = 8, seed: int = 0, progress: bool = False,
                 max_samples: int | None = None, max_sampler_steps: int | None = None):
        super().__init__(every_n_steps=every_n_steps, num_samples=num_samples, seed=seed, progress=progress,
                         max_samples=max_samples, max_sampler_steps=max_sampler_steps)

    def log_samples(self, trainer, pl_module) -> None:
        dm, step = trainer.datamodule, trainer.global_step
        ids = generate(pl_module, dm.shape, self.num_samples, self.seed, progress=self.progress)
        texts = dm.decode_batch(ids)
        folder = os.path.join(trainer.default_root_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"text_{step:07d}.txt"), "w", encoding="utf-8") as f:
            f.write(format_texts(texts))
        entropy = unigram_entropy(ids, dm.vocab_size)
        for logger in trainer.loggers:
            logger.log_metrics({"samples/unigram_entropy_bits": entropy}, step=step)
            if isinstance(logger, WandbLogger):
                logger.log_text(key="samples", columns=["text"], data=[[t] for t in texts], step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("samples", "\n\n".join(f"    {t}".replace("\n", "\n    ") for t in texts), step)
