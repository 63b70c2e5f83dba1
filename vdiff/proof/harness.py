"""Proof that each variant learns: every preset in configs/proof/<device>/ runs train -> sample ->
metrics -> table, and the results go to <docs>/<device>.md and <docs>/<device>.json.

    python -m vdiff.proof                                   # every CPU preset, in their `order`
    python -m vdiff.proof --device gpu --only mnist_ddpm text_patterns
    python -m vdiff.proof --budget-scale 0.01 --logs /tmp/proof --docs /tmp/docs   # a smoke run
    python -m vdiff.proof --resume                          # a killed proof goes on where it stopped
                                                            # (and re-runs the evals its presets changed)

A variant is a preset (vdiff/proof/presets.py), not code. Its stages are subprocesses: train.py into
<logs>/<variant>/train, then each eval as sample.py -m into <logs>/<variant>/eval/<name>, their
output in <logs>/<variant>/<stage>.log and the finished stages and each attempt's minutes in
<logs>/<variant>/state.json. The docs are rebuilt from every variant under <logs>.
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import torch

from vdiff.proof.presets import load_presets, scaled
from vdiff.proof.report import write_docs
from vdiff.utils.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
TICK = 10.0  # seconds between saves of a running training's minutes (a kill loses at most this)


def commands(vdir: str, preset: dict) -> dict:
    """The train.py and sample.py argument lists of a variant whose outputs go under `vdir` (`{logs}` in
    an override: the folder of every variant's outputs, for a variant that reads another's)."""
    train = os.path.join(vdir, "train")
    ckpt = os.path.join(vdir, "train", "checkpoints", "last.ckpt")
    logs = os.path.dirname(vdir)

    def fill(overrides: list[str]) -> list[str]:
        return [o.replace("{logs}", logs) for o in overrides]

    evals = {
        e: ["sample.py", "-m", f"ckpt_path={ckpt}", *fill(o), f"out_dir={os.path.join(vdir, 'eval', e)}"]
        for e, o in preset["evals"].items()
    }
    return {"train": ["train.py", *fill(preset["train"]), f"hydra.run.dir={train}"], "evals": evals}


def load_state(vdir: str, variant: str, preset: dict, scale: float) -> dict:
    """The variant's state.json on --resume, else a fresh one. On resume the preset's presentation keys and
    evals replace the stored ones: an eval whose overrides changed (or that is new) counts as unfinished,
    so it runs again; changed train overrides are refused."""
    cmds = commands(vdir, preset)
    path = os.path.join(vdir, "state.json")
    if os.path.isdir(vdir) and not os.path.isfile(path):
        raise ConfigError(
            f"{vdir} exists but holds no state.json, so it is not a proof run to resume; choose another --logs"
        )
    if not os.path.isfile(path):
        return {
            "variant": variant,
            "budget_scale": scale,
            "preset": preset,
            "commands": cmds,
            "done": [],
            "minutes": {},
            "failed": None,
        }
    with open(path) as f:
        state = json.load(f)
    if state["commands"]["train"] != cmds["train"]:
        raise ConfigError(
            f"{vdir} was trained with other train overrides than {variant}.yaml gives at --budget-scale "
            f"{scale:g}; resume it with the preset and scale it was started with, or choose another --logs"
        )
    old_evals = state["commands"]["evals"]
    stale = {e for e in {*old_evals, *cmds["evals"]} if old_evals.get(e) != cmds["evals"].get(e)}
    for e in sorted(stale):  # unfinished from now on: run_variant starts its folder over (nothing is deleted here)
        change = "dropped from" if e not in cmds["evals"] else "added to" if e not in old_evals else "changed in"
        print(f"[{variant}] eval/{e}: {change} {variant}.yaml since the last run", flush=True)
        state["minutes"].pop(f"eval/{e}", None)
    state["done"] = [s for s in state["done"] if s.partition("/")[2] not in stale]
    state["commands"] = cmds
    state["preset"] = {**preset, "train": state["preset"]["train"]}
    return {**state, "failed": None}


def run_stage(args: list[str], log_path: str, tick) -> int:
    """Run `python <args>` with its output appended to log_path, calling tick() every TICK seconds."""
    with open(log_path, "a") as log:
        log.write(f"$ python {shlex.join(args)}\n")
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            while True:
                try:
                    return proc.wait(timeout=TICK)
                except subprocess.TimeoutExpired:
                    tick()
        finally:
            if proc.poll() is None:  # the proof itself was stopped
                proc.kill()
                proc.wait()


def run_variant(variant: str, vdir: str, state: dict) -> bool:
    """Run the variant's unfinished stages; False (with the failure in its state) when one fails."""

    def save():
        with open(os.path.join(vdir, "state.json"), "w") as f:
            json.dump(state, f, indent=2)

    os.makedirs(vdir, exist_ok=True)
    save()
    cmds = state["commands"]
    for stage, args in [("train", cmds["train"]), *((f"eval/{e}", c) for e, c in cmds["evals"].items())]:
        if stage in state["done"]:
            print(f"[{variant}] {stage}: finished earlier, skipped", flush=True)
            continue
        out = os.path.join(vdir, *stage.split("/"))
        if stage == "train" and os.path.isdir(out):
            args = [*args, "ckpt_path=last"]  # an earlier attempt was stopped: continue it
        elif stage != "train" and os.path.isdir(out):
            shutil.rmtree(out)  # an unfinished eval starts over
        log_path = os.path.join(vdir, stage.replace("/", "_") + ".log")
        print(f"[{variant}] {stage}: running (log {log_path})", flush=True)
        start = time.time()
        attempts = state["minutes"].setdefault(stage, [])
        attempts.append(0.0)

        def tick(attempts=attempts, start=start):  # a stopped proof keeps its stage's minutes up to the last tick
            attempts[-1] = (time.time() - start) / 60
            save()

        rc = run_stage(args, log_path, tick)
        tick()
        if rc != 0:
            state["failed"] = f"stage {stage} of {variant} failed with exit status {rc}; see {log_path}"
            save()
            print(f"error: {state['failed']}", file=sys.stderr, flush=True)
            return False
        state["done"].append(stage)
        save()
        print(f"[{variant}] {stage}: done in {(time.time() - start) / 60:.1f} min", flush=True)
    return True


def device_name(device: str) -> str:
    if device == "gpu":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "CPU"
    return f"{model} ({os.cpu_count()} cores)"


def prove(args, argv: list[str]) -> int:
    if args.device == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--device gpu: no CUDA device is available on this machine; use --device cpu")
    if args.budget_scale <= 0:
        raise ConfigError(f"--budget-scale {args.budget_scale:g} must be positive")
    presets = load_presets(args.presets or os.path.join(ROOT, "configs", "proof", args.device))
    unknown = [v for v in args.only or [] if v not in presets]
    if unknown:
        raise ConfigError(
            f"--only {' '.join(unknown)}: no such {args.device} variant; the variants are {', '.join(presets)}"
        )
    logs = args.logs or os.path.join("logs", "proof", args.device)
    wanted = set(args.only or presets)
    for v in reversed(list(presets)):  # a variant's needs run too (they have lower orders)
        if v in wanted:
            wanted.update(presets[v]["needs"])
    selected = [v for v in presets if v in wanted]
    existing = [os.path.join(logs, v) for v in selected if os.path.exists(os.path.join(logs, v))]
    if existing and not args.resume:
        raise ConfigError(
            f"{existing[0]} already exists; pass --resume to continue it (finished stages are skipped) "
            "or choose another --logs"
        )
    states = {
        v: load_state(os.path.join(logs, v), v, preset=scaled(presets[v], args.budget_scale), scale=args.budget_scale)
        for v in selected
    }
    failed = []
    for v in selected:
        blocked = [n for n in presets[v]["needs"] if n in failed]
        if blocked:
            print(f"error: [{v}] skipped: it needs {', '.join(blocked)}, which failed", file=sys.stderr, flush=True)
        if blocked or not run_variant(v, os.path.join(logs, v), states[v]):
            failed.append(v)
    header = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": device_name(args.device),
        "command": "python -m vdiff.proof " + shlex.join(argv),
    }
    write_docs(logs, docs=args.docs, device=args.device, header=header)
    print(f"wrote {os.path.join(args.docs, args.device)}.md and .json", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vdiff.proof", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="which presets, and where to train")
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="run these variants only (default: all)")
    p.add_argument(
        "--budget-scale", type=float, default=1.0, help="multiply max_steps, val_check_interval and num_samples"
    )
    p.add_argument("--resume", action="store_true", help="continue the variants already under --logs")
    p.add_argument("--logs", help="run folder (default logs/proof/<device>)")
    p.add_argument("--docs", default=os.path.join("docs", "results"), help="where <device>.md and .json go")
    p.add_argument("--presets", help="preset folder (default configs/proof/<device>)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped proof stops its running stage too
    try:
        return prove(args, argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
