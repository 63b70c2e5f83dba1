"""What a first user hits: a sample grid that says what it draws, a failed start-up that leaves its folder
as it was (so the corrected command runs), typos answered with the closest names, a sampler whose
changed values are said, and a wrong data.root left untouched. (Ctrl-C's line: tests/test_faults.py;
the DDP final line once: tests/test_cli.py; bench_attention on a CPU: tests/test_bench.py.)"""

import json
import os
from pathlib import Path

import pytest
from conftest import TINY, need_mnist, run

TINY_RUN = ["experiment=mnist_ddpm", *TINY, "sampler.eta=1.0", "trainer.max_steps=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    need_mnist()
    out = tmp_path_factory.mktemp("run")
    proc = run("train.py", *TINY_RUN, f"hydra.run.dir={out}")
    return out, proc


def listing(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_the_samples_callback_says_what_it_draws_and_how_long_it_took(trained):
    out, proc = trained
    log = (out / "train.log").read_text()
    assert (
        "[vdiff.samples][INFO] - step 2: drawing 4 samples with DDIM (steps 5, eta 1.0, guidance_scale 1.0, nfe 5)"
        in log
    )
    assert "sample_limits.sampler_steps / num_samples shrink it" in log  # no limit set: the hint names the keys
    assert "[vdiff.samples][INFO] - step 2: 4 samples drawn in " in log
    assert "drawing 4 samples" in proc.stdout  # on the terminal too


def test_the_debug_trainer_limits_are_shown_without_the_hint(tmp_path):
    need_mnist()
    proc = run("train.py", "experiment=mnist_ddpm", "model=unet_tiny", "trainer=debug", f"hydra.run.dir={tmp_path}")
    assert "drawing 4 samples with DDIM (steps 2, eta 1.0, guidance_scale 1.0, nfe 2)\n" in proc.stdout


@pytest.mark.parametrize(
    "overrides,sentence",
    [
        (
            ["sampler=ddpm", "sampler.steps=50"],
            "error: sampler.steps: DDPM takes no such key (it takes guidance_scale, clip_x0)",
        ),
        (["ckpt_path=null"], None),
    ],
    ids=["a_key_the_sampler_does_not_take", "no_ckpt_path"],
)
def test_a_failed_sample_start_up_leaves_out_dir_as_it_was_and_the_retry_runs(overrides, sentence, trained, tmp_path):
    out, _ = trained
    ckpt = f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"
    given = [ckpt, *overrides] if "ckpt_path=null" not in overrides else [o for o in overrides if o != "ckpt_path=null"]
    for out_dir, existed in ((tmp_path / "new", False), (tmp_path / "empty", True)):
        if existed:
            out_dir.mkdir()
        proc = run("sample.py", *given, "num_samples=2", f"out_dir={out_dir}", check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        if sentence is None:  # ckpt_path: ??? in configs/sample.yaml
            sentence = "error: ckpt_path must be given (it has no default): pass ckpt_path=<value> on the command line"
        assert proc.stderr.strip() == sentence
        assert out_dir.exists() == existed and (not existed or not any(out_dir.iterdir()))
        run("sample.py", ckpt, "num_samples=2", f"out_dir={out_dir}")  # the corrected command is not refused
        assert (out_dir / "samples.png").is_file() and (out_dir / ".hydra" / "config.yaml").is_file()


def test_a_failed_train_start_up_changes_nothing_in_the_run_dir(trained, tmp_path):
    out, _ = trained
    before = listing(out)
    proc = run(
        "train.py",
        *TINY_RUN,
        "+task.optimizer.learning_rate=1e-3",
        "ckpt_path=last",
        f"hydra.run.dir={out}",
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        "error: task.optimizer.learning_rate: torch.optim.AdamW takes no argument `learning_rate` (it takes params, lr,"
    )
    assert listing(out) == before  # not even a line in train.log
    fresh = tmp_path / "fresh"
    proc = run("train.py", *TINY_RUN, "trainer.max_steps=0", f"hydra.run.dir={fresh}", check=False)
    assert proc.returncode == 2 and not fresh.exists()


@pytest.mark.parametrize(
    "script,overrides,sentence",
    [
        (
            "train.py",
            ["trainer.max_step=10"],
            "error: trainer.max_step is not a key of this config; did you mean trainer.max_steps",
        ),
        (
            "train.py",
            ["experiment=mnist_dpm"],
            "error: experiment=mnist_dpm: no option mnist_dpm in group experiment; did you mean mnist_ddpm",
        ),
        (
            "train.py",
            ["experimnt=mnist_ddpm"],
            "error: experimnt is not a key of this config; did you mean experiment?",
        ),
        ("train.py", ["-m", "schedule=linear,cosine", "trainer.max_step=3"], "error: trainer.max_step is not a key"),
        (
            "train.py",
            ["task.optimizer.lr=[", "trainer.max_steps=3"],
            "error: the command line does not parse as overrides",
        ),
        (
            "sample.py",
            ["ckpt_path=x.ckpt", "num_sample=3"],
            "error: num_sample is not a key of this config; did you mean num_samples",
        ),
        (
            "sample.py",
            ["ckpt_path=x.ckpt", "sampler=ddmi"],
            "error: sampler=ddmi: no option ddmi in group sampler; did you mean ddpm or ddim?",
        ),
        (
            "sample.py",
            ["ckpt_path=x.ckpt", "metrics=[fidd]"],
            "error: metrics=fidd: no option fidd in group metrics; did you mean fid",
        ),
    ],
    ids=["key", "group_option", "group_name", "sweep", "unparsable", "sample_key", "sample_group", "metric"],
)
def test_a_typo_is_one_sentence_with_the_closest_names_and_exit_2(script, overrides, sentence, tmp_path):
    out = tmp_path / "out"
    where = f"out_dir={out}" if script == "sample.py" else f"hydra.run.dir={out}"
    proc = run(script, *overrides, where, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(sentence), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "multirun").exists()


def test_a_sampler_group_that_resets_the_checkpoints_values_says_so(trained, tmp_path):
    out, _ = trained
    ckpt = f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"
    run("sample.py", ckpt, "sampler=ddim", "sampler.steps=3", "num_samples=2", f"out_dir={tmp_path / 'a'}")
    record = json.loads((tmp_path / "a" / "metrics.json").read_text())["sampling"]
    assert record["changed_from_checkpoint"] == {
        "eta": {"checkpoint": 1.0, "used": 0.0, "by": "sampler=ddim default"},
        "steps": {"checkpoint": 5, "used": 3, "by": "command line"},
    }
    assert (
        "sampler: the checkpoint's values changed: eta 1.0 -> 0.0 (sampler=ddim default); steps 5 -> 3 (command line)"
        in (tmp_path / "a" / "sample.log").read_text()
    )
    run("sample.py", ckpt, "num_samples=2", f"out_dir={tmp_path / 'b'}")  # the checkpoint's sampler as it was
    record = json.loads((tmp_path / "b" / "metrics.json").read_text())["sampling"]
    assert "changed_from_checkpoint" not in record and record["eta"] == 1.0


def test_a_failed_download_leaves_a_users_data_root_as_it_was(tmp_path, monkeypatch):
    import torchvision

    from vdiff.data.mnist import load_split

    def offline(root, train, download):  # torchvision makes <root>/MNIST/raw, then cannot reach a mirror
        os.makedirs(os.path.join(root, "MNIST", "raw"), exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match=r"could not download MNIST into .*mine \(Error downloading"):
        load_split(str(mine), "MNIST", "train", download=True)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    with pytest.raises(FileNotFoundError):
        load_split(str(tmp_path / "new" / "deeper"), "MNIST", "train", download=True)
    assert not (tmp_path / "new").exists()
