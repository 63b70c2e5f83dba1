"""metrics.direction_accuracy: the centre-of-mass direction estimator against real labelled clips."""

import pytest
import torch
from test_video_data import TINY

from vdiff.data import BouncingBlobsDataModule
from vdiff.metrics import DirectionAccuracy, estimate_directions
from vdiff.utils.config import ConfigError

DIRECTIONS = [[0, 1], [0, -1], [1, 0], [-1, 0]]


@pytest.fixture(scope="module")
def data():
    params = {**TINY, "num_test": 400}
    dm = BouncingBlobsDataModule(directions=DIRECTIONS, clear_frames=5, conditional=True, **params)
    dm.setup()
    return dm


def test_real_clips_with_true_labels_score_one(data):
    clips = data.reference_clips("test", 400)
    labels = data.reference_labels("test", 400)
    result = DirectionAccuracy()(clips, data, labels=labels)
    assert result["accuracy"] == 1.0 and result["accuracy_real"] == 1.0
    assert result["per_direction"] == [1.0] * 4 and result["chance"] == 0.25


def test_shuffled_labels_score_near_chance(data):
    clips = data.reference_clips("test", 400)
    labels = data.reference_labels("test", 400)
    shuffled = labels[torch.randperm(400, generator=torch.Generator().manual_seed(0))]
    result = DirectionAccuracy()(clips, data, labels=shuffled)
    assert abs(result["accuracy"] - 0.25) < 0.08 and result["accuracy_real"] == 1.0


def test_still_or_empty_clips_have_no_direction():
    still = torch.zeros(2, 1, 8, 32, 32)
    still[0, :, :, 10:20, 10:20] = 1.0  # a square that never moves
    directions = torch.tensor(DIRECTIONS, dtype=torch.float64)
    assert estimate_directions(still, directions).tolist() == [-1, -1]


def test_moving_mnist_directions_convention():
    """K evenly spaced angles, y down: 0 right, 1 down, 2 left, 3 up, as moving_mnist_directions draws them."""
    clips = torch.zeros(4, 1, 8, 32, 32)
    for t in range(8):
        clips[0, 0, t, 10:14, 2 + 2 * t : 6 + 2 * t] = 1  # right
        clips[1, 0, t, 2 + 2 * t : 6 + 2 * t, 10:14] = 1  # down
        clips[2, 0, t, 10:14, 26 - 2 * t : 30 - 2 * t] = 1  # left
        clips[3, 0, t, 26 - 2 * t : 30 - 2 * t, 10:14] = 1  # up
    theta = torch.arange(4, dtype=torch.float64) * (torch.pi / 2)
    assert estimate_directions(clips, torch.stack([theta.sin(), theta.cos()], 1)).tolist() == [0, 1, 2, 3]


def test_without_labels_or_directions_is_one_sentence(data):
    clips = data.reference_clips("test", 4)
    with pytest.raises(ConfigError, match="metrics.direction_accuracy needs the requested directions"):
        DirectionAccuracy()(clips, data, labels=None)
    free = BouncingBlobsDataModule(**TINY)
    with pytest.raises(ConfigError, match="labelled by direction"):
        DirectionAccuracy()(clips, free, labels=torch.zeros(4, dtype=torch.long))
