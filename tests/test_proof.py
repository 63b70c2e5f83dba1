"""python -m vdiff.proof: presets run train -> sample -> metrics -> docs, a stopped proof resumes,
bad input is one sentence, and the targets are evaluated as the presets say."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import DATA, ROOT, need_mnist

from vdiff.proof.harness import main
from vdiff.proof.presets import load_presets, scaled
from vdiff.proof.targets import evaluate


def proof(*args, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "VDIFF_DATA_DIR": str(DATA), "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "vdiff.proof", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"vdiff.proof {args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


# The evals of mnist_ddpm.yaml the tests below read (each a sample.py process of ~15 s even at a smoke
# scale); the others are the same kind of row.
KEPT_EVALS = ["ddim", "ddim_eta0", "ode_heun", "ode_dpmpp", "sde_dpmpp", "ddim250", "ddpm250"]


def smoke_presets(folder):
    """text_patterns.yaml with its `random` eval and mnist_ddpm.yaml with its KEPT_EVALS only, written into `folder`."""
    folder.mkdir()
    cpu = ROOT / "configs" / "proof" / "cpu"
    patterns = yaml.safe_load((cpu / "text_patterns.yaml").read_text())
    patterns["evals"] = {"random": patterns["evals"]["random"]}  # the row the targets read
    (folder / "text_patterns.yaml").write_text(yaml.safe_dump(patterns, sort_keys=False))
    ddpm = yaml.safe_load((cpu / "mnist_ddpm.yaml").read_text())
    ddpm["evals"] = {e: ddpm["evals"][e] for e in KEPT_EVALS}
    (folder / "mnist_ddpm.yaml").write_text(yaml.safe_dump(ddpm, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """text_patterns alone; its eval then marked unfinished (a proof stopped while sampling); then
    --resume with mnist_ddpm added. Returns (logs, docs, mtimes of text_patterns' files before the resume)."""
    need_mnist()
    tmp = tmp_path_factory.mktemp("proof")
    presets = smoke_presets(tmp / "presets")
    logs, docs, small = tmp / "logs", tmp / "docs", ["--budget-scale", "0.01", "--presets", presets]
    proof(*small, "--only", "text_patterns", "--logs", logs, "--docs", docs)
    state_path = logs / "text_patterns" / "state.json"
    state = json.loads(state_path.read_text())
    state["done"].remove("eval/random")
    state_path.write_text(json.dumps(state))
    before = {p: p.stat().st_mtime_ns for p in (logs / "text_patterns" / "train").rglob("*") if p.is_file()}
    out = proof(*small, "--resume", "--only", "text_patterns", "mnist_ddpm", "--logs", logs, "--docs", docs)
    assert "[text_patterns] train: finished earlier, skipped" in out.stdout
    return logs, docs, before


def test_proof_writes_tables_targets_and_samples(resumed):
    logs, docs, _ = resumed
    md = (docs / "cpu.md").read_text()
    assert "Budget scale 0.01" in md and f"torch {torch.__version__}" in md
    assert md.index("(`mnist_ddpm`)") < md.index("(`text_patterns`)")  # preset order
    assert "python train.py experiment=mnist_ddpm_cpu trainer.max_steps=24 trainer.val_check_interval=12 " in md
    assert (
        f"python sample.py -m ckpt_path={logs}/mnist_ddpm/train/checkpoints/last.ckpt sampler=ddpm num_samples=16 batch_size=64"
        in md
    )
    assert (
        "sampler=heun sampler.steps=3,5,10 num_samples=16 batch_size=64 seed=0 'metrics=[fid]' max_sampler_steps=4"
        in md
    )
    assert "'metrics=[fid]'" in md  # copy-pasteable in a shell
    assert "| eval | sampler | steps | eta | network calls | N | FID |" in md
    # a smoke run caps every sampler at 4 steps, with the same kind of sampler (DDPM-1000: DDIM, eta 1)
    assert "| ddpm250 | DDIM | 4 | 1 | 4 | 16 |" in md and "| ddim_eta0 | DDIM | 4 | 0 | 4 | 16 |" in md
    assert "| ode_heun | Heun | 3 | - | 5 | 16 |" in md and "| ode_heun | Heun | 4 | - | 7 | 16 |" in md  # a row a job
    assert "| sde_dpmpp | DPMSolverPP2MSDE | 4 | - | 4 | 16 |" in md
    assert (
        "](cpu/mnist_ddpm_ode_dpmpp_1.png)" in md and (docs / "cpu" / "mnist_ddpm_ode_dpmpp_1.png").stat().st_size > 0
    )
    assert re.search(r"```text\n[A-O]{32}\n\n[A-O]{32}\n", md)  # whole text samples quoted, no separator lines

    report = json.loads((docs / "cpu.json").read_text())
    by_name = {v["variant"]: v for v in report["variants"]}
    assert set(by_name) == {"mnist_ddpm", "text_patterns"} and all(v["status"] == "done" for v in by_name.values())
    ddpm = by_name["mnist_ddpm"]
    assert (
        ddpm["train"]["steps"] == 24 and ddpm["train"]["optimized_metric"] == "val/loss" and ddpm["train"]["final"] > 0
    )
    fid = next(t for t in ddpm["targets"] if t["label"].startswith("FID (N = 1000, DDIM-50"))
    assert fid["met"] is False and fid["measured"] > 5  # 24 steps of training are far from 5x the floor
    assert f"| {fid['label']} | {fid['measured']:.4g} | **NOT met** |" in md  # the table says what the JSON says
    heun = ddpm["evals"]["ode_heun"]["jobs"]
    assert [j["metrics"]["sampling"]["nfe"] for j in heun] == [5, 7, 7] and heun[2]["metrics"]["fid"]["fid"] > 0
    trace = by_name["text_patterns"]["evals"]["random"]["jobs"][0]["metrics"]["pattern_trace"]
    assert trace["num_samples"] == 16 and trace["num_invalid"] == round(16 * trace["invalid_fraction"])
    patterns = by_name["text_patterns"]["targets"]
    assert [t["label"][:6] for t in patterns] == [">= 99 ", "unigra", "val bi"]
    assert all(isinstance(t["measured"], float) and isinstance(t["met"], bool) for t in patterns)


@pytest.mark.slow
def test_every_variant_runs_end_to_end(tmp_path):
    """`python -m vdiff.proof --budget-scale 0.01`: every CPU preset trains, samples and measures, and every
    figure a target reads is produced (about 14 minutes on 2 cores: VDIFF_SLOW_TESTS=1 runs it)."""
    need_mnist()
    logs, docs = tmp_path / "logs", tmp_path / "docs"
    proof("--budget-scale", "0.01", "--logs", logs, "--docs", docs, timeout=2400)
    md = (docs / "cpu.md").read_text()
    by_name = {v["variant"]: v for v in json.loads((docs / "cpu.json").read_text())["variants"]}
    assert list(by_name) == list(load_presets(str(ROOT / "configs" / "proof" / "cpu")))  # every variant, in order
    for name, variant in by_name.items():
        assert variant["status"] == "done" and f"(`{name}`)" in md, name
        assert all(isinstance(t["measured"], float) for t in variant["targets"]), name


def test_resume_skips_finished_stages(resumed):
    logs, _, before = resumed
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # text_patterns' training was not run again
    assert (logs / "text_patterns" / "train.log").read_text().count("$ python train.py") == 1
    assert (logs / "text_patterns" / "eval_random.log").read_text().count("$ python sample.py -m") == 2
    state = json.loads((logs / "text_patterns" / "state.json").read_text())
    assert (
        state["done"] == ["train", "eval/random"]
        and len(state["minutes"]["train"]) == 1
        and len(state["minutes"]["eval/random"]) == 2
    )


def test_resume_reruns_the_evals_a_preset_changed_and_refuses_changed_training(tmp_path):
    """An eval whose overrides changed (or that is new) runs again on --resume, the training and the unchanged
    evals do not; a preset whose train overrides changed is refused with one sentence."""
    presets = tmp_path / "presets"
    presets.mkdir()
    full = yaml.safe_load((ROOT / "configs" / "proof" / "cpu" / "text_patterns.yaml").read_text())
    full["evals"] = {"random": full["evals"]["random"]}  # the row the targets read; the others are alike
    preset = yaml.safe_dump(full, sort_keys=False, width=1000)
    (presets / "text_patterns.yaml").write_text(preset)
    logs, docs, small = tmp_path / "logs", tmp_path / "docs", ["--budget-scale", "0.01", "--presets", presets]
    proof(*small, "--logs", logs, "--docs", docs)
    vdir = logs / "text_patterns"
    ckpt_mtime = (vdir / "train" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    changed = preset.replace("- seed=0\n", "- seed=1\n", 1)  # the eval `random`
    assert changed != preset
    (presets / "text_patterns.yaml").write_text(changed)
    out = proof(*small, "--resume", "--logs", logs, "--docs", docs)
    assert "[text_patterns] train: finished earlier, skipped" in out.stdout
    assert "[text_patterns] eval/random: changed in text_patterns.yaml since the last run" in out.stdout
    assert (vdir / "train" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == ckpt_mtime
    state = json.loads((vdir / "state.json").read_text())
    assert state["done"] == ["train", "eval/random"] and len(state["minutes"]["eval/random"]) == 1
    assert "seed=1" in state["commands"]["evals"]["random"]
    assert json.loads((vdir / "eval" / "random" / "0" / "metrics.json").read_text())["sampling"]["seed"] == 1

    longer = re.sub(r"trainer\.max_steps=\d+", "trainer.max_steps=40000", changed, count=1)
    assert longer != changed
    (presets / "text_patterns.yaml").write_text(longer)
    proc = proof(*small, "--resume", "--logs", logs, "--docs", docs, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "with other train overrides" in proc.stderr
    assert json.loads((vdir / "state.json").read_text()) == state
    assert (vdir / "eval" / "random" / "0" / "metrics.json").is_file()  # a refused resume deletes nothing


def test_existing_variant_is_refused_without_resume(tmp_path):
    logs, docs = tmp_path / "logs", tmp_path / "docs"
    (logs / "mnist_ddpm").mkdir(parents=True)
    (logs / "mnist_ddpm" / "state.json").write_text("{}")
    proc = proof("--only", "text_patterns", "mnist_ddpm", "--logs", logs, "--docs", docs, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "mnist_ddpm already exists; pass --resume" in proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["logs", "mnist_ddpm", "state.json"]
    assert (logs / "mnist_ddpm" / "state.json").read_text() == "{}"


def test_unknown_variant_and_missing_gpu_are_one_sentence(tmp_path, capsys):
    assert main(["--only", "mnist_ddpm", "nope", "--logs", str(tmp_path), "--docs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--only nope: no such cpu variant" in err
    assert "mnist_ddpm, mnist_flow, mnist_edm, mnist_cfg, text_patterns, text_patterns_bd3, text_patterns_ar" in err
    if not torch.cuda.is_available():
        assert main(["--device", "gpu", "--logs", str(tmp_path)]) == 2
        assert "--device gpu: no CUDA device" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "device", ["cpu", "gpu"], ids=["cpu_presets", "cuda_presets"]
)  # not "gpu": that marks CUDA tests
def test_every_preset_composes(device):
    """Each preset's train.py overrides compose into a run config, and its evals name existing metrics."""
    from hydra import compose, initialize_config_dir

    presets = load_presets(str(ROOT / "configs" / "proof" / device))
    gpu = ["mnist_ddpm", "mnist_cfg", "text_patterns", "text_shakespeare", "video_blobs"]
    text = ["text_patterns", "text_patterns_bd3", "text_patterns_ar", "text_shakespeare", "shakespeare_ar"]
    text += ["shakespeare_mdlm", "shakespeare_bd3_4", "shakespeare_bd3_16"]
    cpu = [
        *["mnist_ddpm", "mnist_flow", "mnist_edm", "mnist_cfg", *text, "video_blobs"],
        *["video_vae", "latent_dit", "latent_dit_flow"],
        *["latent_dit_cross", "latent_unet", "video_vae_mnist", "latent_dit_mnist"],
    ]
    assert list(presets) == (cpu if device == "cpu" else gpu)
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        for name, preset in presets.items():
            cfg = compose(
                "train", [o.replace("{logs}", "logs/proof") for o in preset["train"]]
            )  # as vdiff/proof/harness.py
            experiment = next(o.partition("=")[2] for o in preset["train"] if o.startswith("experiment="))
            assert cfg.trainer.accelerator == device and cfg.name == experiment, name  # e.g. mnist_ddpm_cpu
    for preset in presets.values():
        for overrides in preset["evals"].values():
            metrics = [o.partition("=")[2].strip("[]").split(",") for o in overrides if o.startswith("metrics=")]
            assert all((ROOT / "configs" / "metrics" / f"{m}.yaml").is_file() for ms in metrics for m in ms), overrides


def test_budget_scale_multiplies_steps_and_samples():
    preset = {
        "train": ["trainer.max_steps=2000", "trainer.val_check_interval=500", "data.batch_size=128"],
        "evals": {"a": ["num_samples=1000,10", "sampler.steps=50"]},
    }
    assert scaled(preset, 1) == preset
    # a smoke run validates at most twice, on one batch, with small grids, and caps every sampler's steps
    smoke = ["trainer.limit_val_batches=1", "sample_limits.sampler_steps=4", "sample_limits.num_samples=4"]
    small = scaled(preset, 0.001)
    assert small["train"] == ["trainer.max_steps=2", "trainer.val_check_interval=1", "data.batch_size=128", *smoke]
    assert small["evals"] == {"a": ["num_samples=16,16", "sampler.steps=50", "max_sampler_steps=4"]}
    tiny = scaled({**preset, "train": ["trainer.max_steps=3000", "trainer.val_check_interval=500"]}, 0.01)["train"]
    assert tiny == ["trainer.max_steps=30", "trainer.val_check_interval=15", *smoke]
    own = ["trainer.val_check_interval=500", "trainer.limit_val_batches=4", "trainer.max_steps=100"]
    assert scaled({**preset, "train": own}, 0.5)["train"] == [
        "trainer.val_check_interval=50",
        "trainer.max_steps=50",
        *smoke,
    ]
    longer = scaled({**preset, "train": ["trainer.max_steps=100", "trainer.val_check_interval=500"]}, 2)
    assert longer["train"] == ["trainer.max_steps=200", "trainer.val_check_interval=200"]  # never past max_steps
    assert longer["evals"] == {"a": ["num_samples=2000,20", "sampler.steps=50"]}  # no cap above scale 1


RECORD = {
    "train": {"val/bpc": 2.5, "minutes": 3.0},
    "ddim": [{"fid": {"fid": 4.0, "fid_floor": 1.0}}],
    "ddpm": [{"fid": {"fid": 5.0}}],
    "cfg": [
        {"acc": {"accuracy": a}, "fid": {"fid": f, "fid_floor": 2.0}} for a, f in ((0.5, 8.0), (0.97, 4.0), (0.9, 6.0))
    ],
}


@pytest.mark.parametrize(
    "target,measured,met",
    [
        ({"value": "ddim/fid.fid", "ratio_to": "ddim/fid.fid_floor", "max": 5}, 4.0, True),
        ({"value": "ddim/fid.fid", "ratio_to": "ddim/fid.fid_floor", "max": 3}, 4.0, False),
        ({"value": "ddim/fid.fid", "rel_diff_to": "ddpm/fid.fid", "max": 0.15}, 0.2, False),
        ({"value": "ddpm/fid.fid", "abs_diff_to": "ddim/fid.fid", "max": 1.0}, 1.0, True),
        ({"value": "cfg/acc.accuracy", "reduce": "max", "min": 0.95}, 0.97, True),
        ({"value": "cfg/acc.accuracy", "min": 0.95}, 0.5, False),  # first job by default
        ({"value": "cfg/fid.fid", "ratio_to": "cfg/fid.fid_floor", "reduce": "min", "max": 2}, 2.0, True),  # job by job
        ({"value": "cfg/fid.fid", "ratio_to": "ddim/fid.fid_floor", "reduce": "max", "min": 1}, 8.0, True),  # broadcast
        ({"value": "train/val/bpc", "min": 2.0, "max": 2.6}, 2.5, True),
        ({"value": "train/minutes", "max": 2}, 3.0, False),
        ({"value": "ddim/fid.missing", "max": 10}, None, False),
        ({"value": "ddpm/fid.fid", "ratio_to": "ddpm/fid.fid_floor", "max": 10}, None, False),
    ],
)
def test_targets(target, measured, met):
    result = evaluate({"label": "x", **target}, RECORD)
    assert result["met"] is met
    assert result["measured"] == pytest.approx(measured) if measured is not None else result["measured"] is None


def test_a_target_may_read_a_variant_the_preset_needs(tmp_path):
    others = {"ar": {"train": {"val/bpc": 2.0}, "ancestral": [{"bits": {"bpc": 2.0}}]}}
    target = {"label": "x", "value": "train/val/bpc", "ratio_to": "ar:ancestral/bits.bpc", "max": 1.15}
    assert evaluate(target, RECORD, others) == {"label": "x", "measured": 1.25, "met": False, "max": 1.15}
    assert evaluate({**target, "max": 1.3}, RECORD, others)["met"]
    assert evaluate(target, RECORD, {})["measured"] is None  # the other variant did not run
    from vdiff.proof.targets import check_target
    from vdiff.utils.config import ConfigError

    check_target(target, "p.yaml", ["ddim"], needs=["ar"])
    with pytest.raises(ConfigError, match="reads ar, which is not in this preset's needs"):
        check_target(target, "p.yaml", ["ddim"])


def test_failed_stage_stops_its_variant_with_one_sentence(tmp_path):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "bad.yaml").write_text(
        "title: Bad\norder: 1\nbudget_minutes: 1\ntrain: [experiment=mnist_ddpm, model=unet_huge]\n"
        "evals: {a: [num_samples=4]}\ntargets: [{label: t, value: a/fid.fid, max: 1}]\n"
    )
    proc = proof("--presets", presets, "--logs", tmp_path / "logs", "--docs", tmp_path / "docs", check=False)
    log = tmp_path / "logs" / "bad" / "train.log"
    assert proc.returncode == 1 and proc.stderr.startswith("error: stage train of bad failed with exit status ")
    assert proc.stderr.endswith(f"; see {log}\n") and proc.stderr.count("\n") == 1
    assert "eval/a" not in proc.stdout and "model" in log.read_text()
    md = (tmp_path / "docs" / "cpu.md").read_text()
    assert "**Status: stage train of bad failed" in md and "| t | missing | **NOT met** |" in md
