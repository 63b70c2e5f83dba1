"""Which periods partly revealed patterns still allow, and the trace of random-order unmasking."""

import torch
from test_masked import PatternsOracle, UniformNet

from vdiff.data.patterns import PatternsDataModule
from vdiff.diffusion.masked import LinearMasking
from vdiff.metrics import PatternTrace
from vdiff.metrics.patterns import allowed_periods
from vdiff.samplers import Unmask
from vdiff.tasks import MaskedDiffusion


def ids(text: str) -> torch.Tensor:
    """'AB_A' -> [[1, 2, 0, 1]] (0 = [MASK])."""
    return torch.tensor([[0 if c == "_" else ord(c) - 64 for c in text]])


def test_allowed_periods_compare_every_revealed_pair_of_a_residue_class():
    assert allowed_periods(ids("________")).tolist() == [[True, True, True]]
    assert allowed_periods(ids("A_B_____")).tolist() == [[False, True, True]]  # distance 2 differs: not 2
    assert allowed_periods(ids("A___B___")).tolist() == [[False, True, False]]  # distance 4 differs: not 2, not 4
    assert allowed_periods(ids("A_____B_")).tolist() == [[False, False, True]]  # distance 6: not 2, not 3
    assert allowed_periods(ids("A_____A_")).tolist() == [[True, True, True]]
    assert allowed_periods(ids("A__BA__C")).tolist() == [
        [False, False, False]
    ]  # 0~3 differ: not 3; 3~7 differ: not 2, 4


def task_with(net) -> MaskedDiffusion:
    return MaskedDiffusion(net=net, schedule=LinearMasking(), sampler=Unmask(), optimizer=None)


def test_the_exact_denoiser_never_loses_the_period():
    data = PatternsDataModule(vocab_size=6, seq_len=12)
    samples = torch.zeros(60, 12, dtype=torch.long)  # sample.py's draws: the trace takes as many by default
    out = PatternTrace(batch_size=30)(samples, data, "cpu", task=task_with(PatternsOracle(5, 12)))
    assert out["num_samples"] == 60 and out["steps"] == 12
    assert out["invalid_fraction"] == 0 and out["lost_at_revealed"] == {}


def test_a_denoiser_that_knows_nothing_loses_it_early_with_one_period_left():
    data = PatternsDataModule(vocab_size=6, seq_len=12)
    out = PatternTrace(num_samples=200, batch_size=100, early=6)(None, data, "cpu", task=task_with(UniformNet(6)))
    assert out["invalid_fraction"] > 0.95
    assert sum(out["lost_at_revealed"].values()) == out["num_invalid"]
    # uniform draws over 5 symbols conflict as soon as a residue class holds two tokens: by the 6th token, mostly
    assert out["lost_within_early"] > 0.8 * out["num_invalid"]
    assert min(out["lost_at_revealed"]) >= 2 and max(out["lost_at_revealed"]) <= 12
    assert 0 < out["one_period_left"] <= out["num_invalid"]
