"""Bad input as a user meets it: values out of range, corrupt data files, sample.py's out_dir.

Each failure is one sentence on stderr and exit status 2, before anything that was there is touched.
"""

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, ROOT, TINY, need_mnist, run
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vdiff.data import verify as verify_module
from vdiff.data.idx import read_idx
from vdiff.data.verify import PUBLISHED, verify
from vdiff.utils.checks import SAMPLE, TRAIN, check_ranges
from vdiff.utils.config import ConfigError

EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
PROOF_PRESETS = sorted(
    str(p.relative_to(ROOT / "configs" / "proof").with_suffix(""))
    for p in (ROOT / "configs" / "proof").glob("*/*.yaml")
)
TRAIN_IMAGES = "MNIST/raw/train-images-idx3-ubyte.gz"
TEXT = [
    "experiment=text_patterns",
    "data.num_val=64",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "trainer.limit_val_batches=1",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "sampler.steps=4",
    "callbacks.samples.num_samples=2",
    "callbacks.progress_bar=null",
]
FAST_SAMPLE = ["num_samples=2", "sampler.steps=2", "progress=false"]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A two-step MNIST run (DDIM-5 sampler, T = 50) shared by the tests below."""
    need_mnist()
    out = tmp_path_factory.mktemp("mnist_run")
    run("train.py", "experiment=mnist_ddpm", *TINY, "trainer.max_steps=2", f"hydra.run.dir={out}")
    return out


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("text_run")
    run("train.py", *TEXT, f"hydra.run.dir={out}")
    return out / "checkpoints" / "last.ckpt"


def snapshot(folder: Path) -> dict:
    """Every file under folder with its bytes and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def one_sentence(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused run (exit status 2, no traceback)."""
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def compose_train(overrides: list[str]):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides)


# --- 3. range checks -------------------------------------------------------------------------------

BAD_VALUES = [
    (["data.batch_size=-3"], "error: data.batch_size=-3 is out of range: it must be an integer >= 1"),
    (["data.batch_size=0"], "error: data.batch_size=0 is out of range: it must be an integer >= 1"),
    (["data.batch_size=abc"], "error: data.batch_size=abc is not an integer: it must be an integer >= 1"),
    (["schedule.num_steps=0"], "error: schedule.num_steps=0 is out of range: it must be an integer >= 1"),
    (
        ["sampler.steps=80"],
        "error: sampler.steps=80 exceeds schedule.num_steps=50: it must be an integer in [1, schedule.num_steps]",
    ),
    (["sampler.eta=-1"], "error: sampler.eta=-1 is out of range: it must be a number >= 0"),
    (["task.optimizer.lr=0"], "error: task.optimizer.lr=0 is out of range: it must be a number > 0"),
    (["callbacks.ema.decay=1.0"], "error: callbacks.ema.decay=1.0 is out of range: it must be a number in (0, 1)"),
    (
        ["trainer.val_check_interval=0"],
        "error: trainer.val_check_interval=0 is out of range: it must be an integer >= 1",
    ),
    (["data.num_workers=-1"], "error: data.num_workers=-1 is out of range: it must be an integer >= 0"),
]


@pytest.mark.parametrize("overrides,error", BAD_VALUES, ids=[o[0] for o, _ in BAD_VALUES])
def test_train_value_out_of_range_is_one_sentence_before_the_model_summary(overrides, error, mnist_run):
    before = snapshot(mnist_run / "checkpoints")
    proc = run(
        "train.py",
        "experiment=mnist_ddpm",
        *TINY,
        "ckpt_path=last",
        *overrides,
        f"hydra.run.dir={mnist_run}",
        check=False,
    )
    assert one_sentence(proc) == error
    assert "Params" not in proc.stdout  # stopped before Lightning's model summary
    assert snapshot(mnist_run / "checkpoints") == before


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_passes_the_range_checks(experiment):
    for extra in ([], ["trainer=debug"], ["trainer=gpu"]):
        check_ranges(compose_train([f"experiment={experiment}", *extra]), TRAIN)


@pytest.mark.parametrize("preset", PROOF_PRESETS)
def test_every_proof_recipe_passes_the_range_checks(preset):
    train = OmegaConf.load(ROOT / "configs" / "proof" / f"{preset}.yaml").train
    overrides = [o.replace("{logs}", "logs") for o in train]  # the proof's logs dir (vdiff/proof/harness.py)
    check_ranges(compose_train(overrides), TRAIN)


def test_ranges_skip_absent_keys_allow_null_and_extra_values():
    masked = compose_train(["experiment=text_patterns", "sampler.steps=5000"])  # no schedule.num_steps to bound it
    check_ranges(masked, TRAIN)
    check_ranges(compose_train(["experiment=mnist_ddpm", "trainer.max_steps=-1", "task.min_snr_gamma=null"]), TRAIN)
    cases = {
        "task.min_snr_gamma=0": "task.min_snr_gamma=0 is out of range: it must be a number > 0 or null",
        "trainer.max_steps=0": "trainer.max_steps=0 is out of range: it must be an integer >= 1 or -1",
        "data.batch_size=2.5": "data.batch_size=2.5 is not an integer: it must be an integer >= 1",
        "data.batch_size=null": "data.batch_size=null is not an integer: it must be an integer >= 1",
        "model.net.channel_mult=[1,0]": "model.net.channel_mult.1=0 is out of range: it must be an integer >= 1",
        "callbacks.samples.every_n_steps=0": "callbacks.samples.every_n_steps=0 is out of range: it must be an integer >= 1",
    }
    for override, error in cases.items():
        with pytest.raises(ConfigError) as e:
            check_ranges(compose_train(["experiment=mnist_ddpm", override]), TRAIN)
        assert str(e.value) == error
    with pytest.raises(ConfigError, match=r"^data.max_period=1 is below data.min_period=2: "):
        check_ranges(compose_train(["experiment=text_patterns", "data.max_period=1"]), TRAIN)
    with pytest.raises(ConfigError, match=r"^metrics.fid.batch_size=0 is out of range"):
        check_ranges(
            OmegaConf.create({"num_samples": 4, "batch_size": 4, "seed": 0, "metrics": {"fid": {"batch_size": 0}}}),
            SAMPLE,
        )


@pytest.mark.parametrize(
    "overrides,error",
    [
        (["num_samples=0"], "error: num_samples=0 is out of range: it must be an integer >= 1"),
        (["batch_size=0"], "error: batch_size=0 is out of range: it must be an integer >= 1"),
        (
            ["sampler.steps=80"],
            "error: sampler.steps=80 exceeds schedule.num_steps=50: it must be an integer in [1, schedule.num_steps]",
        ),
        (["sampler.guidance_scale=-2"], "error: sampler.guidance_scale=-2 is out of range: it must be a number >= 0"),
    ],
    ids=["num_samples", "batch_size", "steps_above_schedule", "guidance_scale"],
)
def test_sample_value_out_of_range_is_one_sentence(overrides, error, mnist_run, tmp_path):
    proc = run(
        "sample.py",
        f"ckpt_path={mnist_run / 'checkpoints' / 'last.ckpt'}",
        "progress=false",
        *overrides,
        f"out_dir={tmp_path / 'out'}",
        check=False,
    )
    assert one_sentence(proc) == error
    assert not list((tmp_path / "out").glob("samples.*")) and not (tmp_path / "out" / "metrics.json").exists()


# --- 4. data verification --------------------------------------------------------------------------


def data_copy(tmp_path: Path, *folders: str) -> Path:
    root = tmp_path / "data"
    for folder in folders:
        shutil.copytree(DATA / folder, root / folder)
        for p in (root / folder).rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
    return root


def invert_first_images(path: Path, n: int = 100) -> None:
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[16 : 16 + n * 784] = bytes(255 - b for b in data[16 : 16 + n * 784])
    path.write_bytes(gzip.compress(bytes(data)))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def bad_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer: CRC-32, then the length
    path.write_bytes(bytes(data))


CORRUPTIONS = {"inverted_images": invert_first_images, "truncated_gz": truncate, "bad_crc": bad_crc}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS))
def test_corrupt_mnist_file_is_named_before_training(corrupt, tmp_path):
    need_mnist()
    root = data_copy(tmp_path, "MNIST")
    CORRUPTIONS[corrupt](root / TRAIN_IMAGES)
    env = {"VDIFF_DATA_DIR": str(root), "VDIFF_CACHE_DIR": str(tmp_path / "cache")}
    proc = run(
        "train.py",
        "experiment=mnist_ddpm",
        *TINY,
        "data.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=env,
        check=False,
    )
    assert one_sentence(proc) == (
        f"error: data file {root / TRAIN_IMAGES} is corrupt or altered: its MD5 differs from the published one "
        f"of {TRAIN_IMAGES}; replace it with a fresh copy"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unreadable_idx_file_without_a_published_checksum_is_named(tmp_path):
    """An extracted IDX file (no published checksum) cut short is named, not a numpy traceback."""
    need_mnist()
    root = data_copy(tmp_path, "MNIST")
    gz = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    extracted = gz.with_suffix("")
    extracted.write_bytes(gzip.decompress(gz.read_bytes())[:1000])
    gz.unlink()
    env = {"VDIFF_DATA_DIR": str(root), "VDIFF_CACHE_DIR": str(tmp_path / "cache")}
    proc = run(
        "train.py",
        "experiment=mnist_ddpm",
        *TINY,
        "data.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=env,
        check=False,
    )
    assert one_sentence(proc) == (
        f"error: data file {extracted} holds fewer values than its IDX header's shape (60000,); "
        "replace it with a fresh copy"
    )


def test_altered_text_corpus_is_named(tmp_path):
    if not (DATA / "text" / "tinyshakespeare.txt").is_file():
        pytest.skip(f"text/tinyshakespeare.txt not found under {DATA}")
    root = data_copy(tmp_path, "text")
    path = root / "text" / "tinyshakespeare.txt"
    path.write_text(path.read_text().replace("ROMEO", "R0MEO", 1))
    env = {"VDIFF_DATA_DIR": str(root), "VDIFF_CACHE_DIR": str(tmp_path / "cache")}
    proc = run(
        "train.py",
        "experiment=text_shakespeare",
        "model=transformer_tiny",
        "data.seq_len=64",
        "trainer=debug",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=env,
        check=False,
    )
    assert one_sentence(proc) == (
        f"error: data file {path} is corrupt or altered: its SHA256 differs from the published one "
        "of text/tinyshakespeare.txt; replace it with a fresh copy"
    )


def test_verification_is_cached_by_path_size_and_time(tmp_path, monkeypatch):
    need_mnist()
    monkeypatch.setenv("VDIFF_CACHE_DIR", str(tmp_path / "cache"))
    real = DATA / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    verify(str(real), "MNIST/raw/t10k-labels-idx1-ubyte.gz")
    assert len(list((tmp_path / "cache" / "verified").iterdir())) == 1

    def no_hashing(*_):
        raise AssertionError("a verified file was hashed again")

    monkeypatch.setattr(verify_module, "file_digest", no_hashing)
    verify(str(real), "MNIST/raw/t10k-labels-idx1-ubyte.gz")  # the marker answers
    copy = tmp_path / "t10k-labels-idx1-ubyte.gz"
    shutil.copyfile(real, copy)
    with pytest.raises(AssertionError, match="hashed again"):  # another path is checked afresh
        verify(str(copy), "MNIST/raw/t10k-labels-idx1-ubyte.gz")
    verify(str(copy), "my/own/file.gz")  # a file without a published checksum is not checked


def test_published_checksums_are_torchvisions_and_the_shared_folders():
    torchvision = pytest.importorskip("torchvision")
    for dataset in ("MNIST", "FashionMNIST"):
        for name, md5 in getattr(torchvision.datasets, dataset).resources:
            assert PUBLISHED[f"{dataset}/raw/{name}"] == ("md5", md5)
    sums = DATA / "SHA256SUMS"
    if sums.is_file():
        for line in sums.read_text().splitlines():
            digest, name = line.split()
            if name.startswith("./text/"):
                assert PUBLISHED[name[2:]] == ("sha256", digest)


def test_read_idx_names_a_broken_gzip_stream(tmp_path):
    need_mnist()
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    shutil.copyfile(DATA / "MNIST" / "raw" / path.name, path)
    truncate(path)
    with pytest.raises(ValueError, match=rf"^data file {path} cannot be read \(EOFError: "):
        read_idx(str(path))
    shutil.copyfile(DATA / "MNIST" / "raw" / path.name, path)
    bad_crc(path)
    with pytest.raises(ValueError, match=rf"^data file {path} cannot be read \(BadGzipFile: "):
        read_idx(str(path))


# --- 5. sample.py's out_dir ------------------------------------------------------------------------


def test_sample_refuses_an_out_dir_with_an_earlier_run_unless_overwrite(mnist_run, tmp_path):
    args = [f"ckpt_path={mnist_run / 'checkpoints' / 'last.ckpt'}", *FAST_SAMPLE, f"out_dir={tmp_path}"]
    run("sample.py", *args)
    before = snapshot(tmp_path)
    assert tmp_path / "samples.pt" in before and tmp_path / ".hydra" / "config.yaml" in before
    proc = run("sample.py", *args, "seed=1", check=False)
    assert one_sentence(proc) == (
        f"error: out_dir={tmp_path} already holds files of an earlier run; pass overwrite=true to write over "
        "them or choose another out_dir"
    )
    assert snapshot(tmp_path) == before
    run("sample.py", *args, "seed=1", "overwrite=true")
    assert (tmp_path / "samples.pt").read_bytes() != before[tmp_path / "samples.pt"][0]


def test_sample_sweep_refuses_an_out_dir_with_an_earlier_sweep_unless_overwrite(mnist_run, tmp_path):
    args = [
        "-m",
        f"ckpt_path={mnist_run / 'checkpoints' / 'last.ckpt'}",
        "num_samples=2",
        "sampler.steps=2,3",
        "progress=false",
        f"out_dir={tmp_path}",
    ]
    run("sample.py", *args)
    before = snapshot(tmp_path)
    assert {tmp_path / "0" / "samples.pt", tmp_path / "1" / "samples.pt", tmp_path / "sweep.csv"} <= set(before)
    proc = run("sample.py", *args, check=False)
    assert one_sentence(proc) == (
        f"error: out_dir={tmp_path} already holds files of an earlier sweep; pass overwrite=true to write "
        "over them or choose another out_dir"
    )
    assert snapshot(tmp_path) == before
    run("sample.py", *args, "overwrite=true")
    assert (tmp_path / "1" / "samples.pt").stat().st_mtime_ns != before[tmp_path / "1" / "samples.pt"][1]


def test_image_metric_on_a_text_checkpoint_fails_before_sampling(text_ckpt, tmp_path):
    proc = run(
        "sample.py",
        f"ckpt_path={text_ckpt}",
        "num_samples=2",
        "progress=false",
        "metrics=[fid]",
        f"out_dir={tmp_path}",
        check=False,
    )
    assert one_sentence(proc) == (
        "error: metrics.fid measures examples laid out (C, H, W) but this checkpoint's examples have shape "
        "(32,); choose a metric for its kind of data"
    )
    assert not list(tmp_path.glob("samples.*")) and not (tmp_path / "metrics.json").exists()


def _without_dac_override() -> list[str]:
    """A prefix under which permission bits bind even the root user (who ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    return ["setpriv", "--bounding-set=-dac_override"]


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_read_only_out_dir_is_one_sentence(multirun, mnist_run, tmp_path):
    out = tmp_path / "read_only"
    out.mkdir()
    out.chmod(0o555)
    try:
        cmd = [
            *_without_dac_override(),
            sys.executable,
            str(ROOT / "sample.py"),
            *(["-m"] if multirun else []),
            f"ckpt_path={mnist_run / 'checkpoints' / 'last.ckpt'}",
            *FAST_SAMPLE,
            f"out_dir={out}",
        ]
        proc = subprocess.run(
            cmd, cwd=ROOT, env={**os.environ, "VDIFF_DATA_DIR": str(DATA)}, capture_output=True, text=True, timeout=600
        )
        assert (
            one_sentence(proc) == f"error: out_dir={out} cannot be written (Permission denied); choose another out_dir"
        )
        assert not list(out.iterdir())
    finally:
        out.chmod(0o755)
