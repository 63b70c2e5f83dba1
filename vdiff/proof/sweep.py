"""One table for a `sample.py -m` sweep: every job's metrics.json side by side.

    python sample.py -m ckpt_path=<file> sampler=ddim sampler.steps=10,20,50 metrics=[fid] out_dir=D
    -> D/0/, D/1/, D/2/ (samples, metrics.json), then D/sweep.csv and D/sweep.md

`SweepTable` is a Hydra callback (sample.yaml's `hydra.callbacks`): after each job and after the
last it collates the job folders of the sweep dir. `collate(sweep_dir)` is the same reading as a plain function.
Columns: the job number, the sampling settings, then every numeric metric value as
`<metric>.<key>` (nested dicts as `<metric>.<key>.<sub>`); lists and strings are left out.
"""

import csv
import json
import logging
import math
import os

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("vdiff.sweep")

SAMPLING_COLUMNS = ("sampler", "steps", "eta", "guidance_scale", "num_samples", "seconds_per_sample")


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = value


def job_row(job: int, metrics: dict) -> dict:
    """One table row of a job's metrics.json: job, sampling settings, flattened metric values."""
    sampling = metrics.get("sampling", {})
    row = {"job": job, **{k: sampling.get(k) for k in SAMPLING_COLUMNS}}
    for name, result in metrics.items():
        if name != "sampling":
            _flatten(name, result, row)
    return row


def job_overrides(job_dir: str) -> dict:
    """{key: value} of the command-line overrides Hydra saved for a job (<job>/.hydra/overrides.yaml)."""
    path = os.path.join(job_dir, ".hydra", "overrides.yaml")
    if not os.path.isfile(path):
        return {}
    return dict(o.partition("=")[::2] for o in OmegaConf.load(path))


def collate(sweep_dir: str) -> list[dict]:
    """Rows, by job number, of every `<sweep_dir>/<job number>/metrics.json`; jobs without one
    (failed or still running) are left out. The overrides whose values differ between the jobs
    (what the sweep varied, e.g. `sampler.spacing`) come right after the job number."""
    rows = []
    swept = []
    jobs = sorted(int(d) for d in os.listdir(sweep_dir) if d.isdigit() and os.path.isdir(os.path.join(sweep_dir, d)))
    for job in jobs:
        path = os.path.join(sweep_dir, str(job), "metrics.json")
        if os.path.isfile(path):
            with open(path) as f:
                rows.append(job_row(job, json.load(f)))
            swept.append(job_overrides(os.path.join(sweep_dir, str(job))))
    varied = [k for k in dict.fromkeys(k for o in swept for k in o) if len({o.get(k) for o in swept}) > 1]
    return [{"job": row["job"], **{k: o.get(k) for k in varied}, **row} for row, o in zip(rows, swept)]


def columns(rows: list[dict]) -> list[str]:
    """Every key in the order it first appears: the job number, the swept overrides, the sampling
    settings, then the metric values (the order `collate` builds each row in)."""
    cols = ["job", *SAMPLING_COLUMNS] if not rows else []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)


def write_tables(sweep_dir: str, rows: list[dict], overrides: list[str] | None = None) -> list[str]:
    """sweep.csv (full precision) and sweep.md (floats to 4 significant digits, the sweep's
    command-line overrides on a line above the table) in `sweep_dir`; their paths."""
    cols = columns(rows)
    csv_path = os.path.join(sweep_dir, "sweep.csv")
    md_path = os.path.join(sweep_dir, "sweep.md")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols, restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    lines = []
    if overrides:
        lines += ["`" + " ".join(overrides) + "`", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |" for row in rows]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [csv_path, md_path]


class SweepTable(Callback):
    """Hydra callback: sweep.csv and sweep.md in the sweep dir, rewritten as each job of a multirun
    ends (so the jobs done so far are collated even if a later one fails) and once after the last."""

    def on_job_end(self, config: DictConfig, job_return=None, **kwargs) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self._write(config.hydra.sweep.dir, quiet=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self._write(config.hydra.sweep.dir, quiet=False)

    @staticmethod
    def _write(sweep_dir: str, quiet: bool) -> None:
        rows = collate(sweep_dir) if os.path.isdir(sweep_dir) else []
        if not rows:
            if not quiet:
                log.warning("no job of %s wrote a metrics.json; no sweep table", sweep_dir)
            return
        paths = write_tables(sweep_dir, rows, sweep_overrides(sweep_dir))
        if not quiet:
            log.info("sweep table of %d jobs: %s", len(rows), ", ".join(paths))


def sweep_overrides(sweep_dir: str) -> list[str]:
    """The sweep's command-line overrides, as Hydra saved them in <sweep_dir>/multirun.yaml."""
    path = os.path.join(sweep_dir, "multirun.yaml")
    if not os.path.isfile(path):
        return []
    return list(OmegaConf.load(path).hydra.overrides.task)
