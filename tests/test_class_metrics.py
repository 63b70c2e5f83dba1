"""The classifier-based metrics on real MNIST digits: class accuracy against requested labels, and
the classifier's confidence (real digits near 1, ambiguous ones lower)."""

import pytest
import torch
from conftest import DATA

from vdiff.data import MNISTDataModule
from vdiff.metrics import ClassAccuracy, label_distribution, load_classifier
from vdiff.utils.config import ConfigError

pytestmark = pytest.mark.usefixtures("mnist_root")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    """500 real test digits in [0, 1] with their true labels, as if they were labelled samples."""
    dm = MNISTDataModule(root=str(DATA), download=False)
    return dm, dm.reference_images("test", 500), dm.reference_labels("test", 500)


def test_class_accuracy_of_real_digits_with_true_labels_is_near_one(digits):
    dm, images, labels = digits
    r = ClassAccuracy()(images, dm, CPU, labels=labels)
    assert r["accuracy"] > 0.97 and r["accuracy"] == r["accuracy_real"]  # the same 500 test images
    assert len(r["per_label"]) == 10 and min(r["per_label"]) > 0.85 and r["chance"] == 0.1 and r["num_samples"] == 500


def test_class_accuracy_with_shuffled_labels_is_near_chance(digits):
    dm, images, labels = digits
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    r = ClassAccuracy()(images, dm, CPU, labels=shuffled)
    assert 0.04 < r["accuracy"] < 0.2 and r["accuracy_real"] > 0.97


def test_class_accuracy_without_labels_is_one_sentence(digits):
    dm, images, _ = digits
    with pytest.raises(ConfigError, match="needs the requested labels"):
        ClassAccuracy()(images, dm, CPU, labels=None)


def test_confidence_is_high_on_real_digits_and_lower_on_ambiguous_ones(digits):
    _, images, _ = digits
    classifier = load_classifier("mnist_classifier.ckpt")
    overlaid = (images + images.roll(1, 0)) / 2  # two digits in one image
    real, ambiguous = (label_distribution(classifier, x, CPU)["confidence_mean"] for x in (images, overlaid))
    assert real > 0.97 and ambiguous < 0.92
