"""A toy dataset and network added through vdiff/contracts.py alone (no edit to run.py, sample.py or
generate.py): points on a ring in 2-D, denoised by a small MLP. docs/guides/extending.md walks
through it; tests/test_contracts.py trains, resumes and samples it, tests/test_extending.py runs the page's
commands on it.

    python train.py hydra.searchpath=[file://tests/toy/configs] data=toy_ring model=toy_mlp
"""

import itertools
import math
import os

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from vdiff.contracts import DataDefaults


def _stack(rows: list) -> dict:
    return {"x": torch.stack(rows)}


class RingDataModule(DataDefaults, L.LightningDataModule):
    """Points (x, y) = radius (cos a, sin a) + noise with a uniform angle: batch["x"] (B, 2) in [-1, 1].
    DataDefaults gives num_classes = None, info() = {} and log_samples (write_samples into the run dir)."""

    def __init__(
        self, batch_size: int = 64, radius: float = 0.7, noise: float = 0.05, num_val: int = 256, seed: int = 0
    ):
        super().__init__()
        self.batch_size, self.radius, self.noise, self.num_val, self.seed = batch_size, radius, noise, num_val, seed
        self.shape = (2,)  # of one example

    def points(self, n: int, generator: torch.Generator) -> torch.Tensor:
        angle = torch.rand(n, generator=generator) * 2 * math.pi
        ring = self.radius * torch.stack([angle.cos(), angle.sin()], 1)
        return ring + self.noise * torch.randn(n, 2, generator=generator)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(self.seed)
        return ({"x": self.points(self.batch_size, g)} for _ in itertools.count())  # an endless stream

    def val_dataloader(self):
        x = self.points(self.num_val, torch.Generator().manual_seed(self.seed + 1))
        return DataLoader(x, batch_size=self.batch_size, collate_fn=_stack)

    def write_samples(self, samples: torch.Tensor, out_dir: str) -> list[str]:
        """samples (N, 2) -> samples.pt and samples.csv (one point a line), in the ring's coordinates.
        The Gaussian task hands data-space samples as images want them, (x + 1) / 2 for data in [-1, 1]
        (`SamplingTask.to_data`), so the points are mapped back first."""
        samples = samples * 2 - 1
        os.makedirs(out_dir, exist_ok=True)
        paths = [os.path.join(out_dir, "samples.pt"), os.path.join(out_dir, "samples.csv")]
        torch.save(samples, paths[0])
        with open(paths[1], "w") as f:
            f.writelines(f"{x:.4f},{y:.4f}\n" for x, y in samples.tolist())
        return paths


class NoShapeDataModule(RingDataModule):
    """A datamodule that forgot `shape`: start-up names it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        del self.shape


class MLP(nn.Module):
    """net(x (B, 2), t (B,), cond) -> (B, 2): an MLP over the point and a sinusoidal embedding of t."""

    example_layout = "D"  # one example is a vector

    def __init__(self, dim: int = 2, hidden: int = 64, freqs: int = 8):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), freqs)), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(dim + 2 * freqs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        angles = t.float()[:, None] / self.freqs
        return self.mlp(torch.cat([x, angles.sin(), angles.cos()], 1))
