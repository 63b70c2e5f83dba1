"""FID in the feature space of a digit classifier trained by this framework, and the classifier's
label distribution of the samples (a collapsed model shows up as a peaked histogram).

torchmetrics' FrechetInceptionDistance does the statistics (float64 means and covariances, the
matrix square root); only the feature network is ours: Inception features of 299x299 RGB photos say
little about 28x28 digits, a classifier trained on them says more. Images are (N, C, H, W) in [0, 1].
"""

import math
import os

import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vdiff.contracts import MetricDefaults
from vdiff.models.classifier import from_unit
from vdiff.utils.config import ConfigError, load_checkpoint

BUNDLED = os.path.join(os.path.dirname(__file__), "weights")


def load_classifier(weights: str) -> nn.Module:
    """The classifier net of a checkpoint written by `experiment=mnist_classifier`. A relative path
    that does not exist from the working directory is looked up among the bundled weights."""
    if not os.path.isabs(weights) and not os.path.exists(weights):
        weights = os.path.join(BUNDLED, weights)
    ckpt = load_checkpoint(weights, "metrics.fid.weights")
    net = instantiate(ckpt["config"]["model"]["net"])
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    return net.eval()


class ClassifierFeatures(nn.Module):
    """torchmetrics feature extractor: images in [0, 1] -> (N, feature_dim) classifier features."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(from_unit(images))


def _batches(x: torch.Tensor, size: int):
    return (x[i : i + size] for i in range(0, len(x), size))


@torch.no_grad()
def generated_fid(fid: FrechetInceptionDistance, images: torch.Tensor, batch_size: int, device) -> float:
    """FID of `images` against the real features `fid` keeps (reset_real_features=False)."""
    fid.reset()
    for x in _batches(images, batch_size):
        fid.update(x.to(device), real=False)
    return float(fid.compute())


class ClassifierFID(MetricDefaults):
    """FID of samples against `num_reference` images of `reference_split`; also the real-vs-real
    floor: as many images of `floor_split` as there are samples (FID is biased upward at small N,
    so the floor is measured at the same N) against the same reference. With the label distribution
    of the samples comes `confidence_mean_real`: the classifier's mean top probability on the floor
    images, the value `confidence_mean` of real digits would have.

    One object keeps its classifier, the reference statistics (the metric is built with
    `reset_real_features=False`, so `reset` drops only the sample side) and the floor of each N
    between calls on the same datamodule and device: a training callback that measures FID every
    few thousand steps pays for the 10 000 reference images once. The metric never syncs across
    processes (`sync_on_compute=False`): under DDP only rank 0 measures, and a sync would wait on
    ranks that never call it."""

    example_layout = "C H W"  # images; sample.py checks the checkpoint's examples before sampling

    def __init__(
        self,
        weights: str = "mnist_classifier.ckpt",
        reference_split: str = "train",
        floor_split: str = "test",
        num_reference: int = 10000,
        batch_size: int = 1000,
    ):
        self.weights = weights
        self.reference_split = reference_split
        self.floor_split = floor_split
        self.num_reference = num_reference
        self.batch_size = batch_size
        self._datamodule = None
        self._device = None
        self._classifier = None
        self._fid = None
        self._floors: dict[int, tuple[float, float]] = {}

    @torch.no_grad()
    def _prepare(self, datamodule, device: torch.device) -> None:
        """Load the classifier and take the reference statistics, unless done for this datamodule and device."""
        device = torch.device(device)
        if self._fid is not None and self._datamodule is datamodule and self._device == device:
            return
        classifier = load_classifier(self.weights).to(device)
        fid = FrechetInceptionDistance(
            ClassifierFeatures(classifier), normalize=True, reset_real_features=False, sync_on_compute=False
        ).to(device)
        for x in _batches(datamodule.reference_images(self.reference_split, self.num_reference), self.batch_size):
            fid.update(x.to(device), real=True)
        self._datamodule = datamodule
        self._device = device
        self._classifier = classifier
        self._fid = fid
        self._floors = {}

    def _fid_of(self, images: torch.Tensor) -> float:
        return generated_fid(self._fid, images, self.batch_size, self._device)

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, datamodule, device: torch.device, **_) -> dict:
        if samples.shape[1:] != tuple(datamodule.shape):
            raise ConfigError(
                f"metrics.fid: samples of shape {tuple(samples.shape[1:])} do not match the data's {tuple(datamodule.shape)}"
            )
        self._prepare(datamodule, device)
        n = len(samples)
        result = {"fid": self._fid_of(samples), "num_samples": n, "num_reference": self.num_reference}
        if n not in self._floors:
            floor = datamodule.reference_images(self.floor_split, n)
            confidence = (
                classify(self._classifier, floor, device=self._device, batch_size=self.batch_size)
                .max(-1)
                .values.double()
                .mean()
            )
            self._floors[n] = (self._fid_of(floor), float(confidence))
        result["fid_floor"] = self._floors[n][0]
        result.update(label_distribution(self._classifier, samples, device=self._device, batch_size=self.batch_size))
        result["confidence_mean_real"] = self._floors[n][1]
        return result


@torch.no_grad()
def classify(classifier: nn.Module, images: torch.Tensor, device, batch_size: int = 1000) -> torch.Tensor:
    """(N, K) softmax probabilities of the classifier for images in [0, 1], on the CPU."""
    return torch.cat(
        [classifier(from_unit(x.to(device))).float().softmax(-1).cpu() for x in _batches(images, batch_size)]
    )


@torch.no_grad()
def label_distribution(classifier: nn.Module, samples: torch.Tensor, device, batch_size: int = 1000) -> dict:
    """Histogram of predicted labels, its entropy in bits (log2 K for a uniform spread), the
    fraction taken by the most frequent label, and the mean of the classifier's top probability
    (near 0.99 on real digits; blurry or ambiguous samples lower it)."""
    probs = classify(classifier, samples, device=device, batch_size=batch_size)
    k = classifier.num_classes
    counts = torch.bincount(probs.argmax(-1), minlength=k).double()
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log2()).sum()) + 0.0  # + 0.0: one label gives 0, not -0
    return {
        "label_hist": counts.long().tolist(),
        "label_entropy_bits": entropy,
        "label_entropy_max_bits": math.log2(k),
        "label_top_fraction": float(p.max()),
        "confidence_mean": float(probs.max(-1).values.double().mean()),
    }
