"""Direction accuracy of direction-conditional clips: does each sampled clip move the way it was asked?

The direction of a clip is read from the motion of its intensity centre of mass: the displacement d
from frame 0 to frame `steps` (default T // 2, the part of a blobs_directions clip that never
bounces), assigned to the labelled direction u_k (the data's unit (dy, dx), `directions`) of the
largest d . u_k. A clip whose displacement is below `min_displacement` px, or whose frame 0 or frame
`steps` is empty, has no direction (-1) and counts as wrong. The same estimator on as many real clips
of `split` with their true labels is the reference: near 1.0, or the estimator is wrong; chance is 1 / K.
"""

import torch

from vdiff.contracts import Directions, MetricDefaults, ReferenceClips, ReferenceLabels
from vdiff.metrics.classes import label_accuracy
from vdiff.metrics.video import _check, centre_of_mass, flatten_frames
from vdiff.utils.config import ConfigError


def estimate_directions(
    clips: torch.Tensor,
    directions: torch.Tensor,
    steps: int | None = None,
    threshold: float = 0.1,
    min_mass: float = 1.0,
    min_displacement: float = 0.5,
) -> torch.Tensor:
    """clips (N, C, T, H, W) in [0, 1], directions (K, 2) unit (dy, dx) -> long (N,) in -1..K-1 (see the module doc)."""
    n, _, t = clips.shape[:3]
    k = t // 2 if steps is None else min(steps, t - 1)
    centre, mass = centre_of_mass(flatten_frames(clips), threshold)  # (N*T, 2) as (x, y), (N*T,)
    centre = centre.double().view(n, t, 2).flip(-1)  # (N, T, 2) as (dy, dx) axes
    mass = mass.view(n, t)
    d = centre[:, k] - centre[:, 0]  # (N, 2)
    pred = (d @ directions.double().T).argmax(1)  # (N,)
    moving = (d.norm(dim=1) >= min_displacement) & (mass[:, 0] >= min_mass) & (mass[:, k] >= min_mass)
    return torch.where(moving, pred, -1)


class DirectionAccuracy(MetricDefaults):
    """Share of sampled clips whose estimated direction is the requested one, overall and per direction,
    beside the same figures for real clips of `split` (module doc)."""

    example_layout = "C T H W"  # clips
    needs_labels = True  # sample.py checks the checkpoint is class-conditional before sampling

    def __init__(
        self,
        split: str = "test",
        steps: int | None = None,
        threshold: float = 0.1,
        min_mass: float = 1.0,
        min_displacement: float = 0.5,
    ):
        self.split = split
        self.steps = steps
        self.threshold = threshold
        self.min_mass = min_mass
        self.min_displacement = min_displacement

    def estimate(self, clips: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        return estimate_directions(
            clips,
            directions,
            steps=self.steps,
            threshold=self.threshold,
            min_mass=self.min_mass,
            min_displacement=self.min_displacement,
        )

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, datamodule, device=None, labels: torch.Tensor | None = None, **_) -> dict:
        if labels is None:
            raise ConfigError(
                "metrics.direction_accuracy needs the requested directions, which only a conditional checkpoint has"
            )
        directions = getattr(datamodule, "directions", None)
        labelled = isinstance(datamodule, ReferenceClips) and isinstance(datamodule, ReferenceLabels)
        if not isinstance(datamodule, Directions) or directions is None or not labelled:
            raise ConfigError(
                "metrics.direction_accuracy needs clips labelled by direction (data=blobs_directions, "
                f"moving_mnist_directions), not {type(datamodule).__name__} without directions"
            )
        _check("direction_accuracy", samples, datamodule)
        k = len(directions)
        acc, per_direction = label_accuracy(self.estimate(samples.cpu(), directions), labels.cpu(), k)
        real = datamodule.reference_clips(self.split, len(samples))
        real_labels = datamodule.reference_labels(self.split, len(samples))
        acc_real, per_direction_real = label_accuracy(self.estimate(real, directions), real_labels, k)
        return {
            "accuracy": acc,
            "accuracy_real": acc_real,
            "chance": 1 / k,
            "per_direction": per_direction,
            "per_direction_real": per_direction_real,
            "num_samples": len(samples),
            "num_reference": len(real),
        }
