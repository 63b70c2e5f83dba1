"""Masked diffusion math, the bidirectional transformer and the unmasking sampler."""

import math

import pytest
import torch

from vdiff.data.patterns import PatternsDataModule
from vdiff.diffusion.masked import (
    CosineMasking,
    LinearMasking,
    LogLinearMasking,
    mask_tokens,
    nelbo_per_token,
    sample_times,
    token_nll,
)
from vdiff.metrics.text import BitsPerToken
from vdiff.models import Transformer
from vdiff.samplers import Unmask
from vdiff.tasks import MaskedDiffusion

SCHEDULES = [LinearMasking(), LogLinearMasking(1e-3), CosineMasking()]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_masking_rate_matches_the_schedule(schedule):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(1, 16, (4000, 64), generator=g)
    for t in (0.05, 0.3, 0.7, 1.0):
        tt = torch.full((len(x0),), t)
        xt, masked = mask_tokens(x0, tt, schedule, 0, g)
        p, n = float(schedule.mask_prob(torch.tensor(t, dtype=torch.float64))), masked.numel()
        assert abs(masked.double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-9
        assert ((xt == 0) == masked).all() and (xt[~masked] == x0[~masked]).all()


def test_elbo_weights_are_the_analytic_ones():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    torch.testing.assert_close(LinearMasking().weight(t), 1 / t)
    torch.testing.assert_close(LogLinearMasking(1e-3).weight(t), 1 / t)  # MDLM: sigma' / expm1(sigma) = 1 / t
    torch.testing.assert_close(LogLinearMasking(0.1).mask_prob(t), 0.9 * t)
    for s in SCHEDULES:  # w = m'(t) / m(t), against autograd
        tt = t.clone().requires_grad_(True)
        (dm,) = torch.autograd.grad(s.mask_prob(tt).sum(), tt)
        torch.testing.assert_close(s.weight(t), dm / s.mask_prob(t))


def test_antithetic_times_cover_the_interval_evenly():
    t = sample_times(1000, 1e-3, True, torch.Generator().manual_seed(0)).sort().values
    assert t.min() >= 1e-3 and t.max() <= 1
    gaps = t.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, (1 - 1e-3) / 1000), atol=1e-5)


def test_nelbo_is_the_weighted_masked_nll_over_all_tokens():
    nll = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    masked = torch.tensor([[True, False, True, False]])
    assert nelbo_per_token(nll, masked, torch.tensor([0.5]), LinearMasking()).item() == pytest.approx((1 + 3) / 0.5 / 4)


class UniformNet(torch.nn.Module):
    """Equal logits for every token: p(x0 | x_t) uniform over the real symbols."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size, self.dummy = vocab_size, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t=None, cond=None):
        return torch.zeros(*x.shape, self.vocab_size) + self.dummy


def test_bits_per_char_of_a_uniform_predictor_is_log2_of_the_symbol_count():
    dm = PatternsDataModule(vocab_size=16, seq_len=32, num_val=1024, eval_batch_size=256)
    dm.prepare_data()
    task = MaskedDiffusion(UniformNet(16), LinearMasking(), Unmask(4), optimizer=None, t_min=1e-4)
    bits = BitsPerToken(t_samples=16, batch_size=256)(None, dm, torch.device("cpu"), task=task)["bits_per_token"]
    assert bits == pytest.approx(math.log2(15), rel=0.01)  # 15 symbols; [MASK] gets no mass


def test_token_nll_gives_mask_no_mass():
    logits = torch.zeros(1, 1, 4)
    logits[..., 0] = 100.0  # the [MASK] logit is ignored
    assert token_nll(logits, torch.tensor([[2]]), 0).item() == pytest.approx(math.log(3))


def test_transformer_is_bidirectional_and_time_conditioning_is_optional():
    torch.manual_seed(0)
    x = torch.randint(1, 16, (2, 12))
    y = x.clone()
    y[:, 8] = (y[:, 8] % 15) + 1
    for tc in (False, True):
        net = Transformer(16, 12, dim=32, depth=2, heads=4, time_conditioning=tc).eval()
        diff = (net(x, torch.rand(2)) - net(y, torch.rand(2))).abs().amax(-1)
        assert (diff[:, :8] > 1e-6).all()  # earlier positions see a later token
    net = Transformer(16, 12, dim=32, depth=2, heads=4, time_conditioning=False).eval()
    torch.testing.assert_close(net(x, torch.zeros(2)), net(x, torch.ones(2)))
    net = Transformer(16, 12, dim=32, depth=2, heads=4, time_conditioning=True).eval()
    torch.nn.init.normal_(net.blocks[0].modulation[1].weight)  # zero-initialised: break the identity start
    assert not torch.allclose(net(x, torch.zeros(2)), net(x, torch.ones(2)))


def test_default_text_transformer_has_about_ten_million_parameters():
    n = sum(p.numel() for p in Transformer(66, 256).parameters())
    assert 10e6 < n < 11.5e6


class FixedNet(torch.nn.Module):
    """The same logits everywhere, and a record of how many [MASK] tokens each call saw."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.seen = logits, []

    def forward(self, x, t=None, cond=None):
        self.seen.append((x == 0).sum(-1))
        return self.logits.expand(*x.shape, -1)


@pytest.mark.parametrize("order", ["random", "confidence"])
def test_sampler_keeps_given_tokens_and_leaves_no_mask(order):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 8, (16, 40), generator=g)
    x[torch.rand(x.shape, generator=g) < 0.6] = 0
    net = Transformer(8, 40, dim=32, depth=1, heads=4).eval()
    out = Unmask(steps=10, order=order)(net, LinearMasking(), x, generator=g)
    given = x != 0
    assert (out[given] == x[given]).all() and (out != 0).all() and ((out >= 1) & (out < 8)).all()


def test_sampler_reveals_the_scheduled_count_per_step():
    net = FixedNet(torch.zeros(5))
    x = torch.zeros(3, 100, dtype=torch.long)
    Unmask(steps=4)(net, LinearMasking(), x, generator=torch.Generator().manual_seed(0))
    assert [int(s[0]) for s in net.seen] == [100, 75, 50, 25]  # round(M * m(s) / m(t)) with m = t


def test_sampler_draws_from_the_model_distribution_with_temperature():
    p = torch.tensor([0.0, 0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    net = FixedNet(p.clamp_min(1e-30).log().float())
    for temperature in (1.0, 0.5):
        out = Unmask(steps=8, temperature=temperature)(
            net, LinearMasking(), torch.zeros(400, 100, dtype=torch.long), generator=torch.Generator().manual_seed(1)
        )
        q = p ** (1 / temperature)
        q = q / q.sum()
        freq = torch.bincount(out.flatten(), minlength=5).double() / out.numel()
        assert (freq - q).abs().max() < 4 * math.sqrt(0.25 / out.numel()) + 1e-3


def test_bad_sampler_and_task_options_are_named():
    with pytest.raises(ValueError, match="sampler.order"):
        Unmask(order="left_to_right")
    with pytest.raises(ValueError, match="task.loss"):
        MaskedDiffusion(UniformNet(4), LinearMasking(), Unmask(), optimizer=None, loss="mse")
    with pytest.raises(ValueError, match="sampler.mask_id=0 differs from task.mask_id=1"):
        MaskedDiffusion(UniformNet(4), LinearMasking(), Unmask(), optimizer=None, mask_id=1)


class PatternsOracle(torch.nn.Module):
    """The exact p(x0_l | visible tokens) of the patterns law, by enumerating every (period, pattern)."""

    def __init__(self, symbols: int, seq_len: int, periods=(2, 3, 4)):
        super().__init__()
        import itertools

        seqs, prior = [], []
        for p in periods:
            for pat in itertools.product(range(1, symbols + 1), repeat=p):
                seqs.append([pat[i % p] for i in range(seq_len)])
                prior.append(1 / len(periods) / symbols**p)
        self.seqs, self.log_prior = torch.tensor(seqs), torch.tensor(prior, dtype=torch.float64).log()
        self.vocab_size = symbols + 1

    def forward(self, x, t=None, cond=None):
        visible = x != 0
        consistent = ((self.seqs[None] == x[:, None]) | ~visible[:, None]).all(-1)  # (B, candidates)
        w = (self.log_prior + torch.where(consistent, 0.0, -torch.inf)).softmax(-1)
        onehot = torch.nn.functional.one_hot(self.seqs, self.vocab_size).double()  # (candidates, L, V)
        return torch.einsum("bc,clv->blv", w, onehot).clamp_min(1e-300).log().float()


def test_random_order_unmasking_with_the_exact_denoiser_samples_the_data_law():
    """With the true posterior and one token per step, the reverse process is exact ancestral
    sampling: every sequence is valid and minimal periods come in the data's proportions."""
    from vdiff.metrics.patterns import periodic

    out = Unmask(steps=16)(
        PatternsOracle(5, 16),
        LinearMasking(),
        torch.zeros(400, 16, dtype=torch.long),
        generator=torch.Generator().manual_seed(0),
    )
    assert periodic(out).all()
    minimal = torch.tensor([min(p for p in (1, 2, 3, 4) if (s[p:] == s[:-p]).all()) for s in out])
    # p = 4 is drawn with probability 1/3 and its pattern has minimal period 4 unless it is ABAB (25 of 625)
    assert abs((minimal == 4).double().mean().item() - (1 / 3) * (1 - 25 / 625)) < 0.07


def test_rotary_attention_scores_depend_only_on_the_offset():
    from vdiff.models.transformer import Transformer, apply_rotary, rotary_tables

    torch.manual_seed(0)
    cos, sin = rotary_tables(32, 16)
    q, k = torch.randn(1, 1, 1, 16).expand(1, 1, 32, 16), torch.randn(1, 1, 1, 16).expand(1, 1, 32, 16)
    scores = apply_rotary(q, cos, sin) @ apply_rotary(k, cos, sin).transpose(-1, -2)  # (1, 1, 32, 32): positions 0..31
    assert torch.allclose(scores[0, 0, 3, 5], scores[0, 0, 20, 22], atol=1e-5)
    assert not torch.allclose(scores[0, 0, 3, 5], scores[0, 0, 3, 9], atol=1e-3)
    net = Transformer(vocab_size=16, seq_len=32, dim=32, depth=1, heads=2, positions="rotary")
    assert not net.pos_emb.requires_grad
    assert net(torch.randint(1, 16, (2, 32))).shape == (2, 32, 16)


def test_relative_bias_is_one_logit_per_head_and_offset_and_starts_as_plain_attention():
    from vdiff.models.transformer import RelativeBias, Transformer

    rel = RelativeBias(heads=2, seq_len=8)
    with torch.no_grad():
        rel.table.copy_(torch.arange(30.0).view(2, 15))
    pos = torch.arange(8)
    bias = rel(pos, pos)  # (H, L, L): bias[h, i, j] = table[h, j - i + L - 1]
    assert bias.shape == (2, 8, 8) and bias[1, 2, 5] == rel.table[1, 3 + 7] and bias[0, 6, 1] == rel.table[0, -5 + 7]
    assert torch.equal(bias.diagonal(offset=3, dim1=1, dim2=2), rel.table[:, 10:11].expand(2, 5))  # Toeplitz

    torch.manual_seed(0)
    with_bias = Transformer(vocab_size=16, seq_len=8, dim=32, depth=2, heads=2, relative_bias=True).eval()
    plain = Transformer(vocab_size=16, seq_len=8, dim=32, depth=2, heads=2).eval()
    missing, unexpected = plain.load_state_dict(with_bias.state_dict(), strict=False)
    assert not missing and unexpected == ["blocks.0.relative.table", "blocks.1.relative.table"]
    x = torch.randint(0, 16, (3, 8))
    assert torch.allclose(with_bias(x), plain(x), atol=1e-6)  # zero-initialised: the same net until trained
    with torch.no_grad():
        with_bias.blocks[0].relative.table[:, 7 + 3] = 5.0  # attend 3 places ahead
    assert not torch.allclose(with_bias(x), plain(x), atol=1e-3)
