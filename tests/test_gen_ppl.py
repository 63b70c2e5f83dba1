"""Token metrics across the token tasks: generative perplexity under an autoregressive checkpoint
(metrics=[gen_ppl]), bits per character of every token task, masked accuracy without [MASK]."""

import json
import math

import pytest
import torch
from conftest import run

from vdiff.data import PatternsDataModule
from vdiff.diffusion import LinearMasking, LogLinearMasking
from vdiff.metrics import BitsPerToken, GenerativePerplexity, MaskedAccuracy
from vdiff.metrics.gen_ppl import row_entropy_bits, scored_tokens
from vdiff.metrics.text import _val_tokens
from vdiff.models import Transformer
from vdiff.samplers import Ancestral, Unmask
from vdiff.tasks import Autoregressive, MaskedDiffusion
from vdiff.utils.config import ConfigError

CPU = torch.device("cpu")
TINY = [
    "experiment=text_patterns",
    "data.num_val=64",
    "data.num_test=64",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "trainer.limit_val_batches=1",
    "trainer.max_steps=4",
    "trainer.val_check_interval=4",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=2",
    "callbacks.progress_bar=null",
]
AR = ["task=autoregressive", "sampler=ancestral"]
FAST_SAMPLE = ["num_samples=4", "progress=false"]


def train(out, *overrides) -> str:
    run("train.py", *TINY, *overrides, f"hydra.run.dir={out}")
    return str(out / "checkpoints" / "last.ckpt")


@pytest.fixture(scope="module")
def ar_ckpt(tmp_path_factory):
    """The autoregressive baseline on patterns (vocab_size 16), a few dozen steps."""
    return train(tmp_path_factory.mktemp("ar"), *AR, "trainer.max_steps=30", "trainer.val_check_interval=30")


@pytest.fixture(scope="module")
def masked_ckpt(tmp_path_factory):
    return train(tmp_path_factory.mktemp("masked"), "sampler.steps=4")


@pytest.fixture(scope="module")
def ar8_ckpt(tmp_path_factory):
    """An autoregressive checkpoint of another vocabulary: patterns over 7 symbols (vocab_size 8)."""
    return train(tmp_path_factory.mktemp("ar8"), *AR, "data.vocab_size=8")


def patterns(**kw) -> PatternsDataModule:
    dm = PatternsDataModule(num_val=64, num_test=64, **kw)
    dm.prepare_data()
    return dm


def sample(ckpt, out, *overrides, check=True):
    return run("sample.py", f"ckpt_path={ckpt}", *FAST_SAMPLE, *overrides, f"out_dir={out}", check=check)


def one_sentence(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


# generative perplexity


def test_gen_ppl_is_exp_of_the_ar_models_mean_window_nll(ar_ckpt):
    metric = GenerativePerplexity(ar_ckpt=ar_ckpt, batch_size=3)
    dm = patterns()
    ar = metric.task
    samples = torch.randint(1, 16, (5, 32), generator=torch.Generator().manual_seed(0))
    r = metric(samples, dm, CPU, task=metric.task)
    with torch.no_grad():
        nats = ar.window_nll(samples, dtype=torch.float64).sum()
        ref = _val_tokens(dm, "val", 256)
        ref_nats = ar.window_nll(ref, dtype=torch.float64).sum()
    assert r["gen_ppl"] == pytest.approx(math.exp(float(nats) / samples.numel()), rel=1e-12)
    assert r["reference_ppl"] == pytest.approx(math.exp(float(ref_nats) / ref.numel()), rel=1e-12)
    assert r["num_tokens"] == 5 * 32 and r["num_reference"] == 64 and r["ar_ckpt"] == ar_ckpt
    assert r["entropy_bits"] == pytest.approx(float(row_entropy_bits(samples, samples > 0, 16).mean()))


def test_samples_longer_than_the_context_are_scored_in_chunks_from_the_start_token(ar_ckpt):
    metric = GenerativePerplexity(ar_ckpt=ar_ckpt)
    ar = metric.task
    assert ar.net.seq_len == 32
    samples = torch.randint(1, 16, (3, 80), generator=torch.Generator().manual_seed(1))
    r = metric(samples, patterns(), CPU, task=metric.task)
    with torch.no_grad():
        nats = sum(
            float(ar.window_nll(samples[:, a:b], dtype=torch.float64).sum()) for a, b in ((0, 32), (32, 64), (64, 80))
        )
    assert r["gen_ppl"] == pytest.approx(math.exp(nats / samples.numel()), rel=1e-12) and r["num_tokens"] == 240


def test_tokens_after_the_end_of_text_id_are_not_scored(ar_ckpt):
    metric = GenerativePerplexity(ar_ckpt=ar_ckpt)
    samples = torch.randint(1, 5, (2, 32), generator=torch.Generator().manual_seed(2))
    samples[0, 10] = 15  # eos at 10: 11 tokens scored; row 1 has none: all 32
    keep = scored_tokens(samples, 15)
    assert keep.sum(-1).tolist() == [11, 32]
    metric.task.eos_id = 15  # the sampled task's end-of-text id (here the scorer stands in for it)
    r = metric(samples, patterns(), CPU, task=metric.task)
    with torch.no_grad():
        nats = float(metric.task.window_nll(samples[:1, :11], dtype=torch.float64).sum())
        nats += float(metric.task.window_nll(samples[1:], dtype=torch.float64).sum())
    # a shorter window runs other float32 kernels: equal to within their rounding
    assert r["num_tokens"] == 43 and r["gen_ppl"] == pytest.approx(math.exp(nats / 43), rel=1e-6)


def test_entropy_bits_is_the_mean_of_each_samples_unigram_entropy():
    x = torch.tensor([[1, 1, 1, 1], [1, 2, 3, 4]])
    assert row_entropy_bits(x, torch.ones_like(x, dtype=torch.bool), 16).tolist() == [0.0, 2.0]


def test_the_ar_models_own_greedy_text_scores_below_uniform_random_tokens(ar_ckpt, tmp_path):
    """Greedy text has each token's probability at least 1 / (V - 1) (the largest of V - 1), uniform random
    tokens at most that on average (Jensen): a metric of the wrong sign or scale fails this."""
    sample(ar_ckpt, tmp_path, "sampler.top_k=1", "metrics=[gen_ppl]", f"metrics.gen_ppl.ar_ckpt={ar_ckpt}")
    m = json.loads((tmp_path / "metrics.json").read_text())["gen_ppl"]
    metric = GenerativePerplexity(ar_ckpt=ar_ckpt)
    noise = torch.randint(1, 16, (64, 32), generator=torch.Generator().manual_seed(3))
    uniform = metric(noise, patterns(), CPU, task=metric.task)
    assert m["gen_ppl"] < 15 < uniform["gen_ppl"]
    assert m["num_tokens"] == 4 * 32 and m["ar_ckpt"] == ar_ckpt and m["reference_ppl"] < uniform["gen_ppl"]
    assert 0 <= m["entropy_bits"] <= uniform["entropy_bits"] <= math.log2(15)


def test_gen_ppl_without_an_ar_checkpoint_fails_before_sampling(masked_ckpt, tmp_path):
    line = one_sentence(sample(masked_ckpt, tmp_path, "metrics=[gen_ppl]", check=False))
    assert line.startswith("error: metrics.gen_ppl.ar_ckpt is not set: pass metrics.gen_ppl.ar_ckpt=")
    assert "experiment=text_shakespeare_ar_cpu" in line
    missing = tmp_path / "missing.ckpt"
    line = one_sentence(
        sample(masked_ckpt, tmp_path, "metrics=[gen_ppl]", f"metrics.gen_ppl.ar_ckpt={missing}", check=False)
    )
    assert line == f"error: metrics.gen_ppl.ar_ckpt={missing}: no such checkpoint file"
    assert not (tmp_path / "samples.json").exists()


def test_gen_ppl_refuses_a_checkpoint_that_is_not_autoregressive(masked_ckpt, tmp_path):
    args = ["metrics=[gen_ppl]", f"metrics.gen_ppl.ar_ckpt={masked_ckpt}"]
    line = one_sentence(sample(masked_ckpt, tmp_path, *args, check=False))
    assert line.startswith(f"error: metrics.gen_ppl.ar_ckpt={masked_ckpt}: its task is vdiff.tasks.MaskedDiffusion")
    assert not (tmp_path / "samples.json").exists()


def test_gen_ppl_refuses_an_ar_checkpoint_of_another_vocabulary(masked_ckpt, ar8_ckpt, tmp_path):
    line = one_sentence(
        sample(masked_ckpt, tmp_path, "metrics=[gen_ppl]", f"metrics.gen_ppl.ar_ckpt={ar8_ckpt}", check=False)
    )
    assert line.startswith(f"error: metrics.gen_ppl.ar_ckpt={ar8_ckpt}: ")
    assert "vocab_size 8" in line and "vocab_size 16" in line
    assert not (tmp_path / "samples.json").exists()
    with pytest.raises(ConfigError, match="vocab_size 8"):  # called directly, it checks the datamodule it is given
        metric = GenerativePerplexity(ar_ckpt=ar8_ckpt)
        metric(torch.ones(1, 32, dtype=torch.long), patterns(), CPU, task=metric.task)


# bits per character of every token task


def test_bits_per_char_of_ar_and_masked_checkpoints_on_the_test_split(ar_ckpt, masked_ckpt, tmp_path):
    bpc = ["metrics=[bits_per_char]", "metrics.bits_per_char.split=test", "metrics.bits_per_char.t_samples=2"]
    for name, ckpt in (("ar", ar_ckpt), ("masked", masked_ckpt)):
        sample(ckpt, tmp_path / name, *bpc, *(["sampler.steps=4"] if name == "masked" else []))
        m = json.loads((tmp_path / name / "metrics.json").read_text())["bits_per_char"]
        assert m["split"] == "test" and m["num_tokens"] == 64 * 32 and 0 < m["bits_per_token"] < 2 * math.log2(15)
        assert m["uniform_bits_under_schedule"] == m["uniform_bits"] == math.log2(15)  # mask_linear / no noise


def test_bits_per_char_of_the_ar_model_is_its_exact_nll_on_the_chosen_split(ar_ckpt):
    ar = GenerativePerplexity(ar_ckpt=ar_ckpt).task
    dm = patterns()
    with torch.no_grad():
        for split in ("val", "test"):
            r = BitsPerToken(split=split, t_samples=2, batch_size=16)(None, dm, CPU, task=ar)
            x = dm.eval_sets[split]
            exact = float(ar.window_nll(x, dtype=torch.float64).sum())
            assert r["bits_per_token"] == pytest.approx(exact / x.numel() / math.log(2), rel=1e-12)
    assert not torch.equal(dm.eval_sets["val"], dm.eval_sets["test"])  # two splits, two numbers


def test_unknown_split_is_named():
    with pytest.raises(ConfigError, match=r"metrics.bits_per_char.split='train' must be one of val, test"):
        BitsPerToken(split="train")


class UniformNet(torch.nn.Module):
    """Equal logits for every token: a model that knows nothing."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size, self.dummy = vocab_size, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t=None, cond=None):
        return torch.zeros(*x.shape, self.vocab_size) + self.dummy


def test_under_the_log_linear_schedule_knowing_nothing_scores_one_minus_eps_of_uniform():
    dm = PatternsDataModule(num_val=1024, eval_batch_size=256)
    dm.prepare_data()
    task = MaskedDiffusion(UniformNet(16), LogLinearMasking(eps=0.2), Unmask(4), optimizer=None, t_min=1e-4)
    r = BitsPerToken(t_samples=16, batch_size=256)(None, dm, CPU, task=task)
    assert r["uniform_bits"] == math.log2(15) and r["uniform_bits_under_schedule"] == pytest.approx(0.8 * math.log2(15))
    assert r["bits_per_token"] == pytest.approx(0.8 * math.log2(15), rel=0.01)


# masked accuracy


def test_masked_accuracy_never_predicts_mask():
    """A net whose largest logit is [MASK] everywhere and whose next is the true token: accuracy 1."""
    dm = patterns()
    task = MaskedDiffusion(UniformNet(16), LinearMasking(), Unmask(4), optimizer=None)
    x = _val_tokens(dm, "val", 64)

    def denoiser(xt, t, cond=None):
        logits = 5.0 * torch.nn.functional.one_hot(x, 16).float()
        logits[..., task.mask_id] = 10.0
        return logits

    task.denoiser = denoiser
    r = MaskedAccuracy(ratios=[0.3, 0.7], num_sequences=64)(None, dm, CPU, task=task)
    assert r["accuracy"] == [1.0, 1.0]


def test_masked_accuracy_refuses_a_task_that_is_not_bidirectional():
    ar = Autoregressive(Transformer(16, 32, dim=16, depth=1, heads=2), Ancestral(), optimizer=None)
    with pytest.raises(ConfigError, match=r"^metrics.masked_accuracy needs a bidirectional masked-diffusion"):
        MaskedAccuracy(ratios=[0.5])(None, patterns(), CPU, task=ar)
    with pytest.raises(ConfigError, match=r"^metrics.masked_accuracy needs a token-model checkpoint \(masked, autoreg"):
        MaskedAccuracy(ratios=[0.5])(None, patterns(), CPU, task=None)
