"""The proof's docs, rebuilt from every variant under the logs dir (vdiff/proof/harness.py writes them there):
<docs>/<device>.md (commands, training minutes and steps, the eval table, the targets, the shown
samples, copied into <docs>/<device>/) and <docs>/<device>.json (every figure)."""

import contextlib
import csv
import glob
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import torch
import yaml

from vdiff.proof.targets import evaluate, nested


def last_logged(run_dir: str) -> dict:
    """The last value of each metric in the run's CSV log(s) (metrics.csv under the run dir)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "**", "metrics.csv"), recursive=True)):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k not in (None, "step", "epoch") and v not in (None, ""):
                        with contextlib.suppress(TypeError, ValueError):
                            out[k] = float(v)
    return out


def train_record(vdir: str, state: dict) -> dict:
    run = os.path.join(vdir, "train")
    last = os.path.join(run, "checkpoints", "last.ckpt")
    config = os.path.join(run, ".hydra", "config.yaml")
    steps = (
        torch.load(last, map_location="cpu", weights_only=False, mmap=True)["global_step"]
        if os.path.isfile(last)
        else None
    )
    metric = yaml.safe_load(Path(config).read_text()).get("optimized_metric") if os.path.isfile(config) else None
    logged = last_logged(run)
    attempts = state["minutes"].get("train", [])
    return {
        "minutes": sum(attempts),
        "attempt_minutes": attempts,
        "steps": steps,
        "optimized_metric": metric,
        "final": logged.get(metric),
        "logged": logged,
    }


def eval_jobs(eval_dir: str) -> list[dict]:
    """Each sample.py job of a multirun eval, by job number: {dir, metrics}."""
    names = sorted((d for d in os.listdir(eval_dir) if d.isdigit()), key=int) if os.path.isdir(eval_dir) else []
    jobs = []
    for d in names:
        path = os.path.join(eval_dir, d, "metrics.json")
        jobs.append(
            {
                "dir": os.path.join(eval_dir, d),
                "metrics": json.loads(Path(path).read_text()) if os.path.isfile(path) else {},
            }
        )
    return jobs


def collect(logs: str) -> list[dict]:
    """Every variant with a state.json under `logs`, its figures and its targets checked, in preset order."""
    variants = []
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        vdir = os.path.join(logs, name)
        if not os.path.isfile(os.path.join(vdir, "state.json")):
            continue
        state = json.loads(Path(vdir, "state.json").read_text())
        preset = state["preset"]
        cmds = state["commands"]
        train = train_record(vdir, state)
        evals = {
            e: {
                "command": "python " + shlex.join(c),
                "minutes": sum(state["minutes"].get(f"eval/{e}", [])),
                "jobs": eval_jobs(os.path.join(vdir, "eval", e)),
            }
            for e, c in cmds["evals"].items()
        }
        record = {
            "train": {**train["logged"], "minutes": train["minutes"], "steps": train["steps"]},
            **{e: [j["metrics"] for j in v["jobs"]] for e, v in evals.items()},
        }
        stages = ["train", *(f"eval/{e}" for e in evals)]
        status = state["failed"] or ("done" if all(s in state["done"] for s in stages) else "unfinished")
        variants.append(
            {
                "variant": name,
                "title": preset["title"],
                "order": preset["order"],
                "status": status,
                "budget_minutes": preset["budget_minutes"],
                "budget_scale": state["budget_scale"],
                "train": {"command": "python " + shlex.join(cmds["train"]), **train},
                "evals": evals,
                "record": record,
                "preset": preset,
            }
        )
    records = {v["variant"]: v.pop("record") for v in variants}
    for v in variants:  # after every record is read: a target may compare with another variant's
        v["targets"] = [evaluate(t, records[v["variant"]], records) for t in v["preset"]["targets"]]
    return sorted(variants, key=lambda v: (v["order"], v["variant"]))


def fmt(value, spec: str | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec) if spec else (f"{value:.4g}" if isinstance(value, float) else str(value))
    return str(value)


def samples_md(v: dict, docs: str, device: str) -> list[str]:
    """Copy the shown evals' sample images into <docs>/<device>/ and link them; quote text samples."""
    out = []
    for e in v["preset"]["show"]:
        jobs = v["evals"][e]["jobs"]
        for i, job in enumerate(jobs):
            tag = f"{v['variant']}_{e}" + (f"_{i}" if len(jobs) > 1 else "")
            for ext in ("png", "gif"):
                src = os.path.join(job["dir"], f"samples.{ext}")
                if os.path.isfile(src):
                    shutil.copyfile(src, os.path.join(docs, device, f"{tag}.{ext}"))
                    out.append(f"![{tag}]({device}/{tag}.{ext})")
            text = os.path.join(job["dir"], "samples.txt")
            if os.path.isfile(text):
                out += [f"`{tag}`:", "", "```text", *first_samples(text), "```"]
    return out


def first_samples(path: str, n: int = 3, max_chars: int = 400) -> list[str]:
    """The first n samples of a samples.txt (written as "===== sample i =====" + text), each cut
    to max_chars, as lines to quote."""
    chunks = re.split(r"^===== sample \d+ =====$\n?", Path(path).read_text(encoding="utf-8"), flags=re.M)
    samples = [c.rstrip("\n") for c in chunks if c.strip()][:n]
    return [line for i, c in enumerate(samples) for line in ([] if i == 0 else [""]) + c[:max_chars].splitlines()]


def variant_md(v: dict, docs: str, device: str) -> list[str]:
    t = v["train"]
    p = v["preset"]
    lines = [f"## {v['title']}", ""]
    if v["status"] != "done":
        lines += [f"**Status: {v['status']}.**", ""]
    lines += ["```bash", t["command"], *(e["command"] for e in v["evals"].values()), "```", ""]
    attempts = f" over {len(t['attempt_minutes'])} attempts" if len(t["attempt_minutes"]) > 1 else ""
    scale = f"; budget scale {v['budget_scale']:g}" if v["budget_scale"] != 1 else ""
    lines += [
        f"Training: {t['minutes']:.1f} min measured{attempts} (budget {v['budget_minutes']} min{scale}), "
        f"{fmt(t['steps'])} steps, final {t['optimized_metric']} {fmt(t['final'])}.",
        "",
    ]
    if p["columns"] and any(ev["jobs"] for ev in v["evals"].values()):
        lines += [
            "| eval | " + " | ".join(c.get("header", c["key"]) for c in p["columns"]) + " |",
            "|---|" + "---:|" * len(p["columns"]),
        ]
        for e, ev in v["evals"].items():
            for job in ev["jobs"]:
                cells = [fmt(nested(job["metrics"], c["key"]), c.get("fmt")) for c in p["columns"]]
                lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("")
    if v["targets"]:
        lines += ["| target | measured | |", "|---|---:|---|"]
        for r in v["targets"]:
            measured = "missing" if r["measured"] is None else fmt(r["measured"])
            lines.append(f"| {r['label']} | {measured} | {'met' if r['met'] else '**NOT met**'} |")
        lines.append("")
    shown = samples_md(v, docs, device)
    return lines + shown + ([""] if shown else [])


def write_docs(logs: str, docs: str, device: str, header: dict) -> list[dict]:
    """Write <docs>/<device>.md and .json from every variant under `logs`; returns the variants."""
    variants = collect(logs)
    os.makedirs(os.path.join(docs, device), exist_ok=True)
    scales = sorted({v["budget_scale"] for v in variants} - {1})
    lines = [
        f"# Proof runs: {device.upper()}",
        "",
        f"{header['date']}; torch {header['torch']}; {header['device']}; `{header['command']}`",
        "",
    ]
    if scales:
        lines += [
            f"**Budget scale {', '.join(f'{s:g}' for s in scales)}**: trainer.max_steps, trainer.val_check_interval "
            "and num_samples were scaled down and samplers capped at a few steps (max_sampler_steps), so these "
            "figures are a smoke run, not the recipes' results.",
            "",
        ]
    for v in variants:
        lines += variant_md(v, docs, device)
    with open(os.path.join(docs, f"{device}.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(docs, f"{device}.json"), "w") as f:
        json.dump({**header, "variants": variants}, f, indent=2)
    return variants
