"""Write Moving MNIST clips as video files, to try `data=video_folder` on real files:

    python -m vdiff.data.make_moving_mnist_videos --out data/mm_videos --n 200
    python -m vdiff.data.make_moving_mnist_videos --out data/mm_dirs --n 200 --num-directions 4   # class folders

Clip i is `vdiff.data.moving_mnist.moving_mnist` of the MNIST training digits (read from --data,
default $VDIFF_DATA_DIR or ./data, downloaded there when missing) seeded by --seed, written as
<out>/clip<i>.mp4 (H.264 through PyAV, --format gif for GIFs). With --num-directions K >= 2 every
clip moves in one of K labelled directions and lies in the subfolder of its direction (right, down,
left, up for K = 4; direction<k> otherwise), the layout `data.conditional=true` reads as classes.
"""

import argparse
import os
import sys

import torch
from PIL import Image

from vdiff.data.mnist import load_split
from vdiff.data.moving_mnist import moving_mnist
from vdiff.outputs import write_gif, write_mp4

FOUR = ("right", "down", "left", "up")  # theta = 2 pi k / 4 with y pointing down


def direction_name(k: int, num_directions: int) -> str:
    return FOUR[k] if num_directions == 4 else f"direction{k}"


def write_clips(
    out: str,
    n: int,
    *,
    data_dir: str,
    num_frames: int = 20,
    size: int = 64,
    num_digits: int = 2,
    num_directions: int = 0,
    fmt: str = "mp4",
    fps: int = 8,
    seed: int = 0,
) -> list[str]:
    """Writes n clips under `out`; returns their paths."""
    digits, labels = load_split(data_dir, "MNIST", split="train", download=True)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randint(0, num_directions, (n,), generator=g) if num_directions else None
    clips = moving_mnist(
        digits[:, 0],
        n,
        num_frames=num_frames,
        size=size,
        num_digits=num_digits,
        generator=g,
        directions=directions,
        num_directions=max(num_directions, 1),
        labels=labels,
    ).clips
    paths = []
    for i, clip in enumerate(clips):
        folder = out if directions is None else os.path.join(out, direction_name(int(directions[i]), num_directions))
        os.makedirs(folder, exist_ok=True)
        frames = [Image.fromarray(frame.numpy()) for frame in clip[0]]
        path = os.path.join(folder, f"clip{i:05d}.{fmt}")
        (write_mp4 if fmt == "mp4" else write_gif)(frames, path, fps)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder to write the clips into")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument("--frames", type=int, default=20, help="frames per clip (default 20)")
    parser.add_argument("--size", type=int, default=64, help="frame height = width, even (default 64)")
    parser.add_argument("--digits", type=int, default=2, help="digits per clip (default 2)")
    parser.add_argument("--num-directions", type=int, default=0, help="K >= 2: labelled directions as subfolders")
    parser.add_argument("--format", choices=["mp4", "gif"], default="mp4")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=os.environ.get("VDIFF_DATA_DIR", "data"), help="where MNIST is (or goes)")
    args = parser.parse_args(argv)
    problems = [
        (args.n < 1, f"--n {args.n} must be at least 1"),
        (args.frames < 1, f"--frames {args.frames} must be at least 1"),
        (args.size <= 28 or args.size % 2, f"--size {args.size} must be even and above the 28 px of a digit"),
        (args.digits < 1, f"--digits {args.digits} must be at least 1"),
        (
            args.num_directions in (1,) or args.num_directions < 0,
            f"--num-directions {args.num_directions} must be 0 or >= 2",
        ),
    ]
    for bad, message in problems:
        if bad:
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
    paths = write_clips(
        args.out,
        args.n,
        data_dir=args.data,
        num_frames=args.frames,
        size=args.size,
        num_digits=args.digits,
        num_directions=args.num_directions,
        fmt=args.format,
        fps=args.fps,
        seed=args.seed,
    )
    print(f"wrote {len(paths)} clips to {args.out}")


if __name__ == "__main__":
    main()
