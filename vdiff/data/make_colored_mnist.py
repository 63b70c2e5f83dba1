"""Coloured MNIST: a real 32x32 RGB image folder made from MNIST digits, for trying `data=image_folder`.

    python -m vdiff.data.make_colored_mnist --out data/colored_mnist --n 10000 [--seed 0] [--data-root DIR]

Writes `<out>/<digit>/<index>.png`, one subfolder per class 0..9 (so `data.conditional=true` has
labels). Image i is MNIST training image j_i (the first n of a permutation drawn from the seed), placed
at a random offset in a 32x32 canvas and composited, with its grey level as the alpha, in a random
colour over a background of another random colour (a vertical gradient between two shades of it).
Colours: the digit is bright (HSV value 0.75..1), the background dark (value 0.1..0.5), their hues at
least 60 degrees apart, so every image is readable. Everything is a function of the seed: the same
command writes the same bytes. MNIST is read from --data-root, default $VDIFF_DATA_DIR, else ./data
(`<root>/MNIST/raw/*-ubyte.gz`, checked against torchvision's MD5s).
"""

import argparse
import colorsys
import os

import numpy as np
from PIL import Image

from vdiff.data.mnist import load_split

SIZE = 32


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def colored_digits(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 28, 28) grey digits -> uint8 (N, 32, 32, 3) coloured composites (see the module doc)."""
    n = len(digits)
    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    ramp = np.linspace(0.0, 1.0, SIZE, dtype=np.float32)[:, None, None]  # (32, 1, 1): top to bottom
    for i in range(n):
        h_bg = rng.random()
        h_fg = h_bg + rng.uniform(1 / 6, 5 / 6)  # at least 60 degrees from the background's hue
        fg = _rgb(h_fg, rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0))
        top = _rgb(h_bg, rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.5))
        bottom = _rgb(h_bg, rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.5))
        canvas = top * (1 - ramp) + bottom * ramp  # (32, 32, 3) vertical gradient
        alpha = np.zeros((SIZE, SIZE, 1), dtype=np.float32)
        dy, dx = rng.integers(0, SIZE - 28 + 1, size=2)
        alpha[dy : dy + 28, dx : dx + 28, 0] = digits[i] / 255.0
        image = canvas * (1 - alpha) + fg * alpha
        out[i] = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return out


def make(out: str, n: int, seed: int = 0, data_root: str | None = None) -> list[str]:
    """Write n coloured digits under `out` (see the module doc); returns the written paths."""
    root = data_root or os.environ.get("VDIFF_DATA_DIR") or "data"
    images, labels = load_split(root, "MNIST", "train")
    if not 1 <= n <= len(labels):
        raise ValueError(f"--n={n} must be in 1..{len(labels)}, the MNIST training images")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(labels))[:n]
    pixels = colored_digits(images[pick, 0].numpy(), rng)
    paths = []
    for i, (j, image) in enumerate(zip(pick, pixels)):
        folder = os.path.join(out, str(int(labels[j])))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:05d}.png")
        Image.fromarray(image, "RGB").save(path, optimize=False)
        paths.append(path)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the folder to write <digit>/<index>.png into")
    parser.add_argument("--n", type=int, default=10000, help="how many images (at most 60000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-root", default=None, help="folder holding MNIST/raw/ (default: $VDIFF_DATA_DIR, ./data)"
    )
    args = parser.parse_args(argv)
    try:
        paths = make(args.out, args.n, seed=args.seed, data_root=args.data_root)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {len(paths)} 32x32 RGB images in 10 class folders under {args.out}")


if __name__ == "__main__":
    main()
