"""Cost of space-time attention: factorized vs full 3D, forward+backward of a denoiser per clip size.

    python -m vdiff.bench_attention                # the reference table on CUDA; small CPU shapes without it
    python -m vdiff.bench_attention --shapes 4x8x8 8x16x16 --batch-size 2 --steps 2   # choose the shapes

For each model config (default: `factorized_unet_tiny` and `full3d_unet_tiny`, the same network but
for its attention) and each (T, H, W), times `--steps` forward+backward passes of a (batch, 1, T, H, W)
clip after `--warmup`, and on CUDA reports the peak memory allocated. A size that runs out of memory
is reported as OOM and the table goes on. Each row is printed as it is measured; `--out` also writes
the table as JSON. Without CUDA the defaults are the CPU ones (`CPU_DEFAULTS`: two small shapes, batch 2,
2 steps; the GPU shapes take minutes per row on a CPU), and so is any flag left unset.
"""

import argparse
import json
import os
import time

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vdiff.bench import CONFIGS

GPU_DEFAULTS = {
    "shapes": ["4x8x8", "8x16x16", "8x32x32", "16x32x32", "16x64x64"],
    "batch_size": 8,
    "steps": 10,
    "warmup": 3,
}
CPU_DEFAULTS = {"shapes": ["4x8x8", "8x16x16"], "batch_size": 2, "steps": 2, "warmup": 1}


def load_net(model: str, size: int) -> torch.nn.Module:
    cfg = OmegaConf.load(f"{CONFIGS}/model/{model}.yaml")
    for parent in cfg.pop("defaults", []):
        if parent != "_self_":
            cfg = OmegaConf.merge(OmegaConf.load(f"{CONFIGS}/model/{parent}.yaml"), cfg)
    if "image_size" in cfg.net:
        cfg.net.image_size = size
    return instantiate(cfg.net)


def measure(net, shape, batch_size: int, steps: int, warmup: int, device, dtype) -> dict:
    x = torch.randn(batch_size, 1, *shape, device=device)
    t = torch.randint(0, 1000, (batch_size,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = net(x, t).float().pow(2).mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
    sync()
    ms = (time.perf_counter() - start) / steps * 1000
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"ms": ms, "peak_gib": peak}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["factorized_unet_tiny", "full3d_unet_tiny"])
    p.add_argument("--shapes", nargs="+", default=None, help="TxHxW (default: GPU_DEFAULTS or CPU_DEFAULTS)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    print(f"device: {device.type}; {len(args.models)} models x {len(args.shapes)} shapes", flush=True)
    print("| model | T x H x W | batch | precision | ms / fwd+bwd | peak GiB |\n|---|---|---|---|---|---|", flush=True)
    rows = []
    for shape_text in args.shapes:
        shape = tuple(int(s) for s in shape_text.split("x"))
        for model in args.models:
            torch.manual_seed(0)
            net = load_net(model, shape[-1]).to(device)
            row = {"model": model, "shape": shape_text, "batch": args.batch_size, "precision": precision}
            try:
                row |= measure(
                    net,
                    shape,
                    batch_size=args.batch_size,
                    steps=args.steps,
                    warmup=args.warmup,
                    device=device,
                    dtype=dtype,
                )
            except torch.OutOfMemoryError:
                row |= {"ms": None, "peak_gib": None, "oom": True}
            rows.append(row)
            print(_row(row), flush=True)
            del net
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


def _row(r: dict) -> str:
    ms = "OOM" if r.get("oom") else f"{r['ms']:.1f}"
    peak = "OOM" if r.get("oom") else ("-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}")
    return f"| {r['model']} | {r['shape']} | {r['batch']} | {r['precision']} | {ms} | {peak} |"


if __name__ == "__main__":
    main()
