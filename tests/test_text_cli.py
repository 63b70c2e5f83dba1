"""Masked diffusion LM as a user runs it: train.py / sample.py on patterns and Tiny Shakespeare."""

import json
import math

import pytest
import torch
from conftest import DATA, run

from vdiff.data import CharTextDataModule, PatternsDataModule
from vdiff.diffusion.masked import LinearMasking, nelbo_per_token
from vdiff.metrics import BitsPerToken, MaskedAccuracy
from vdiff.metrics.text import unigram_cross_entropy_bits
from vdiff.models import Transformer
from vdiff.samplers import Unmask
from vdiff.tasks import MaskedDiffusion

TINY_TEXT = [
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "trainer.limit_val_batches=1",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "sampler.steps=4",
    "callbacks.samples.num_samples=2",
    "callbacks.progress_bar=null",
]
PATTERNS = ["experiment=text_patterns", "data.num_val=64", *TINY_TEXT]
SHAKESPEARE = ["experiment=text_shakespeare", "model=transformer_tiny", "data.seq_len=64", *TINY_TEXT]


def ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def need_shakespeare():
    if not (DATA / "text" / "tinyshakespeare.txt").is_file():
        pytest.skip(f"text/tinyshakespeare.txt not found under {DATA} (set VDIFF_DATA_DIR)")


@pytest.fixture(scope="module")
def patterns_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("patterns")
    run("train.py", *PATTERNS, f"hydra.run.dir={out}")
    return out


@pytest.fixture(scope="module")
def shakespeare_run(tmp_path_factory):
    need_shakespeare()
    out = tmp_path_factory.mktemp("shakespeare")
    run("train.py", *SHAKESPEARE, f"hydra.run.dir={out}")
    return out


def test_patterns_run_logs_bits_per_char_and_text_samples(patterns_run):
    log = (patterns_run / "csv" / "metrics.csv").read_text()
    assert "val/bpc" in log and "val/acc" in log and "samples/unigram_entropy_bits" in log
    text = sorted((patterns_run / "samples").glob("text_*.txt"))[-1].read_text()
    assert text.count("===== sample") == 2
    c = ckpt(patterns_run / "checkpoints" / "last.ckpt")
    assert c["global_step"] == 4 and c["PatternsDataModule"]["vocab"] == "ABCDEFGHIJKLMNO" and "EMA" in c["callbacks"]


def test_sample_writes_text_and_ids_with_metrics(patterns_run, tmp_path):
    args = [
        f"ckpt_path={patterns_run / 'checkpoints' / 'last.ckpt'}",
        "sampler=unmask",
        "sampler.steps=8",
        "num_samples=6",
        "metrics=[valid_patterns,entropy,masked_accuracy,bits_per_char]",
        "metrics.bits_per_char.t_samples=2",
    ]
    run("sample.py", *args, f"out_dir={tmp_path / 'a'}")
    run("sample.py", *args, f"out_dir={tmp_path / 'b'}")
    a = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert a == json.loads((tmp_path / "b" / "samples.json").read_text())  # the seed decides
    ids = torch.tensor(a["ids"])
    assert ids.shape == (6, 32) and (ids > 0).all() and ids.max() < 16
    assert a["text"][0] == "".join("ABCDEFGHIJKLMNO"[i - 1] for i in a["ids"][0])
    assert (tmp_path / "a" / "samples.txt").read_text().count("===== sample") == 6
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert 0 <= m["valid_patterns"]["valid_fraction"] <= 1 and m["entropy"]["mask_fraction"] == 0
    assert len(m["masked_accuracy"]["accuracy"]) == 9 and (tmp_path / "a" / "masked_accuracy.png").stat().st_size > 0
    assert m["bits_per_char"]["bits_per_token"] > 0 and m["bits_per_char"]["uniform_bits"] == math.log2(15)
    assert (
        m["sampling"]["sampler"] == "Unmask" and m["sampling"]["steps"] == 8 and m["sampling"]["guidance_scale"] is None
    )


def test_prompt_infilling_keeps_the_given_characters(patterns_run, tmp_path):
    run(
        "sample.py",
        f"ckpt_path={patterns_run / 'checkpoints' / 'last.ckpt'}",
        "num_samples=3",
        "prompt=AB__AB_C",
        f"out_dir={tmp_path}",
    )
    for text in json.loads((tmp_path / "samples.json").read_text())["text"]:
        assert len(text) == 32 and text[:2] == "AB" and text[4:6] == "AB" and text[7] == "C" and "_" not in text


def test_a_bad_prompt_is_named(patterns_run, tmp_path):
    proc = run(
        "sample.py",
        f"ckpt_path={patterns_run / 'checkpoints' / 'last.ckpt'}",
        "prompt=AB?",
        f"out_dir={tmp_path}",
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == "error: prompt: character '?' is not in the vocabulary"


def test_text_resume_gives_the_same_weights(tmp_path):
    # a one-cycle LR schedule fixed to the full run's length: the half run stops mid-schedule
    common = [
        *PATTERNS,
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "seed=5",
        "lr_scheduler@task.lr_scheduler=onecycle",
        "task.lr_scheduler.total_steps=6",
    ]
    run("train.py", *common, f"hydra.run.dir={tmp_path / 'straight'}")
    run("train.py", *common, "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'half'}")
    run(
        "train.py",
        *common,
        f"ckpt_path={tmp_path / 'half' / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    a, b = (
        ckpt(tmp_path / "straight" / "checkpoints" / "last.ckpt"),
        ckpt(tmp_path / "resumed" / "checkpoints" / "last.ckpt"),
    )
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)


def test_vocabulary_travels_with_the_checkpoint(shakespeare_run, tmp_path):
    c = ckpt(shakespeare_run / "checkpoints" / "last.ckpt")
    vocab = c["CharTextDataModule"]["vocab"]
    assert len(vocab) == 65 and c["config"]["model"]["net"]["vocab_size"] == 66
    # no data file at sampling time: the checkpoint's vocabulary decodes
    run(
        "sample.py",
        f"ckpt_path={shakespeare_run / 'checkpoints' / 'last.ckpt'}",
        "num_samples=2",
        "sampler=unmask",
        "sampler.steps=4",
        "paths.data_dir=/nonexistent",
        f"out_dir={tmp_path}",
    )
    texts = json.loads((tmp_path / "samples.json").read_text())["text"]
    assert all(len(t) == 64 and set(t) <= set(vocab) for t in texts)


def test_resume_with_another_vocabulary_fails_with_one_sentence(shakespeare_run):
    before = {p: p.read_bytes() for p in (shakespeare_run / "checkpoints").iterdir()}
    proc = run(
        "train.py",
        *SHAKESPEARE,
        "data.file=text/kjv.txt",
        "ckpt_path=last",
        "trainer.max_steps=6",
        f"hydra.run.dir={shakespeare_run}",
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "vocabulary mismatch" in lines[0] and "kjv.txt" in lines[0]
    assert before == {p: p.read_bytes() for p in (shakespeare_run / "checkpoints").iterdir()}


def test_missing_text_file_is_named(tmp_path):
    proc = run("train.py", *SHAKESPEARE, "data.root=/nonexistent", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: data.file: /nonexistent/text/tinyshakespeare.txt not found; "
        "point data.root (or VDIFF_DATA_DIR) at the folder holding it"
    ]
    assert not (tmp_path / "checkpoints").exists()


def test_a_briefly_trained_tiny_model_predicts_masked_tokens_well_above_chance():
    """300 steps of the 64-d transformer on patterns (in process, ~20 s on a CPU)."""
    torch.manual_seed(0)
    dm = PatternsDataModule(batch_size=64, num_val=256, eval_batch_size=256)
    dm.setup()
    task = MaskedDiffusion(
        Transformer(16, 32, dim=64, depth=3, heads=4),
        LinearMasking(),
        Unmask(8),
        optimizer=lambda p: torch.optim.AdamW(p, lr=2e-3),
    )
    opt = task.configure_optimizers()
    for _, batch in zip(range(300), dm.train_dataloader()):
        t, masked, nll, _ = task.forward_terms(batch["x"])
        loss = nelbo_per_token(nll, masked, t, task.schedule).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = MaskedAccuracy(ratios=[0.25, 0.5], num_sequences=256)(None, dm, torch.device("cpu"), task=task)["accuracy"]
    assert min(acc) > 0.5  # chance is 1/15
    bits = BitsPerToken(t_samples=2)(None, dm, torch.device("cpu"), task=task)["bits_per_token"]
    assert bits < 0.5 * math.log2(15)


def test_unigram_bits_are_the_add_one_cross_entropy():
    # symbols 1..3 counted 2, 1, 0 in training -> add-one frequencies 3/6, 2/6, 1/6
    bits = unigram_cross_entropy_bits(torch.tensor([1, 1, 2]), torch.tensor([[1, 3]]), vocab_size=4)
    assert bits == pytest.approx((1 + math.log2(6)) / 2, abs=1e-12)


def test_bits_per_char_baselines_on_patterns():
    """Uniform symbols: the unigram baseline is the uniform one, log2(V - 1), to within sampling."""
    torch.manual_seed(0)
    dm = PatternsDataModule(num_val=32)
    task = MaskedDiffusion(Transformer(16, 32, dim=32, depth=1, heads=2), LinearMasking(), Unmask(4), optimizer=None)
    r = BitsPerToken(t_samples=1)(None, dm, torch.device("cpu"), task=task)
    assert r["uniform_bits"] == math.log2(15)
    assert abs(r["unigram_bits"] - math.log2(15)) < 0.01


def test_unigram_bits_of_shakespeare_lie_below_uniform():
    need_shakespeare()
    dm = CharTextDataModule(root=str(DATA), file="text/tinyshakespeare.txt", seq_len=64)
    dm.setup()
    bits = unigram_cross_entropy_bits(dm.train_tokens(), dm.eval_sets["val"], dm.vocab_size)
    assert 4.0 < bits < math.log2(dm.vocab_size - 1) - 1  # English letters: about 4.7 of 6.0 bits


@pytest.mark.gpu
def test_gpu_bf16_compiled_text_training_resumes(tmp_path):
    fast = ["trainer=gpu", "trainer.devices=1", "model.compile=true"]
    run("train.py", *PATTERNS, *fast, f"hydra.run.dir={tmp_path}")
    run("train.py", *PATTERNS, *fast, "trainer.max_steps=6", "ckpt_path=last", f"hydra.run.dir={tmp_path}")
    c = ckpt(tmp_path / "checkpoints" / "last.ckpt")
    assert c["global_step"] == 6 and all(k.startswith("net.") and "_orig_mod" not in k for k in c["state_dict"])
