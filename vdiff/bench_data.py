"""Images per second of the image-folder cache against torchvision's ImageFolder on the same files.

    python -m vdiff.bench_data --root DIR [--resolution 32] [--batch-size 128] [--batches 100] [--workers 2]

Rows (a markdown table on stdout):
- `cache build`: the one-off decode of every file into a fresh cache (a temporary cache_dir), seconds.
- `cache` / `cache on_device`: batches of data=image_folder's training stream (random flips, x in
  [-1, 1]) from the in-memory uint8 array, or from the accelerator (when there is one).
- `torchvision ImageFolder`: Resize + CenterCrop + RandomHorizontalFlip + ToTensor + Normalize per
  file, shuffled, DataLoader(num_workers=--workers), decoding every file in every epoch.
Each loader row times --batches batches after one warm-up batch (the workers' start-up is excluded).
"""

import argparse
import tempfile
import time

import torch


def _rate(batches, n: int, batch_size: int) -> float:
    it = iter(batches)
    next(it)  # warm-up: workers started, first allocation done
    start = time.perf_counter()
    for _ in range(n):
        x = next(it)
        x = x["x"] if isinstance(x, dict) else x[0]
    if x.is_cuda:
        torch.cuda.synchronize()
    return n * batch_size / (time.perf_counter() - start)


def cache_rows(root: str, resolution: int, batch_size: int, batches: int) -> list[tuple[str, str]]:
    from types import SimpleNamespace

    from vdiff.data.image_folder import ImageFolderDataModule

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        dm = ImageFolderDataModule(root, resolution=resolution, batch_size=batch_size, cache_dir=cache)
        start = time.perf_counter()
        dm.prepare_data()
        build = time.perf_counter() - start
        dm.setup()
        n = len(dm.splits["train"]) + len(dm.splits["val"])
        rows.append((f"cache build ({n} files, once)", f"{build:.2f} s ({n / build:,.0f} img/s)"))
        rows.append(("cache (memory)", f"{_rate(dm.train_dataloader(), batches, batch_size):,.0f} img/s"))
        if torch.cuda.is_available():
            dm.on_device = True
            dm.trainer = SimpleNamespace(
                global_rank=0,
                world_size=1,
                global_step=0,
                accumulate_grad_batches=1,
                strategy=SimpleNamespace(root_device=torch.device("cuda")),
            )
            rows.append(("cache on_device (cuda)", f"{_rate(dm.train_dataloader(), batches, batch_size):,.0f} img/s"))
    return rows


def torchvision_row(root: str, resolution: int, batch_size: int, batches: int, workers: int) -> tuple[str, str]:
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.Resize(resolution),
            transforms.CenterCrop(resolution),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    dataset = datasets.ImageFolder(root, transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )

    def endless():
        while True:
            yield from loader

    return (f"torchvision ImageFolder, {workers} workers", f"{_rate(endless(), batches, batch_size):,.0f} img/s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="an image folder with class subfolders (torchvision needs them)")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=100, help="timed batches per loader")
    parser.add_argument("--workers", type=int, default=2, help="torchvision DataLoader workers")
    args = parser.parse_args(argv)
    rows = cache_rows(args.root, args.resolution, args.batch_size, args.batches)
    rows.append(torchvision_row(args.root, args.resolution, args.batch_size, args.batches, args.workers))
    print(f"| {args.resolution}x{args.resolution} RGB, batch {args.batch_size} | throughput |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
