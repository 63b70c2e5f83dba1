"""What a datamodule, a task, a network and a sampler provide to the rest of vdiff.

Each contract is a `typing.Protocol` marked `@runtime_checkable`, not an abstract base class: a class
meets it by having the members, whatever it inherits from, so a datamodule stays a plain
LightningDataModule, a network a plain `nn.Module` (no Lightning), and a newcomer's class needs no
vdiff import. Members every datamodule may leave alone get defaults from `DataDefaults`, a mixin
the bundled datamodules inherit (`num_classes = None`, `info() -> {}`, `log_samples` writing files).

`require(obj, contract, group)` is the start-up check: it raises ConfigError naming the config group,
the class and the first missing member with who uses it, e.g. "data (vdiff.data.Foo) does not provide
`shape`, which the task's samplers need; see vdiff/contracts.py". Callers use it where they build an
object (vdiff/run.py setup(), sample.py) or where they start to rely on one (the samples callback).
"""

import os
from typing import Protocol, runtime_checkable

import torch

from vdiff.utils.config import ConfigError

USES = {  # member -> who needs it, for the start-up error
    "shape": "the task's samplers need",
    "num_classes": "class-conditional sampling needs",
    "info": "the run config's data_info needs",
    "prepare_data": "start-up needs",
    "load_state_dict": "resuming and sample.py need",
    "write_samples": "sample.py needs",
    "log_samples": "the samples callback needs",
    "encode": "sample.py's prompt and a latent-diffusion first stage need",
    "decode": "a latent-diffusion first stage needs",
    "latent_shape": "a latent-diffusion first stage needs",
    "reconstruct": "sample.py's reconstructions and the reconstruction callback need",
    "reference_clips": "reconstructions and the video metrics need",
    "directions": "metrics.direction_accuracy needs",
    "mask_id": "sample.py's prompt and the token metrics need",
    "decode_batch": "text samples need",
    "reference_images": "the image metrics need",
    "reference_labels": "metrics.class_accuracy needs",
    "example_layout": "the start-up layout check needs",
    "net": "training needs",
    "sample_shape": "sampling needs",
    "prior": "sampling needs",
    "generate": "sampling needs",
    "sampler": "sampling needs",
    "schedule": "sampling needs",
    "with_max_steps": "trainer=debug's sample limits need",
    "settings": "sample.py's metrics.json needs",
    "check_checkpoint": "sample.py's start-up metric check needs",
    "bidirectional": "metrics.masked_accuracy needs",
    "eos_id": "metrics.gen_ppl needs",
    "window_nll": "the token metrics need",
    "check_path": "the task's start-up sampler check needs",
    "clip_x0": "the task's start-up sampler check needs",
    "check": "the task's start-up sampler check needs",
    "prior_std": "Gaussian diffusion's prior needs",
    "min_snr": "task.min_snr_gamma's start-up check needs",
    "sample_t": "the diffusion loss needs",
    "q_sample": "the diffusion loss needs",
    "target": "the diffusion loss needs",
    "loss_weight": "the diffusion loss needs",
}


@runtime_checkable
class DataModule(Protocol):
    shape: tuple  # of one example: (C, H, W) images, (C, T, H, W) clips, (L,) tokens
    num_classes: int | None  # classes of batch["cond"]; None when unconditional

    def info(self) -> dict: ...  # values configs may read as ${data_info.<key>} (e.g. vocab_size)
    def prepare_data(self) -> None: ...  # checks or fetches the files; fails with the file named
    def load_state_dict(self, state: dict) -> None: ...  # what a checkpoint stored (a vocabulary)
    # samples are the task's data-space output (GenerativeTask.generate): images in [0, 1], token ids
    def write_samples(self, samples: torch.Tensor, out_dir: str) -> list[str]: ...  # sample.py's files
    def log_samples(self, trainer, samples: torch.Tensor) -> None: ...  # samples drawn while training


@runtime_checkable
class TokenData(Protocol):
    """Token data (batch["x"] (B, L) long ids, id `mask_id` = [MASK]): prompts and the text metrics.
    Where a token may stand for more than one character (a BPE), val / test batches also carry
    batch["chars"] (B,), each window's characters (vdiff.data.tokens.window_chars), for bits per character."""

    mask_id: int

    def encode(self, text: str) -> torch.Tensor: ...
    def decode_batch(self, ids: torch.Tensor) -> list[str]: ...


@runtime_checkable
class LabelNames(Protocol):
    """Data whose classes have names (a user's class folders, CIFAR-10's): sample.py's `labels=` takes
    them as well as the indices, and the names travel in the checkpoint."""

    def label_names(self) -> list[str] | None: ...  # the names of labels 0..K-1; None when unconditional


@runtime_checkable
class ReferenceImages(Protocol):
    """Real images (N, C, H, W) in [0, 1] of a split, for the image metrics."""

    def reference_images(self, split: str = "train", n: int | None = None) -> torch.Tensor: ...


@runtime_checkable
class ReferenceClips(Protocol):
    """Real clips (N, C, T, H, W) in [0, 1] of a split, for reconstructions and the video metrics."""

    def reference_clips(self, split: str = "train", n: int | None = None) -> torch.Tensor: ...


@runtime_checkable
class Directions(Protocol):
    """Clips labelled by a direction of motion: `directions` (K, 2) unit (dy, dx) per label, y down."""

    directions: torch.Tensor


@runtime_checkable
class ReferenceLabels(Protocol):
    """The (N,) long classes of `reference_images(split, n)`, for metrics.class_accuracy."""

    def reference_labels(self, split: str = "train", n: int | None = None) -> torch.Tensor: ...


@runtime_checkable
class Network(Protocol):
    """An nn.Module called as net(x, t, cond), no Lightning. `cond` is (B,) long labels in 0..K-1 or
    None, the null condition (unconditional; classifier-free guidance asks for it). A conditional
    network owns its Conditioner (vdiff/models/conditioning.py: the embedding, the label dropout
    `cond_drop_prob`, the null condition); an unconditional one refuses labels."""

    example_layout: str  # one example's dimensions, e.g. "C H W", "C T H W", "L"

    def __call__(self, *args, **kwargs) -> torch.Tensor: ...


@runtime_checkable
class InputCheck(Protocol):
    """A network that can say, before training, that examples of a shape do not fit it (the U-Net:
    channels, sides its downsampling divides, the size its attention resolutions count from).
    Optional: a network without it is taken to fit any example of its layout."""

    def check_input(self, shape: tuple) -> None: ...  # ValueError in the net's own parameter names


@runtime_checkable
class Sampler(Protocol):
    """Runs a reverse process over `net` from x_T = `x` (noise, or tokens with [MASK]) to the net's x_0."""

    def __call__(
        self, net, schedule, x: torch.Tensor, *, cond=None, generator=None, progress: bool = False
    ) -> torch.Tensor: ...
    def with_max_steps(self, max_steps: int, num_steps: int | None) -> "Sampler": ...  # same kind, fewer steps
    def settings(self, num_steps: int | None) -> dict: ...  # {"steps", "eta", "guidance_scale"}, None where n/a


@runtime_checkable
class PathSampler(Protocol):
    """A sampler of Gaussian diffusion (vdiff/samplers/base.py's tables, continuous.py's any path): the task
    checks at construction that it can run on the schedule, so a mismatch fails at start-up."""

    clip_x0: bool  # clamp each predicted x0 to [-1, 1] (pixels; a latent task refuses it)

    def check_path(self, path) -> None: ...  # ValueError naming the keys when it cannot run on `path`
    def check(self, num_steps: int | None) -> None: ...  # ValueError when its steps do not fit the table


@runtime_checkable
class DiffusionPath(Protocol):
    """The schedule of Gaussian diffusion (vdiff/diffusion/paths.py): x_t = alpha(t) x0 + sigma(t) eps,
    with what the loss needs and the law of x_T. `min_snr` is true where `min_snr_weight(t, gamma)`
    gives Min-SNR-gamma loss weights (the tables); other paths carry their own weight (`loss_weight`)."""

    name: str  # the schedule's config option, for error messages
    num_steps: int | None  # the table's length; None on continuous paths
    prior_std: float  # x_T ~ N(0, prior_std^2)
    min_snr: bool

    def sample_t(self, n: int, generator=None, device=None) -> torch.Tensor: ...
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor: ...
    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...
    def loss_weight(self, t: torch.Tensor) -> torch.Tensor | None: ...
    def min_snr_weight(self, t: torch.Tensor, gamma: float) -> torch.Tensor: ...


@runtime_checkable
class Task(Protocol):
    """A LightningModule over a network (training_step etc. come from Lightning)."""

    net: torch.nn.Module


@runtime_checkable
class GenerativeTask(Protocol):
    """A task that samples (vdiff/generate.py): it owns x_T's shape and law and the map to data space,
    `generate(prior(n, sample_shape(data.shape), generator), cond=..., generator=..., progress=...)`.
    vdiff.tasks.base.SamplingTask gives sample_shape (the data's shape) and generate (the sampler,
    then `to_data`); a latent task overrides sample_shape and to_data (decode) and nothing else changes."""

    net: torch.nn.Module
    sampler: Sampler
    schedule: object  # its `num_steps` (None for continuous masking schedules) bounds the sampler

    def sample_shape(self, data_shape: tuple) -> tuple: ...  # one x_T for examples of data_shape
    def prior(self, n: int, shape, generator=None) -> torch.Tensor: ...  # x_T (n, *shape) on the CPU
    # data-space samples: images / clips in [0, 1], token ids; what write_samples, log_samples and metrics take
    def generate(self, x: torch.Tensor, cond=None, generator=None, progress: bool = False) -> torch.Tensor: ...


@runtime_checkable
class ReconstructionTask(Protocol):
    """A task that reconstructs rather than samples (a VAE): sample.py writes `reconstruct` of real clips."""

    net: torch.nn.Module

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, ...) in [-1, 1] -> (B, ...) in [0, 1]


@runtime_checkable
class FirstStage(Protocol):
    """A VAE network a latent-diffusion task freezes: `encode(x)` returns a posterior with `sample(generator)`,
    `mode()` and `kl()`; `decode(z)` maps latents back to data; `latent_shape` sizes the latent noise."""

    def encode(self, x: torch.Tensor): ...
    def decode(self, z: torch.Tensor) -> torch.Tensor: ...
    def latent_shape(self, data_shape) -> tuple: ...


@runtime_checkable
class TokenTask(Protocol):
    """A token model (masked diffusion, autoregressive, block diffusion), for the token metrics:
    `window_nll(x (B, L) long, generator, dtype)` -> (B,) nats of each window, exact for the
    autoregressive model and the NELBO's one-draw estimate for the diffusion tasks."""

    mask_id: int
    bidirectional: bool  # the denoiser reads a whole masked window (masked diffusion), not a causal one
    eos_id: int | None  # the token that ends a sample (block diffusion), else None

    def window_nll(self, x: torch.Tensor, generator=None, dtype=torch.float32) -> torch.Tensor: ...


@runtime_checkable
class Metric(Protocol):
    """sample.py's `metric(samples, datamodule, device, task=..., out_dir=..., labels=...) -> dict`."""

    example_layout: str | None  # the examples it measures ("C H W", "C T H W", "L"); None: any
    needs_labels: bool  # it compares samples with their requested class

    def check_checkpoint(self, task, datamodule) -> None: ...  # ConfigError, before sampling, if it cannot measure them
    def __call__(self, samples: torch.Tensor, datamodule, device, **kwargs) -> dict: ...


def members(contract: type) -> list[str]:
    """The members a contract declares, in order."""
    names = list(getattr(contract, "__annotations__", {}))
    return names + [n for n in vars(contract) if not n.startswith("_") and n not in names]


def require(obj, contract: type, group: str) -> None:
    """ConfigError, in one sentence, when `obj` (built from config group `group`) lacks a member of `contract`."""
    for name in members(contract):
        if not hasattr(obj, name):
            cls = type(obj)
            raise ConfigError(
                f"{group} ({cls.__module__}.{cls.__qualname__}) does not provide `{name}`, which "
                f"{USES.get(name, 'vdiff needs')}; see vdiff/contracts.py"
            )


class DataDefaults:
    """Defaults for the DataModule members a datamodule may leave out."""

    num_classes: int | None = None

    def info(self) -> dict:
        return {}

    def log_samples(self, trainer, samples: torch.Tensor) -> None:
        """Without a renderer of its own: `write_samples` into <run dir>/samples/step<step>/."""
        self.write_samples(samples, os.path.join(trainer.default_root_dir, "samples", f"step{trainer.global_step:07d}"))


class MetricDefaults:
    """Defaults for the Metric members a metric may leave out."""

    example_layout: str | None = None
    needs_labels: bool = False

    def check_checkpoint(self, task, datamodule) -> None:
        """Nothing to refuse: the layout and label checks of sample.py cover this metric."""
