"""Writing generated samples to a folder: what `sample.py` leaves behind for each kind of data.

A datamodule names its writer through `write_samples(samples, out_dir)`; these are the writers.
"""
import json
import math
import os

import torch
from torchvision.utils import save_image


def write_images(samples: torch.Tensor, out_dir: str) -> list[str]:
    """samples (N, C, H, W) in [0, 1] -> samples.pt (the tensor) and samples.png (a grid of up to 256)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "samples.pt"), os.path.join(out_dir, "samples.png")]
    torch.save(samples, paths[0])
    grid = samples[:256]
    save_image(grid, paths[1], nrow=int(math.ceil(math.sqrt(len(grid)))), padding=2, pad_value=1.0)
    return paths


def write_text(samples: torch.Tensor, texts: list[str], out_dir: str) -> list[str]:
    """samples (N, L) token ids and their decoded texts -> samples.txt (one sample per block, separated
    by a rule) and samples.json ({"ids": [[...]], "text": [...]})."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "samples.txt"), os.path.join(out_dir, "samples.json")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.write(format_texts(texts))
    with open(paths[1], "w", encoding="utf-8") as f:
        json.dump({"ids": samples.tolist(), "text": texts}, f)
    return paths


def format_texts(texts: list[str]) -> str:
    return "".join(f"===== sample {i} =====\n{t}\n" for i, t in enumerate(texts))
