"""The text8 recipes (experiment=text8_mdlm, text8_ar): MDLM's published text8 shapes, and a run of
each on a small stand-in text8.zip, the masked model's samples scored by the autoregressive one."""

import json
import random
import zipfile

import pytest
import torch
from conftest import ROOT, run
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vdiff.models import Transformer
from vdiff.utils.checks import TRAIN, check_ranges
from vdiff.utils.config import check_target_keys

TEXT8_VOCAB = " abcdefghijklmnopqrstuvwxyz"
RECIPES = {"text8_mdlm": "vdiff.tasks.MaskedDiffusion", "text8_ar": "vdiff.tasks.Autoregressive"}
SMALL = [
    "model.net.dim=32",
    "model.net.depth=1",
    "model.net.heads=2",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "sampler.steps=4",
    "callbacks.samples.num_samples=1",
    "callbacks.progress_bar=null",
]


def compose_train(overrides: list[str]):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides)


def stand_in_text8(root):
    """`root`/text8.zip: one member `text8` of 20 000 lowercase letters and spaces (5 % is 1000
    characters, so val and test hold 3 windows of 256). Returns root."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = ["".join(rng.choice(TEXT8_VOCAB[1:]) for _ in range(rng.randint(1, 8))) for _ in range(300)]
    text = " ".join(rng.choice(words) for _ in range(5000))[:20000]
    with zipfile.ZipFile(root / "text8.zip", "w") as z:
        z.writestr("text8", text)
    return root


@pytest.fixture(scope="module")
def text8_root(tmp_path_factory):
    return stand_in_text8(tmp_path_factory.mktemp("text8"))


@pytest.mark.parametrize("experiment", RECIPES)
def test_recipe_has_mdlms_published_text8_shapes(experiment):
    cfg = compose_train([f"experiment={experiment}"])
    net, data, task = cfg.model.net, cfg.data, cfg.task
    assert (net.depth, net.dim, net.heads, net.dropout) == (12, 768, 12, 0.05)
    assert (data.seq_len, data.batch_size, data.file, data.vocab) == (256, 512, "text8.zip", TEXT8_VOCAB)
    assert data.splits == [0.9, 0.05, 0.05]
    assert task._target_ == RECIPES[experiment]
    assert task.optimizer.lr == 3e-4 and list(task.optimizer.betas) == [0.9, 0.999]
    assert task.lr_scheduler.total_iters == 2500 and cfg.trainer.max_steps == 1_000_000
    assert cfg.callbacks.ema.decay == 0.9999 and cfg.trainer.gradient_clip_val == 1.0
    check_target_keys(cfg)  # every key is an argument of its class
    check_ranges(cfg, TRAIN)
    with torch.device("meta"):  # MDLM's "small" size: about 85M parameters in the blocks
        full = Transformer(len(TEXT8_VOCAB) + 1, 256, dim=768, depth=12, heads=12, positions="rotary")
    assert 84e6 < sum(p.numel() for p in full.blocks.parameters()) < 86e6


def test_the_two_recipes_share_data_network_and_optimiser():
    mdlm, ar = (compose_train([f"experiment={e}"]) for e in RECIPES)
    assert OmegaConf.to_container(mdlm.model) == OmegaConf.to_container(ar.model)
    assert OmegaConf.to_container(mdlm.data) == OmegaConf.to_container(ar.data)
    assert OmegaConf.to_container(mdlm.task.optimizer) == OmegaConf.to_container(ar.task.optimizer)
    assert mdlm.schedule._target_ == "vdiff.diffusion.LogLinearMasking" and mdlm.sampler._target_.endswith("Unmask")
    assert ar.sampler._target_.endswith("Ancestral")


@pytest.fixture(scope="module")
def runs(text8_root, tmp_path_factory):
    out = {}
    for experiment in RECIPES:
        folder = tmp_path_factory.mktemp(experiment)
        run("train.py", f"experiment={experiment}", f"data.root={text8_root}", *SMALL, f"hydra.run.dir={folder}")
        out[experiment] = folder
    return out


@pytest.mark.parametrize("experiment", RECIPES)
def test_recipe_trains_on_a_text8_zip_with_its_context(runs, experiment):
    folder = runs[experiment]
    c = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    net = c["config"]["model"]["net"]
    assert c["global_step"] == 2 and c["CharTextDataModule"]["vocab"] == TEXT8_VOCAB
    assert (net["vocab_size"], net["seq_len"], net["dim"], net["positions"]) == (28, 256, 32, "rotary")
    assert c["config"]["task"]["_target_"] == RECIPES[experiment]
    assert "val/bpc" in (folder / "csv" / "metrics.csv").read_text()


def test_mdlm_samples_are_scored_by_the_ar_recipe(runs, tmp_path):
    ar_ckpt = runs["text8_ar"] / "checkpoints" / "last.ckpt"
    run(
        "sample.py",
        f"ckpt_path={runs['text8_mdlm'] / 'checkpoints' / 'last.ckpt'}",
        "num_samples=2",
        "sampler.steps=4",
        "progress=false",
        "metrics=[gen_ppl]",
        f"metrics.gen_ppl.ar_ckpt={ar_ckpt}",
        "metrics.gen_ppl.split=test",
        f"out_dir={tmp_path}",
    )
    m = json.loads((tmp_path / "metrics.json").read_text())["gen_ppl"]
    assert m["num_tokens"] == 2 * 256 and m["num_reference"] == 3 and m["split"] == "test"
    assert 1 < m["gen_ppl"] < 100 and 1 < m["reference_ppl"] < 100  # an untrained model: about the 27 symbols
