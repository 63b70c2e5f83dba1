"""Block diffusion (BD3-LM) and the autoregressive baseline: the loss equivalences, causal masks,
the KV cache, generation past the context, the stop at end-of-text, bad input and exact resume."""

import functools

import pytest
import torch
from conftest import run
from test_text_cli import PATTERNS, ckpt

from vdiff.diffusion.blocks import causal_mask, vectorized_training_mask
from vdiff.diffusion.masked import LinearMasking, MaskingSchedule, token_nll
from vdiff.models import Transformer
from vdiff.samplers import Ancestral, Unmask
from vdiff.tasks import Autoregressive, BlockDiffusion, MaskedDiffusion

V, L = 12, 16


def _net(**kw):
    torch.manual_seed(0)
    return Transformer(vocab_size=V, seq_len=L, dim=32, depth=2, heads=4, **kw).eval()


def _task(cls, net=None, sampler=None, **kw):
    optimizer = functools.partial(torch.optim.AdamW, lr=1e-3)
    if cls is Autoregressive:
        return cls(net or _net(), sampler=sampler or Ancestral(), optimizer=optimizer, **kw).eval()
    return cls(net or _net(), LinearMasking(), sampler or Unmask(steps=4), optimizer, **kw).eval()


class AllMasked(MaskingSchedule):
    """m(t) = 1, w(t) = 1: every token masked, unweighted."""

    def mask_prob(self, t):
        return torch.ones_like(t)

    def weight(self, t):
        return torch.ones_like(t)


def test_training_mask_layout():
    m = vectorized_training_mask(4, 2).int()  # rows: noisy 0..3, clean 0..3; cols the same
    assert m.tolist() == [
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],  # noisy block 1: itself and clean block 0
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0],  # clean block 0: itself
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],  # clean block 1: clean blocks 0 and 1
        [0, 0, 0, 0, 1, 1, 1, 1],
    ]


def test_block_size_equal_to_the_context_is_the_mdlm_loss_on_the_same_batch():
    x = torch.randint(1, V, (6, L))
    bd3 = _task(BlockDiffusion, block_size=L)
    mdlm = _task(MaskedDiffusion, net=bd3.net)
    a = bd3.window_nll(x, torch.Generator().manual_seed(3), torch.float64)
    masked = mdlm.forward_terms(x, torch.Generator().manual_seed(3), torch.float64)[1]
    b = mdlm.window_nll(x, torch.Generator().manual_seed(3), torch.float64)
    assert masked.any() and torch.allclose(a, b, rtol=1e-5)


def test_block_size_one_is_the_autoregressive_nll_with_a_mask_query():
    """With every token masked and weight 1 (and for m(t) = t in expectation, as w m = 1), block
    size 1 scores each token given the clean ones before it: the AR factorisation."""
    net = _net()
    x = torch.randint(1, V, (3, L))
    bd3 = BlockDiffusion(net, AllMasked(), Unmask(steps=1), None, block_size=1).eval()
    got = bd3.window_nll(x, torch.Generator().manual_seed(0), torch.float64)
    want = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(L):
            seq = torch.cat([x[:, :i], torch.zeros_like(x[:, :1])], dim=1)  # x_<i, then [MASK] at i
            logits = net(seq, attn_mask=causal_mask(i + 1))[:, -1:]
            want += token_nll(logits, x[:, i : i + 1], mask_id=0, dtype=torch.float64)[:, 0]
    assert torch.allclose(got, want, rtol=1e-5)
    t = torch.rand(10000, dtype=torch.float64)
    assert torch.allclose(LinearMasking().weight(t) * LinearMasking().mask_prob(t), torch.ones_like(t))


def test_autoregressive_nll_is_the_exact_chain_rule_and_causal():
    task = _task(Autoregressive)
    x = torch.randint(1, V, (3, L))
    got = task.window_nll(x, dtype=torch.float64)
    want = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(L):  # p(x_i | x_<i): the net reads (start, x_0 .. x_{i-1})
            seq = torch.cat([torch.zeros_like(x[:, :1]), x[:, :i]], dim=1)
            logits = task.net(seq, attn_mask=causal_mask(i + 1))[:, -1:]
            want += token_nll(logits, x[:, i : i + 1], mask_id=0, dtype=torch.float64)[:, 0]
    assert torch.allclose(got, want, rtol=1e-5)
    y = x.clone()
    y[:, 9] = y[:, 9] % (V - 1) + 1
    with torch.no_grad():
        assert torch.equal(task.next_token_logits(x)[:, :10], task.next_token_logits(y)[:, :10])


@pytest.mark.parametrize("kw", [{}, {"top_k": 3}, {"top_p": 0.7}, {"temperature": 0.5}])
def test_ancestral_kv_cache_draws_the_same_tokens(kw):
    task = _task(Autoregressive)
    x = torch.zeros(4, L, dtype=torch.long)
    x[:, 5] = 7  # a given token mid-way is kept
    out = [
        Ancestral(kv_cache=c, **kw)(task.net, None, x, generator=torch.Generator().manual_seed(1))
        for c in (True, False)
    ]
    assert torch.equal(out[0], out[1]) and (out[0][:, 5] == 7).all() and (out[0] > 0).all()


def test_ancestral_top_k_one_is_greedy():
    task = _task(Autoregressive)
    out = Ancestral(top_k=1)(task.net, None, torch.zeros(2, L, dtype=torch.long), generator=torch.Generator())
    with torch.no_grad():
        logits = task.next_token_logits(out)
    logits[..., 0] = -float("inf")
    assert torch.equal(out, logits.argmax(-1))


@pytest.mark.parametrize("length", [L, 2 * L + 4])  # within the context, and sliding past it
def test_block_sampling_with_and_without_the_kv_cache_is_identical(length):
    net = _net()
    outs = []
    for cache in (True, False):
        task = _task(BlockDiffusion, net=net, sampler=Unmask(steps=3), block_size=4, kv_cache=cache)
        x = task.prior(3, task.sample_shape((length,)))
        x[:, :2] = 5  # a prompt
        outs.append(task.generate(x, generator=torch.Generator().manual_seed(2)))
        assert task.sampler.settings()["nfe"] == 3 * length // 4
    assert outs[0].shape == (3, length) and torch.equal(outs[0], outs[1])
    assert (outs[0] > 0).all() and (outs[0][:, :2] == 5).all()


def test_block_sampling_stops_at_end_of_text():
    net = _net()
    with torch.no_grad():
        net.head.bias[3] = 30.0  # token 3 everywhere: the first block ends every row
    task = _task(BlockDiffusion, net=net, sampler=Unmask(steps=2), block_size=4, eos_id=3)
    out = task.generate(task.prior(2, task.sample_shape((2 * L,))), generator=torch.Generator().manual_seed(0))
    assert (out == 3).all() and task.sampler.settings()["nfe"] == 2  # one block, two calls


def test_an_end_of_text_in_the_prompt_neither_ends_the_row_nor_is_overwritten():
    net = _net()
    with torch.no_grad():
        net.head.bias[7] = 30.0  # every generated token is 7
    task = _task(BlockDiffusion, net=net, sampler=Unmask(steps=2), block_size=4, eos_id=3)
    x = task.prior(2, (L,))
    x[:, :3] = torch.tensor([5, 3, 7])  # a prompt holding the end-of-text token
    out = task.generate(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :3], x[:, :3]) and (out[:, 3:] == 7).all() and task.sampler.blocks == L // 4


def test_each_task_refuses_a_sampler_of_another_kind():
    with pytest.raises(ValueError, match="choose sampler=unmask or remask"):
        _task(BlockDiffusion, sampler=Ancestral())
    with pytest.raises(ValueError, match="choose sampler=unmask or remask"):
        _task(MaskedDiffusion, sampler=Ancestral())
    with pytest.raises(ValueError, match="set model.net.time_conditioning=false"):
        _task(Autoregressive, net=_net(time_conditioning=True))


def test_bad_block_size_and_length_are_named():
    with pytest.raises(ValueError, match=r"task.block_size=5 must divide the context, data.seq_len=16"):
        _task(BlockDiffusion, block_size=5)
    with pytest.raises(ValueError, match=r"length=18 must be a multiple of task.block_size=4"):
        _task(BlockDiffusion, block_size=4).sample_shape((18,))
    with pytest.raises(ValueError, match=r"length=18 exceeds this model's context, data.seq_len=16"):
        _task(Autoregressive).sample_shape((18,))
    with pytest.raises(ValueError, match="choose sampler=ancestral"):
        Autoregressive(_net(), sampler=Unmask(), optimizer=None)
    with pytest.raises(ValueError, match=r"sampler.top_p=0 must lie in \(0, 1\]"):
        Ancestral(top_p=0)


def test_bad_block_size_on_the_command_line_exits_2(tmp_path):
    proc = run(
        "train.py", *PATTERNS, "task=block_diffusion", "task.block_size=5", f"hydra.run.dir={tmp_path}", check=False
    )
    assert proc.returncode == 2 and "task.block_size=5 must divide the context, data.seq_len=32" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    "task", [["task=autoregressive", "sampler=ancestral"], ["task=block_diffusion", "task.block_size=8"]]
)
def test_resume_is_exact(tmp_path, task):
    common = [*PATTERNS, *task, "trainer.max_steps=6", "trainer.val_check_interval=3", "seed=5"]
    run("train.py", *common, f"hydra.run.dir={tmp_path / 'straight'}")
    run("train.py", *common, "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'half'}")
    run(
        "train.py",
        *common,
        f"ckpt_path={tmp_path / 'half' / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    a = ckpt(tmp_path / "straight" / "checkpoints" / "last.ckpt")["state_dict"]
    b = ckpt(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_sample_py_draws_from_each_task(tmp_path):
    for name, task in [("ar", ["task=autoregressive", "sampler=ancestral"]), ("bd3", ["task=block_diffusion"])]:
        run("train.py", *PATTERNS, *task, f"hydra.run.dir={tmp_path / name}")
        out = tmp_path / f"{name}_samples"
        extra = ["length=64"] if name == "bd3" else ["sampler.top_p=0.9"]
        run(
            "sample.py",
            f"ckpt_path={tmp_path / name / 'checkpoints' / 'last.ckpt'}",
            "num_samples=3",
            f"out_dir={out}",
            *extra,
        )
        lines = [s for s in (out / "samples.txt").read_text().splitlines() if s and not s.startswith("=====")]
        assert len(lines) == 3 and all(len(s) == (64 if name == "bd3" else 32) for s in lines), lines
    proc = run(
        "sample.py",
        f"ckpt_path={tmp_path / 'ar' / 'checkpoints' / 'last.ckpt'}",
        "length=64",
        f"out_dir={tmp_path / 'long'}",
        check=False,
    )
    assert proc.returncode == 2 and "length=64 exceeds this model's context, data.seq_len=32" in proc.stderr
    proc = run(
        "sample.py",
        f"ckpt_path={tmp_path / 'ar' / 'checkpoints' / 'last.ckpt'}",
        "sampler.top_p=1.5",
        f"out_dir={tmp_path / 'bad_top_p'}",
        check=False,
    )
    assert proc.returncode == 2 and "sampler.top_p=1.5 is out of range" in proc.stderr
    proc = run(
        "sample.py",
        f"ckpt_path={tmp_path / 'bd3' / 'checkpoints' / 'last.ckpt'}",
        "prompt=AB",
        "length=18",
        f"out_dir={tmp_path / 'bad_length'}",
        check=False,
    )
    assert proc.returncode == 2 and "length=18 must be a multiple of task.block_size=4" in proc.stderr
