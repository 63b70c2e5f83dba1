"""sample.py sweeps and sampler overrides as a user runs them: one job dir per combination, one
collated table, any sampler key set alone on top of the checkpoint's sampler."""

import csv
import json
import math

import pytest
from conftest import TINY, need_mnist, run
from omegaconf import OmegaConf

from vdiff.proof.sweep import collate, columns, write_tables
from vdiff.utils.sampling import sampler_config

FID_KEYS = [
    "fid",
    "num_samples",
    "num_reference",
    "fid_floor",
    "label_entropy_bits",
    "label_entropy_max_bits",
    "label_top_fraction",
    "confidence_mean",
    "confidence_mean_real",
]
FIXED = ["job", "sampler", "steps", "eta", "guidance_scale", "num_samples", "seconds_per_sample"]


@pytest.fixture(scope="module")
def ddim_ckpt(tmp_path_factory):
    """A two-step MNIST run whose stored sampler is DDIM with 5 steps (TINY), T = 50."""
    need_mnist()
    out = tmp_path_factory.mktemp("ddim_run")
    run("train.py", "experiment=mnist_ddpm", *TINY, "trainer.max_steps=2", f"hydra.run.dir={out}")
    return out / "checkpoints" / "last.ckpt"


def sampling(out) -> dict:
    return json.loads((out / "metrics.json").read_text())["sampling"]


def test_sweep_writes_one_job_dir_per_value_and_one_table(ddim_ckpt, tmp_path):
    run(
        "sample.py",
        "-m",
        f"ckpt_path={ddim_ckpt}",
        "sampler=ddim",
        "sampler.steps=2,3,4",
        "num_samples=8",
        "metrics=[fid]",
        "metrics.fid.num_reference=50",
        "progress=false",
        f"out_dir={tmp_path}",
    )
    for job, steps in enumerate((2, 3, 4)):
        assert (tmp_path / str(job) / "samples.pt").is_file()
        assert sampling(tmp_path / str(job))["steps"] == steps
    with (tmp_path / "sweep.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["job", "sampler.steps", *FIXED[1:]] + [
        f"fid.{k}" for k in FID_KEYS
    ]  # what was swept, first
    assert [(r["job"], r["sampler.steps"], r["sampler"], r["steps"], r["num_samples"]) for r in rows] == [
        ("0", "2", "DDIM", "2", "8"),
        ("1", "3", "DDIM", "3", "8"),
        ("2", "4", "DDIM", "4", "8"),
    ]
    assert all(float(r["fid.fid"]) > 0 and float(r["seconds_per_sample"]) > 0 for r in rows)
    md = (tmp_path / "sweep.md").read_text().splitlines()
    assert (
        "sampler.steps=2,3,4" in md[0]
        and md[2].startswith("| job | sampler.steps | sampler | steps |")
        and len(md) == 4 + 3
    )


def test_a_failing_job_keeps_the_table_of_the_jobs_before_it(ddim_ckpt, tmp_path):
    proc = run(
        "sample.py",
        "-m",
        f"ckpt_path={ddim_ckpt}",
        "sampler.steps=3,80",
        "num_samples=2",
        "progress=false",
        f"out_dir={tmp_path}",
        check=False,
    )
    assert proc.returncode == 2 and "sampler.steps=80 exceeds" in proc.stderr
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [(r["job"], r["steps"]) for r in rows] == [("0", "3")]


def test_single_run_writes_into_out_dir_with_a_sampling_block(ddim_ckpt, tmp_path):
    run("sample.py", f"ckpt_path={ddim_ckpt}", "num_samples=2", "seed=3", "progress=false", f"out_dir={tmp_path}")
    s = sampling(tmp_path)
    assert (tmp_path / "samples.pt").is_file() and not (tmp_path / "0").exists()
    assert set(s) == {
        "sampler",
        "steps",
        "eta",
        "guidance_scale",
        "nfe",
        "num_samples",
        "seconds",
        "seconds_per_sample",
        "ckpt_path",
        "seed",
    }
    assert (s["sampler"], s["steps"], s["eta"], s["guidance_scale"], s["num_samples"], s["seed"]) == (
        "DDIM",
        5,
        0.0,
        1.0,
        2,
        3,
    )
    assert s["ckpt_path"] == str(ddim_ckpt) and math.isclose(s["seconds_per_sample"], s["seconds"] / 2)


def test_a_sampler_key_alone_changes_the_checkpoint_sampler(ddim_ckpt, tmp_path):
    run(
        "sample.py",
        f"ckpt_path={ddim_ckpt}",
        "sampler.steps=3",
        "sampler.eta=0.5",
        "num_samples=2",
        "progress=false",
        f"out_dir={tmp_path / 'key'}",
    )
    assert (
        sampling(tmp_path / "key")["sampler"],
        sampling(tmp_path / "key")["steps"],
        sampling(tmp_path / "key")["eta"],
    ) == ("DDIM", 3, 0.5)
    run(
        "sample.py",
        f"ckpt_path={ddim_ckpt}",
        "sampler=ddpm",
        "num_samples=2",
        "progress=false",
        f"out_dir={tmp_path / 'ddpm'}",
    )
    s = sampling(tmp_path / "ddpm")
    assert (s["sampler"], s["steps"], s["eta"]) == ("DDPM", 50, None)  # every one of the T = 50 steps


@pytest.mark.parametrize(
    "overrides,error",
    [
        (
            ["sampler=ddpm", "sampler.steps=3"],
            "error: sampler.steps: DDPM takes no such key (it takes guidance_scale, clip_x0)",
        ),
        (
            ["metrics=[class_accuracy]"],
            "error: metrics.class_accuracy needs class-conditional samples, but this checkpoint's data has no classes",
        ),
    ],
    ids=["key_of_another_sampler", "class_accuracy_unconditional"],
)
def test_bad_sampling_input_is_one_sentence_before_sampling(overrides, error, ddim_ckpt, tmp_path):
    proc = run("sample.py", f"ckpt_path={ddim_ckpt}", *overrides, f"out_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == error
    assert not (tmp_path / "samples.pt").exists()


def test_sampler_config_merges_the_checkpoint_sampler_only_for_the_same_class():
    ddpm = {"_target_": "vdiff.samplers.DDPM", "guidance_scale": 3.0, "clip_x0": False}
    ddim = {"_target_": "vdiff.samplers.DDIM", "steps": 50, "eta": 0.0, "guidance_scale": 1.0}
    c = OmegaConf.to_container
    assert c(sampler_config(ddpm, {"guidance_scale": 2.0})) == {**ddpm, "guidance_scale": 2.0}  # a key alone
    assert c(sampler_config(ddpm, {**ddim, "steps": 10})) == {**ddim, "steps": 10}  # another class: no clip_x0 leak
    assert c(sampler_config({**ddim, "spacing": "trailing"}, {**ddim, "steps": 10})) == {
        **ddim,
        "steps": 10,
        "spacing": "trailing",
    }
    assert c(sampler_config(ddpm, {})) == ddpm and c(sampler_config(ddpm, None)) == ddpm
    assert sampler_config(None, None) is None
    # clip_x0 says what the samples are (latents are not clamped): a group of another class keeps the
    # checkpoint's value unless sampler.clip_x0 is on the command line
    euler = {"_target_": "vdiff.samplers.Euler", "steps": 50, "clip_x0": True}
    assert c(sampler_config(ddpm, euler)) == {**euler, "clip_x0": False}
    assert c(sampler_config(ddpm, euler, explicit=frozenset({"clip_x0"}))) == euler


def _job(path, metrics):
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_collate_reads_every_job_in_number_order(tmp_path):
    block = {
        "sampler": "DDIM",
        "steps": 10,
        "eta": 0.0,
        "guidance_scale": 1.0,
        "num_samples": 4,
        "seconds": 2.0,
        "seconds_per_sample": 0.5,
        "ckpt_path": "x.ckpt",
        "seed": 0,
    }
    _job(tmp_path / "10", {"sampling": {**block, "steps": 50}, "fid": {"fid": 3.0, "label_hist": [1, 2]}})
    _job(
        tmp_path / "2",
        {
            "sampling": block,
            "fid": {"fid": 12.345678, "fid_floor": 1.0, "label_hist": [3]},
            "bits_per_char": {"split": "val", "bits_per_token": 2.5},
        },
    )
    (tmp_path / "3").mkdir()  # a job that failed before writing metrics.json
    (tmp_path / ".hydra").mkdir()
    rows = collate(str(tmp_path))
    assert rows == [
        {
            "job": 2,
            "sampler": "DDIM",
            "steps": 10,
            "eta": 0.0,
            "guidance_scale": 1.0,
            "num_samples": 4,
            "seconds_per_sample": 0.5,
            "fid.fid": 12.345678,
            "fid.fid_floor": 1.0,
            "bits_per_char.bits_per_token": 2.5,
        },
        {
            "job": 10,
            "sampler": "DDIM",
            "steps": 50,
            "eta": 0.0,
            "guidance_scale": 1.0,
            "num_samples": 4,
            "seconds_per_sample": 0.5,
            "fid.fid": 3.0,
        },
    ]
    assert columns(rows) == FIXED + ["fid.fid", "fid.fid_floor", "bits_per_char.bits_per_token"]
    write_tables(str(tmp_path), rows, ["sampler.steps=10,50"])
    assert (tmp_path / "sweep.csv").read_text().splitlines() == [
        ",".join(FIXED + ["fid.fid", "fid.fid_floor", "bits_per_char.bits_per_token"]),
        "2,DDIM,10,0.0,1.0,4,0.5,12.345678,1.0,2.5",
        "10,DDIM,50,0.0,1.0,4,0.5,3.0,,",
    ]
    md = (tmp_path / "sweep.md").read_text().splitlines()
    assert md[0] == "`sampler.steps=10,50`" and md[4] == "| 2 | DDIM | 10 | 0 | 1 | 4 | 0.5 | 12.35 | 1 | 2.5 |"
    assert md[5] == "| 10 | DDIM | 50 | 0 | 1 | 4 | 0.5 | 3 |  |  |"


def test_collate_puts_the_swept_overrides_first(tmp_path):
    """A swept key that metrics.json does not record (here `sampler.spacing`) still tells the rows apart."""
    block = {
        "sampler": "DDIM",
        "steps": 50,
        "eta": 0.0,
        "guidance_scale": 1.0,
        "num_samples": 4,
        "seconds_per_sample": 0.5,
    }
    for job, spacing in enumerate(("leading", "trailing")):
        _job(tmp_path / str(job), {"sampling": block, "fid": {"fid": 1.0 + job}})
        (tmp_path / str(job) / ".hydra").mkdir()
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(
            f"- sampler=ddim\n- sampler.spacing={spacing}\n- seed=0\n"
        )
    rows = collate(str(tmp_path))
    assert columns(rows) == ["job", "sampler.spacing", *FIXED[1:], "fid.fid"]
    assert [(r["sampler.spacing"], r["fid.fid"]) for r in rows] == [("leading", 1.0), ("trailing", 2.0)]
