"""Class accuracy of class-conditional samples: does the model draw the digit it was asked for?

The bundled MNIST classifier (the one FID uses) reads each sample; the accuracy is the share read
as the requested label, overall and per label. The same figure on real test images with their true
labels is the reference (the classifier's own accuracy, about 0.99), so a model can be judged
against what a perfect generator would score; chance is 1 / K.
"""

import torch

from vdiff.contracts import MetricDefaults, ReferenceLabels
from vdiff.metrics.fid import classify, load_classifier
from vdiff.utils.config import ConfigError


def label_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[float, list]:
    """Overall accuracy of preds against labels, and per label (None for a label never requested)."""
    hit = (preds == labels).double()
    per_label = [float(hit[labels == k].mean()) if (labels == k).any() else None for k in range(num_classes)]
    return float(hit.mean()), per_label


class ClassAccuracy(MetricDefaults):
    """Share of samples the classifier reads as their requested label; `split`: the real images
    (as many as samples) measured the same way."""

    needs_labels = True  # sample.py checks the checkpoint is class-conditional before sampling
    example_layout = "C H W"  # images

    def __init__(self, weights: str = "mnist_classifier.ckpt", split: str = "test", batch_size: int = 1000):
        self.weights = weights
        self.split = split
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(
        self, samples: torch.Tensor, datamodule, device: torch.device, labels: torch.Tensor | None = None, **_
    ) -> dict:
        if labels is None:
            raise ConfigError(
                "metrics.class_accuracy needs the requested labels, which only a class-conditional checkpoint has"
            )
        if not isinstance(datamodule, ReferenceLabels):
            raise ConfigError(
                f"metrics.class_accuracy needs labelled images (mnist, fashion_mnist), not {type(datamodule).__name__}"
            )
        if samples.shape[1:] != tuple(datamodule.shape):
            raise ConfigError(
                f"metrics.class_accuracy: samples of shape {tuple(samples.shape[1:])} do not match the data's {tuple(datamodule.shape)}"
            )
        classifier = load_classifier(self.weights).to(device)
        k = classifier.num_classes
        acc, per_label = label_accuracy(
            classify(classifier, samples, device=device, batch_size=self.batch_size).argmax(-1), labels.cpu(), k
        )
        real = datamodule.reference_images(self.split, len(samples))
        real_labels = datamodule.reference_labels(self.split, len(samples))
        acc_real, per_label_real = label_accuracy(
            classify(classifier, real, device=device, batch_size=self.batch_size).argmax(-1), real_labels, k
        )
        return {
            "accuracy": acc,
            "accuracy_real": acc_real,
            "chance": 1 / k,
            "per_label": per_label,
            "per_label_real": per_label_real,
            "num_samples": len(samples),
        }
