"""Metrics for video samples (used by `sample.py metrics=[...]`), each measured on the samples and,
as its reference, on as many real clips of `datamodule.reference_clips(split, N)`.

Clips are (N, C, T, H, W) in [0, 1]; each metric is called as `metric(samples, datamodule, device)`
and returns a JSON-able dict.
  FrameFID             FID of the frames in the bundled MNIST classifier's feature space, and the
                       real-vs-real floor at the same N
  TemporalConsistency  does the classifier read the same digit in every frame (1-digit data only)
  MotionSmoothness     acceleration and speed of the intensity centre of mass (px/frame^2, px/frame)

The classifier takes (B, 1, 28, 28); frames of another size reach it in one of two ways (`frames:`):
  resize  the whole frame, area-averaged to 28x28 (F.interpolate mode="area": an antialiased
          downscale that keeps thin strokes). Keeps every digit of a frame, but at 64x64 a 28 px
          digit shrinks to 12 px and the classifier reads it poorly (about 15% accuracy).
  crop    the 28x28 window centred on the frame's intensity centre of mass, at native scale: MNIST's
          own centring, so the classifier reads one digit as well as in MNIST (99% at 32 and 64 px);
          with two digits the window holds parts of both.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vdiff.contracts import MetricDefaults
from vdiff.metrics.fid import ClassifierFeatures, _batches, label_distribution, load_classifier
from vdiff.models.classifier import from_unit
from vdiff.utils.config import ConfigError

CLASSIFIER_SIZE = 28
FRAME_MODES = ("resize", "crop")


def flatten_frames(clips: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W), clip by clip."""
    return rearrange(clips, "n c t h w -> (n t) c h w")


def centre_of_mass(frames: torch.Tensor, threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """frames (M, C, H, W) -> centres (M, 2) as (x, y) in pixels (column, row) weighted by the
    channel-mean intensity above `threshold`, and that mass (M,). A frame of zero mass has its
    centre at the middle of the frame."""
    w = frames.float().mean(1)
    w = w.where(w > threshold, 0.0)
    h, wd = w.shape[-2:]
    mass = w.sum((1, 2))
    x = (w.sum(1) * torch.arange(wd, dtype=w.dtype, device=w.device)).sum(1)
    y = (w.sum(2) * torch.arange(h, dtype=w.dtype, device=w.device)).sum(1)
    middle = torch.tensor([(wd - 1) / 2, (h - 1) / 2], dtype=w.dtype, device=w.device)
    centre = torch.where(mass[:, None] > 0, torch.stack([x, y], 1) / mass.clamp_min(1e-12)[:, None], middle)
    return centre, mass


def crop_centred(frames: torch.Tensor, size: int = CLASSIFIER_SIZE) -> torch.Tensor:
    """(M, C, H, W) -> (M, C, size, size): the window centred on each frame's centre of mass (whole
    pixels), zero outside the frame."""
    centre, _ = centre_of_mass(frames)
    m = len(frames)
    half = size // 2
    padded = rearrange(F.pad(frames, (half, half, half, half)), "m c h w -> m h w c")
    offsets = torch.arange(size, device=frames.device)
    rows = centre[:, 1].round().long()[:, None] + offsets  # top row in the padded frame = y - half + half
    cols = centre[:, 0].round().long()[:, None] + offsets
    window = padded[torch.arange(m, device=frames.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return rearrange(window, "m h w c -> m c h w")


def classifier_frames(clips: torch.Tensor, mode: str = "resize", size: int = CLASSIFIER_SIZE) -> torch.Tensor:
    """(N, C, T, H, W) in [0, 1] -> (N*T, C, size, size) frames as the classifier takes them (module doc)."""
    frames = flatten_frames(clips.float())
    if frames.shape[-2:] == (size, size):
        return frames
    if mode == "crop":
        return crop_centred(frames, size)
    return F.interpolate(frames, size=(size, size), mode="area")


def _check(key: str, samples: torch.Tensor, datamodule, frames: str | None = None) -> None:
    if samples.dim() != 5 or samples.shape[1:] != tuple(datamodule.shape):
        raise ConfigError(
            f"metrics.{key}: samples of shape {tuple(samples.shape[1:])} are not clips of the data's "
            f"(C, T, H, W) = {tuple(datamodule.shape)}"
        )
    if frames is not None and frames not in FRAME_MODES:
        raise ConfigError(f"metrics.{key}.frames={frames!r} is not one of {', '.join(FRAME_MODES)}")


def _classifier(key: str, weights: str, device) -> nn.Module:
    try:
        return load_classifier(weights).to(device)
    except ConfigError as e:  # load_classifier names the image metric's key
        raise ConfigError(str(e).replace("metrics.fid.weights", f"metrics.{key}.weights")) from None


class FrameFID(MetricDefaults):
    """FID of all sample frames against the frames of `num_reference` clips of `reference_split`,
    and the floor: the frames of as many `floor_split` clips as there are samples against the same
    reference (FID is biased upward at small N). Also the classifier's label histogram of the frames."""

    example_layout = "C T H W"  # clips; sample.py checks the checkpoint's examples before sampling

    def __init__(
        self,
        weights: str = "mnist_classifier.ckpt",
        reference_split: str = "train",
        floor_split: str = "test",
        num_reference: int = 1000,
        frames: str = "resize",
        batch_size: int = 1000,
    ):
        self.weights = weights
        self.reference_split = reference_split
        self.floor_split = floor_split
        self.num_reference = num_reference
        self.frames = frames
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, datamodule, device: torch.device, **_) -> dict:
        _check("frame_fid", samples, datamodule, frames=self.frames)
        classifier = _classifier("frame_fid", self.weights, device)
        fid = FrechetInceptionDistance(ClassifierFeatures(classifier), normalize=True, reset_real_features=False).to(
            device
        )
        reference = datamodule.reference_clips(self.reference_split, self.num_reference)
        self._update(fid, reference, real=True)
        frames = self._update(fid, samples, real=False)
        result = {
            "fid": float(fid.compute()),
            "num_samples": len(samples),
            "num_frames": len(frames),
            "num_reference": len(reference),
            "frames": self.frames,
        }
        fid.reset()
        self._update(fid, datamodule.reference_clips(self.floor_split, len(samples)), real=False)
        result["fid_floor"] = float(fid.compute())
        result.update(label_distribution(classifier, frames, device=device, batch_size=self.batch_size))
        return result

    def _update(self, fid: FrechetInceptionDistance, clips: torch.Tensor, real: bool) -> torch.Tensor:
        frames = classifier_frames(clips, self.frames)
        for x in _batches(frames, self.batch_size):
            fid.update(x.to(fid.device), real=real)
        return frames


class TemporalConsistency(MetricDefaults):
    """The classifier's digit label in every frame: the fraction of clips whose label never changes
    (`same_label_fraction`) and the mean fraction of a clip's frames that agree with its most common
    label (`majority_agreement`, 1 when all agree), for the samples and for as many real clips of
    `split`. Meaningful for one digit per clip: with two the classifier reads a blend.

    Chance level: a set whose frames all read as one digit is "consistent" whatever its clips show; the
    classifier reads pure noise as an 8 in every frame with confidence 1.0, so its confidence cannot tell.
    `chance_same_label_fraction` is the share of clips expected to read one digit throughout if their T
    frames were drawn independently from the set's frame labels (sum_k p_k^T; 1e-7 for 8 frames of ten
    evenly spread digits, 1.0 for noise read as 8s or a set collapsed to one digit). Above `max_chance`
    the fraction measures nothing: `same_label_fraction` is NaN and `note` says why. `above_chance` is
    (fraction - chance) / (1 - chance), 0 when the frames agree no more than chance predicts. The
    entropy of the clips' majority labels (`label_entropy_bits`; log2 10 = 3.32 for a uniform spread)
    and the classifier's mean top-class probability (`confidence`) are reported beside it."""

    example_layout = "C T H W"  # clips; sample.py checks the checkpoint's examples before sampling

    def __init__(
        self,
        weights: str = "mnist_classifier.ckpt",
        split: str = "test",
        frames: str = "crop",
        batch_size: int = 1000,
        max_chance: float = 0.5,
    ):
        self.weights = weights
        self.split = split
        self.frames = frames
        self.batch_size = batch_size
        self.max_chance = max_chance

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, datamodule, device: torch.device, **_) -> dict:
        _check("temporal_consistency", samples, datamodule, frames=self.frames)
        classifier = _classifier("temporal_consistency", self.weights, device)
        result = {"num_samples": len(samples), "frames": self.frames}
        reference = datamodule.reference_clips(self.split, len(samples))
        for prefix, clips in (("", samples), ("reference_", reference)):
            labels, confidence = self.labels(classifier, clips, device)
            majority = labels.mode(1).values
            p = torch.bincount(majority, minlength=classifier.num_classes).double() / len(majority)
            same = float((labels == labels[:, :1]).all(1).float().mean())
            frame_p = torch.bincount(labels.flatten(), minlength=classifier.num_classes).double() / labels.numel()
            chance = float((frame_p ** labels.shape[1]).sum())
            undefined = chance > self.max_chance
            result[f"{prefix}same_label_fraction"] = float("nan") if undefined else same
            result[f"{prefix}chance_same_label_fraction"] = chance
            result[f"{prefix}above_chance"] = (same - chance) / (1 - chance) if chance < 1 else float("nan")
            if undefined:
                result[f"{prefix}note"] = (
                    f"same_label_fraction is undefined: {same:.2f} of the clips read one digit in every frame, but "
                    f"{chance:.2f} would by chance (the frames read as few digits: noise, or a collapsed set), "
                    f"above max_chance={self.max_chance}"
                )
            result[f"{prefix}majority_agreement"] = float((labels == majority[:, None]).float().mean())
            result[f"{prefix}label_entropy_bits"] = float(-(p[p > 0] * p[p > 0].log2()).sum()) + 0.0  # no -0.0
            result[f"{prefix}confidence"] = float(confidence.mean())
        result["num_reference"] = len(reference)
        return result

    def labels(self, classifier: nn.Module, clips: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, T, H, W) -> the predicted digit per frame, long (N, T), and its probability (N, T)."""
        frames = classifier_frames(clips, self.frames)
        probs = torch.cat(
            [classifier(from_unit(x.to(device))).softmax(-1).cpu() for x in _batches(frames, self.batch_size)]
        )
        confidence, preds = probs.max(-1)
        return preds.view(len(clips), clips.shape[2]), confidence.view(len(clips), clips.shape[2])


class MotionSmoothness(MetricDefaults):
    """Motion of the intensity centre of mass c_t (pixels; intensity above `threshold`, so a faint
    haze does not pull it to the middle). Velocity v_t = c_{t+1} - c_t, acceleration a_t = v_{t+1} - v_t;
    reported: mean |a_t| (`acceleration`, px/frame^2, lower = smoother; bounces off the borders make
    it nonzero for real clips too, hence the reference), its median (`acceleration_median`: a steady
    wobble in every clip raises it, a few jumps do not), the fraction of clips with some |a_t| above
    `jump` px/frame^2 (`jump_fraction`) and mean |v_t| (`speed`, px/frame), for the samples and as
    many real clips of `split`. A frame whose mass is below `min_mass` (pixels of
    full intensity) has no centre: velocities and accelerations that touch it are left out, its
    share is `empty_frame_fraction`, and a statistic with nothing left is None."""

    example_layout = "C T H W"  # clips; sample.py checks the checkpoint's examples before sampling

    def __init__(self, split: str = "test", threshold: float = 0.1, min_mass: float = 1.0, jump: float = 4.0):
        self.split = split
        self.threshold = threshold
        self.min_mass = min_mass
        self.jump = jump

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, datamodule, device=None, **_) -> dict:
        _check("motion_smoothness", samples, datamodule)
        reference = datamodule.reference_clips(self.split, len(samples))
        result = {"num_samples": len(samples)}
        for prefix, clips in (("", samples), ("reference_", reference)):
            result.update({prefix + k: v for k, v in self.motion(clips).items()})
        result["num_reference"] = len(reference)
        return result

    def motion(self, clips: torch.Tensor) -> dict:
        n, _, t = clips.shape[:3]
        centre, mass = centre_of_mass(flatten_frames(clips), self.threshold)
        centre = centre.double().view(n, t, 2)
        valid = (mass >= self.min_mass).view(n, t)
        v = centre.diff(dim=1)
        v_ok = valid[:, 1:] & valid[:, :-1]
        a = v.diff(dim=1)
        a_ok = v_ok[:, 1:] & v_ok[:, :-1]
        a_norm = a.norm(dim=-1)
        jumps = (a_norm > self.jump) & a_ok  # (N, T - 2)
        return {
            "acceleration": _mean(a_norm[a_ok]),
            "acceleration_median": float(a_norm[a_ok].median()) if a_ok.any() else None,
            "jump_fraction": float(jumps.any(1).float().mean()) if a_ok.any() else None,
            "speed": _mean(v.norm(dim=-1)[v_ok]),
            "empty_frame_fraction": float((~valid).float().mean()),
        }


def _mean(x: torch.Tensor) -> float | None:
    return float(x.mean()) if len(x) else None
