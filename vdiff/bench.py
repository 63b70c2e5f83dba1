"""Training throughput of a run config under speed variants, through the real Trainer and datamodule.

    python -m vdiff.bench                                   # unet_tiny MNIST DDPM on the CPU
    python -m vdiff.bench --accelerator gpu --batch-sizes 128 1024 --steps 200
    python -m vdiff.bench --experiment text_shakespeare --model transformer --batch-sizes 64 --variants fp32 bf16

Each row is one short `Trainer.fit` (no validation, checkpoints or loggers): the first `--warmup`
steps (compilation, allocator warm-up) are not timed, the next `--steps` are. Prints a table of
examples/s (images or sequences), tokens/s for token data, and ms/step; `--out` also writes it as JSON.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict

from vdiff.run import setup

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

# name -> overrides; each adds one speed option to the previous row.
VARIANTS = {
    "fp32": ["trainer.precision=32-true"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "bf16 compile": ["trainer.precision=bf16-mixed", "model.compile=true"],
    "dataloader fp32": ["trainer.precision=32-true"],
    "on_device fp32": ["data.on_device=true", "trainer.precision=32-true"],
    "on_device bf16": ["data.on_device=true", "trainer.precision=bf16-mixed"],
    "on_device bf16 compile": ["data.on_device=true", "trainer.precision=bf16-mixed", "model.compile=true"],
}


class StepTimer(Callback):
    """Wall time of the training steps after `warmup`, synchronised with the accelerator."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start = None
        self.seconds = None
        self.steps = 0

    def _sync(self, trainer):
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.start is None:
            self._sync(trainer)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self._sync(trainer)
        self.seconds = time.perf_counter() - self.start
        self.steps = trainer.global_step - self.warmup


def measure(overrides: list[str], warmup: int, steps: int) -> tuple[float, int, int]:
    """Seconds per timed training step for the run config composed from `overrides`, the tokens per
    example (the sequence length of token data, else 0) and the number of optimizer steps timed."""
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(CONFIGS, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *overrides,
                f"paths.root_dir={os.getcwd()}",
                f"paths.output_dir={out}",
                "logger=none",
                "~callbacks",
                f"trainer.max_steps={warmup + steps}",
                "trainer.limit_val_batches=0",
                "trainer.num_sanity_val_steps=0",
                "++trainer.enable_checkpointing=false",
                "++trainer.enable_progress_bar=false",
                "++trainer.enable_model_summary=false",
            ],
        )
        with open_dict(cfg):
            cfg.callbacks = None  # experiments may add callbacks of their own; time the bare loop
        timer = StepTimer(warmup)
        datamodule, task, trainer, _ = setup(cfg, extra_callbacks=[timer])
        trainer.fit(task, datamodule=datamodule)
        return timer.seconds / timer.steps, getattr(datamodule, "seq_len", 0), timer.steps


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", default="mnist_ddpm")
    p.add_argument("--model", default="unet_tiny")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if "on_device" in v], choices=list(VARIANTS))
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", help="also write the rows as JSON here")
    p.add_argument("overrides", nargs="*", help="more config overrides, e.g. data.num_workers=4")
    args = p.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print(
            "error: --accelerator gpu: torch sees no CUDA GPU on this machine; use --accelerator cpu", file=sys.stderr
        )
        sys.exit(2)
    rows = []
    for bs in args.batch_sizes:
        for name in args.variants:
            overrides = [
                f"experiment={args.experiment}",
                f"model={args.model}",
                f"trainer={args.accelerator}",
                f"data.batch_size={bs}",
                *VARIANTS[name],
                *args.overrides,
            ]
            sec, tokens, timed = measure(overrides, args.warmup, args.steps)
            rows.append(
                {
                    "batch": bs,
                    "variant": name,
                    "examples_per_s": bs / sec,
                    "tokens_per_s": bs * tokens / sec,
                    "ms_per_step": 1000 * sec,
                    "timed_steps": timed,
                }
            )
            print(f"batch {bs:5d}  {name:24s} {bs / sec:10.0f} examples/s", flush=True)
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{args.experiment} / {args.model} training throughput on {device}")
    print("| batch | variant | examples/s | tokens/s | ms/step |\n|---:|---|---:|---:|---:|")
    for r in rows:
        tok = f"{r['tokens_per_s']:.0f}" if r["tokens_per_s"] else "-"
        print(f"| {r['batch']} | {r['variant']} | {r['examples_per_s']:.0f} | {tok} | {r['ms_per_step']:.1f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
