"""docs/guides/extending.md: every worked example on the page runs as a user would run it.

Each code block of the page's examples follows a marker `<!-- example: <name> -->` (an HTML comment,
which mkdocs does not render): a file's path (`mypkg/samplers.py`, `configs/sampler/quadratic_ddim.yaml`),
written as-is into a folder of the user's own, or `<what> command(s)`, a bash block whose `python
train.py` / `sample.py` lines are run with their values shrunk to seconds (`run_commands`). The configs
folder reaches Hydra through `hydra.searchpath` and the package through PYTHONPATH, as the page says.
"""

import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, ROOT, TINY, run

from tests.toy import MLP
from vdiff.contracts import Metric, Sampler
from vdiff.data import MNISTDataModule
from vdiff.diffusion import LinearSchedule
from vdiff.samplers import DDIM

PAGE = ROOT / "docs" / "guides" / "extending.md"
MARKED = re.compile(r"<!-- example: ([^>]+?) -->\n```(\w+)\n(.*?)\n```", re.S)
FENCE = re.compile(r"^```(\w+)$", re.M)
NAMES = [
    "configs/data/toy_ring.yaml",
    "configs/model/toy_mlp.yaml",
    "toy commands",
    "mypkg/samplers.py",
    "configs/sampler/quadratic_ddim.yaml",
    "sampler command",
    "mypkg/metrics.py",
    "configs/metrics/brightness.yaml",
    "metric command",
]
TRAIN = {  # a run of two steps, validating and drawing 4 samples once
    "trainer.max_steps": "2",
    "trainer.val_check_interval": "2",
    "trainer.limit_val_batches": "1",
    "data.batch_size": "16",
    "callbacks.samples.num_samples": "4",
    "callbacks.progress_bar": "null",
}
SAMPLE = {"num_samples": "8", "progress": "false"}


def examples() -> dict[str, str]:
    return {name: code + "\n" for name, _, code in MARKED.findall(PAGE.read_text(encoding="utf-8"))}


def commands(block: str) -> list[list[str]]:
    """The bash block's command lines as argument lists, continuation lines joined, comments dropped."""
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def run_commands(
    block: str, folder: Path, train: dict | None = None, sample: dict | None = None, run_dir: Path | None = None
) -> None:
    """Run each `python <script> key=value ...` of a bash block as a user would, from `folder` (its
    configs/ on Hydra's search path, the folder on PYTHONPATH), with the values of `train` (train.py)
    or `sample` (sample.py) in place of the command's for the same key (None: dropped) or added; `<run dir>` is `run_dir`."""
    for python, script, *args in commands(block.replace("<run dir>", str(run_dir))):
        assert python == "python" and script in ("train.py", "sample.py"), block
        values = {
            "hydra.searchpath": f"[file://{folder / 'configs'}]",
            **(TRAIN | (train or {}) if script == "train.py" else SAMPLE | (sample or {})),
        }
        given = dict(arg.split("=", 1) for arg in args)
        overrides = [f"{k}={v}" for k, v in (given | values).items() if v is not None]
        run(script, *overrides, env={"PYTHONPATH": str(folder)})


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    """A user's folder holding the page's files: mypkg/ (importable) and configs/<group>/."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("")
    for name, code in examples().items():
        if "/" in name:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(code)
    return folder


@pytest.fixture(scope="module")
def toy_run(user) -> Path:
    """The page's toy commands, shrunk: a 2-step run of the ring and the MLP, then sample.py on it."""
    run_commands(
        examples()["toy commands"],
        user,
        train={"hydra.run.dir": str(user / "toy")},
        sample={"ckpt_path": str(user / "toy" / "checkpoints" / "last.ckpt"), "out_dir": str(user / "toy_samples")},
    )
    return user / "toy"


@pytest.fixture
def mypkg(user, monkeypatch):
    """The user's package importable here, as PYTHONPATH makes it for train.py and sample.py."""
    monkeypatch.syspath_prepend(str(user))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == "mypkg"]:
        del sys.modules[name]


def test_every_code_block_of_an_example_is_marked_and_the_toy_configs_are_its_files():
    text = PAGE.read_text(encoding="utf-8")
    found = examples()
    assert list(found) == NAMES
    assert len([lang for lang in FENCE.findall(text) if lang in ("python", "yaml", "bash")]) == len(NAMES)
    for name in ("configs/data/toy_ring.yaml", "configs/model/toy_mlp.yaml"):
        assert found[name] == (ROOT / "tests" / "toy" / name).read_text(), f"the page's {name} is not tests/toy's"


def test_the_dataset_and_network_train_and_sample(toy_run, user):
    assert (toy_run / "checkpoints" / "last.ckpt").is_file()
    assert (toy_run / "samples" / "step0000002" / "samples.csv").is_file()  # log_samples while training
    points = torch.load(user / "toy_samples" / "samples.pt")
    assert points.shape == (8, 2)
    assert len((user / "toy_samples" / "samples.csv").read_text().splitlines()) == 8


def test_the_quadratic_ddim_walks_quadratic_timesteps_with_ddim_steps(mypkg):
    from mypkg.samplers import QuadraticDDIM

    sampler = QuadraticDDIM(steps=10, eta=0.5)
    assert isinstance(sampler, Sampler)
    c = 0.8 * 1000 / 9**2  # t_i = floor(c i^2), the last near 0.8 T (Song et al. 2021, D.2)
    assert sampler.timesteps(1000) == [int(c * i * i + 1e-9) for i in range(9, -1, -1)]
    gaps = -np.diff(sampler.timesteps(1000))
    assert (np.diff(gaps) < 0).all()  # denser near t = 0

    net, schedule = MLP().eval(), LinearSchedule(100)
    seen = []
    net.register_forward_hook(lambda module, args, out: seen.append(int(args[1][0])))
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    out = sampler(net, schedule, x_T, generator=torch.Generator().manual_seed(1))
    assert seen == sampler.timesteps(100) and out.shape == (6, 2)

    ddim = DDIM(steps=10, eta=0.5)  # vdiff's DDIM on the same table takes the same steps
    ddim.timesteps = sampler.timesteps
    assert torch.equal(ddim(net, schedule, x_T, generator=torch.Generator().manual_seed(1)), out)
    assert QuadraticDDIM(steps=2).timesteps(5) == DDIM(steps=2, spacing="linspace").timesteps(5) == [4, 0]
    assert torch.equal(  # where the two spacings agree, so do the samples
        QuadraticDDIM(steps=2)(net, LinearSchedule(5), x_T),
        DDIM(steps=2, spacing="linspace")(net, LinearSchedule(5), x_T),
    )

    fewer = sampler.with_max_steps(4, 1000)
    assert type(fewer) is QuadraticDDIM and (fewer.steps, fewer.eta) == (4, 0.5)
    assert sampler.with_max_steps(10, 1000) is sampler
    assert sampler.settings(1000) == {"steps": 10, "eta": 0.5, "guidance_scale": 1.0, "nfe": 10}


def test_the_sampler_runs_from_sample_py(toy_run, user, mypkg):
    from mypkg.samplers import QuadraticDDIM

    out = user / "quadratic"
    run_commands(
        examples()["sampler command"],
        user,
        sample={
            "metrics": None,  # the page's image metric: the toy's examples are points
            "out_dir": str(out),
        },
        run_dir=toy_run,
    )
    record = json.loads((out / "metrics.json").read_text())["sampling"]
    steps = len(QuadraticDDIM(steps=20).timesteps(50))  # the toy's schedule.num_steps=50; repeats merged
    assert (record["sampler"], record["steps"], record["eta"]) == ("QuadraticDDIM", steps, 0.0)
    assert torch.load(out / "samples.pt").shape == (8, 2)


def test_the_metric_runs_from_sample_py(user, mypkg, mnist_root):
    from mypkg.metrics import MeanBrightness

    assert isinstance(MeanBrightness(), Metric)
    mnist = user / "mnist"
    run(
        "train.py",
        *[o for o in TINY if not o.startswith("trainer.max_steps")],
        "trainer.max_steps=2",
        f"hydra.run.dir={mnist}",
    )
    out = user / "brightness"
    run_commands(
        examples()["metric command"],
        user,
        sample={
            "metrics": "[brightness]",  # the page's fid beside it reads 10000 reference images
            "num_samples": "4",
            "out_dir": str(out),
        },
        run_dir=mnist,
    )
    result = json.loads((out / "metrics.json").read_text())["brightness"]
    samples = torch.load(out / "samples.pt")
    real = MNISTDataModule(root=str(DATA)).reference_images("test", 4)
    assert result["num_samples"] == 4
    assert result["mean"] == pytest.approx(float(samples.mean()), abs=1e-6)
    assert result["real_mean"] == pytest.approx(float(real.mean()), abs=1e-6)
