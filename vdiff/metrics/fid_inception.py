"""FID in the standard Inception-v3 feature space (torchmetrics' FrechetInceptionDistance over
torch-fidelity's port of the TF Inception, pool3, 2048 features): the number papers report for RGB
images such as CIFAR-10. Greyscale images are repeated to three channels. Samples and reference
images are (N, C, H, W) in [0, 1], quantised to uint8 (as a PNG of them would be) and resized to
299x299 by the Inception's own TF-compatible bilinear resize.

The weights are torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`: `weights: null` takes
them from torch's hub cache (`<torch hub dir>/checkpoints/`), downloading them there when absent;
`weights: PATH` reads that file. They are loaded when the metric is built, so sample.py fails at
start-up, in one sentence naming the file and where to place it, when neither works (no network).
"""

import os
import urllib.request

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vdiff.contracts import MetricDefaults
from vdiff.metrics.fid import _batches, generated_fid
from vdiff.utils.config import ConfigError

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
KEY = "metrics.fid_inception"


def hub_weights_path() -> str:
    """Where `weights: null` looks for the Inception weights (and downloads them to)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", WEIGHTS_FILE)


def _download(path: str, timeout: float = 20.0) -> None:
    """WEIGHTS_URL into `path`, through a temporary file so a failure leaves nothing behind."""
    tmp = f"{path}.part"
    try:
        with urllib.request.urlopen(WEIGHTS_URL, timeout=timeout) as response:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def weights_file(weights: str | None) -> str:
    """The weights file to load: `weights` when given, else the hub cache's (downloaded if needed).
    ValueError, one sentence naming the file and where to place it, when there is none."""
    if weights is not None:
        path = os.path.abspath(os.path.expanduser(str(weights)))
        if not os.path.isfile(path):
            raise ValueError(
                f"{KEY}.weights={weights}: no such file; place torch-fidelity's {WEIGHTS_FILE} there "
                f"or at {hub_weights_path()} (with {KEY}.weights=null)"
            )
        return path
    path = hub_weights_path()
    if not os.path.isfile(path):
        try:
            _download(path)
        except Exception as e:
            raise ValueError(
                f"{KEY}: the Inception weights are not at {path} and could not be downloaded ({type(e).__name__}); "
                f"place torch-fidelity's {WEIGHTS_FILE} ({WEIGHTS_URL}) there or pass {KEY}.weights=PATH"
            ) from e
    return path


def load_inception(weights: str | None) -> nn.Module:
    """torchmetrics' Inception (uint8 (N, 3, H, W) -> (N, 2048) pool3 features) with the weights of
    `weights_file(weights)`; ValueError in one sentence when they cannot be had or read."""
    path = weights_file(weights)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        return NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=path
        )
    except ModuleNotFoundError as e:
        raise ValueError(f"{KEY} needs torch-fidelity: pip install torch-fidelity==0.3.0 ({e})") from e
    except Exception as e:
        raise ValueError(
            f"{KEY}: {path} is not torch-fidelity's {WEIGHTS_FILE} ({type(e).__name__}); replace it with a fresh copy"
        ) from e


class UnitImageFeatures(nn.Module):
    """torchmetrics feature extractor: images (N, 1 or 3, H, W) in [0, 1] -> features of `inception`,
    which takes uint8 RGB: grey is repeated to three channels, values rounded to 0..255."""

    def __init__(self, inception: nn.Module, num_features: int = 2048):
        super().__init__()
        self.inception = inception
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.inception((images.clamp(0, 1) * 255).round().to(torch.uint8))


class InceptionFID(MetricDefaults):
    """FID of samples against `num_reference` images of `reference_split` in Inception features, and
    the real-vs-real floor: as many images of `floor_split` as there are samples (or all of it, if
    fewer: `floor_num`) against the same reference. The reference statistics are kept between calls
    on the same datamodule and device (`reset_real_features=False`); no cross-process sync."""

    example_layout = "C H W"

    def __init__(
        self,
        weights: str | None = None,
        reference_split: str = "train",
        floor_split: str = "val",
        num_reference: int | None = 10000,
        batch_size: int = 200,
    ):
        self.weights = weights
        self.reference_split = reference_split
        self.floor_split = floor_split
        self.num_reference = num_reference
        self.batch_size = batch_size
        inception = load_inception(weights)  # fails now, at start-up
        self.features = UnitImageFeatures(inception, num_features=getattr(inception, "num_features", 2048))
        self._fid = None
        self._key = None
        self._floors: dict[int, tuple[float, int]] = {}

    @torch.no_grad()
    def _prepare(self, datamodule, device: torch.device) -> None:
        device = torch.device(device)
        if self._fid is not None and self._key == (id(datamodule), device):
            return
        fid = FrechetInceptionDistance(
            self.features, normalize=True, reset_real_features=False, sync_on_compute=False
        ).to(device)
        for x in _batches(datamodule.reference_images(self.reference_split, self.num_reference), self.batch_size):
            fid.update(x.to(device), real=True)
        self._fid, self._key, self._device, self._floors = fid, (id(datamodule), device), device, {}

    def _fid_of(self, images: torch.Tensor) -> float:
        return generated_fid(self._fid, images, self.batch_size, self._device)

    @torch.no_grad()
    def __call__(self, samples: torch.Tensor, datamodule, device, **_) -> dict:
        if samples.shape[1:] != tuple(datamodule.shape):
            raise ConfigError(
                f"{KEY}: samples of shape {tuple(samples.shape[1:])} do not match the data's {tuple(datamodule.shape)}"
            )
        if samples.shape[1] not in (1, 3):
            raise ConfigError(f"{KEY} measures greyscale or RGB images, not {samples.shape[1]} channels")
        if len(samples) < 2:
            raise ConfigError(f"{KEY} needs at least 2 samples for a covariance (num_samples={len(samples)})")
        self._prepare(datamodule, device)
        n = len(samples)
        result = {"fid": self._fid_of(samples), "num_samples": n}
        result["num_reference"] = int(self._fid.real_features_num_samples)
        if n not in self._floors:
            floor = datamodule.reference_images(self.floor_split, n)
            self._floors[n] = (self._fid_of(floor), len(floor))
        result["fid_floor"], result["floor_num"] = self._floors[n]
        return result
