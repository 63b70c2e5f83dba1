"""Supervised classification of batch["x"] into batch["label"] (used for the metrics' feature net)."""

import torch
import torch.nn.functional as F

from vdiff.tasks.base import Task


class Classifier(Task):
    def __init__(self, net, optimizer, lr_scheduler=None, label_smoothing: float = 0.0):
        super().__init__(net, optimizer, lr_scheduler)
        self.label_smoothing = label_smoothing

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self.net(batch["x"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        self.log(f"{stage}/acc", acc, prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")
