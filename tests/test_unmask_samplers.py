"""Unmask's nucleus sampling and logit cache, and ReMDM's remasking sampler (Remask)."""

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vdiff.diffusion.masked import CosineMasking, LinearMasking, clean_log_probs
from vdiff.models import Transformer
from vdiff.samplers import Remask, Unmask
from vdiff.samplers.unmask import nucleus

CONFIGS = Path(__file__).parents[1] / "configs" / "sampler"


class FixedNet(torch.nn.Module):
    """The same logits at every position and time."""

    time_conditioning = False

    def __init__(self, p: list[float]):
        super().__init__()
        self.logits = torch.tensor(p, dtype=torch.float64).clamp_min(1e-30).log().float()

    def forward(self, x, t=None, cond=None):
        return self.logits.expand(*x.shape, -1)


class CountingNet(torch.nn.Module):
    """A small transformer that ignores t, recording the [MASK] count of every call's input."""

    def __init__(self, vocab_size: int = 9, seq_len: int = 8, time_conditioning: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.net = Transformer(vocab_size, seq_len, dim=32, depth=1, heads=4, time_conditioning=time_conditioning)
        self.time_conditioning, self.seen = time_conditioning, []

    def forward(self, x, t=None, cond=None):
        self.seen.append((x == 0).sum(-1).tolist())
        return self.net(x, t)


def prompt_batch(batch: int = 6, length: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 9, (batch, length), generator=g)
    x[torch.rand(x.shape, generator=g) < 0.7] = 0
    return x


def frozen_unmask(net, schedule, x, steps, order, temperature, generator):
    """Unmask's loop before top_p and cache, kept verbatim as the reference."""
    x = x.clone()
    times = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    m = schedule.mask_prob(times)
    for k in range(steps):
        masked = x == 0
        count = masked.sum(-1)
        keep = torch.round(count.double() * (m[k + 1] / m[k])).long() if k + 1 < steps else torch.zeros_like(count)
        t = torch.full((x.shape[0],), float(times[k]))
        logp = clean_log_probs(net(x, t, None).double() / temperature, 0, torch.float64)
        u = torch.rand(logp.shape, generator=generator, dtype=torch.float64)
        tokens = (logp - torch.log(-torch.log(u.clamp_min(1e-300)))).argmax(-1)
        prob = logp.gather(-1, tokens[..., None])[..., 0].exp()
        score = torch.rand(x.shape, generator=generator, dtype=torch.float64) if order == "random" else prob
        score = score.masked_fill(~masked, -1.0)
        rank = score.argsort(-1, descending=True).argsort(-1)
        x = torch.where(masked & (rank < (count - keep)[:, None]), tokens, x)
    return x


@pytest.mark.parametrize("order", ["random", "confidence"])
@pytest.mark.parametrize("schedule", [LinearMasking(), CosineMasking()], ids=lambda s: type(s).__name__)
def test_plain_unmask_is_the_frozen_algorithm_bit_for_bit(order, schedule):
    net, x = CountingNet().eval(), prompt_batch()
    for steps, temperature in ((1, 1.0), (5, 0.7), (20, 1.3)):
        new = Unmask(steps=steps, order=order, temperature=temperature)(
            net, schedule, x, generator=torch.Generator().manual_seed(3)
        )
        old = frozen_unmask(net, schedule, x, steps, order, temperature, torch.Generator().manual_seed(3))
        assert torch.equal(new, old)


def test_top_p_draws_only_from_the_nucleus():
    p = [0.0, 0.4, 0.3, 0.2, 0.1]
    torch.testing.assert_close(
        nucleus(torch.tensor(p, dtype=torch.float64).log(), 0.5).exp(),
        torch.tensor([0.0, 4 / 7, 3 / 7, 0.0, 0.0], dtype=torch.float64),
    )
    out = Unmask(steps=4, top_p=0.5)(
        FixedNet(p), LinearMasking(), torch.zeros(200, 50, dtype=torch.long), generator=torch.Generator().manual_seed(0)
    )
    freq = torch.bincount(out.flatten(), minlength=5).double() / out.numel()
    assert freq[0] == 0 and freq[3] == 0 and freq[4] == 0
    assert abs(freq[1].item() - 4 / 7) < 4 * math.sqrt(0.25 / out.numel())
    out = Unmask(steps=4, top_p=0.75)(
        FixedNet(p), LinearMasking(), torch.zeros(200, 50, dtype=torch.long), generator=torch.Generator().manual_seed(0)
    )
    assert set(out.unique().tolist()) == {1, 2, 3}


@pytest.mark.parametrize("top_p", [0.0, -0.1, 1.5])
def test_top_p_out_of_range_is_named(top_p):
    with pytest.raises(ValueError, match=r"sampler.top_p=.* must lie in \(0, 1\]"):
        Unmask(top_p=top_p)
    with pytest.raises(ValueError, match="sampler.top_p"):
        Remask(top_p=top_p)


@pytest.mark.parametrize("sampler", [Unmask, Remask], ids=lambda s: s.__name__)
@pytest.mark.parametrize("order", ["random", "confidence"])
def test_cache_gives_the_same_tokens_with_fewer_calls(sampler, order):
    x, outs, calls = prompt_batch(batch=2), [], []
    for cache in (False, True):
        net, s = CountingNet().eval(), sampler(steps=64, order=order, cache=cache)
        outs.append(s(net, LinearMasking(), x, generator=torch.Generator().manual_seed(1)))
        calls.append(len(net.seen))
        assert s.last_nfe == len(net.seen) and s.settings()["nfe"] == len(net.seen)
    assert torch.equal(outs[0], outs[1]) and (outs[1] != 0).all()
    assert calls[0] == 64 and calls[1] < 32
    assert s.settings()["calls_saved"] == 64 - calls[1] and "calls_saved" not in sampler(steps=64).settings()


def test_cache_refuses_a_net_that_is_not_declared_time_free():
    x = torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="sampler.cache=true .* Transformer does not"):
        Unmask(cache=True)(Transformer(9, 8, dim=32, depth=1, heads=4, time_conditioning=True), LinearMasking(), x)
    with pytest.raises(ValueError, match="sampler.cache=true"):
        Unmask(cache=True)(lambda x, t, cond: torch.zeros(*x.shape, 9), LinearMasking(), x)

    class Compiled:  # torch.compile's wrapper holds the module as `_orig_mod`
        def __init__(self, net):
            self._orig_mod = net

        def __call__(self, x, t, cond):
            return self._orig_mod(x, t, cond)

    out = Unmask(steps=4, cache=True)(Compiled(FixedNet([0.0, 1.0])), LinearMasking(), x)
    assert (out == 1).all()
    with pytest.raises(ValueError, match="CountingNet does not"):
        Unmask(cache=True)(Compiled(CountingNet(time_conditioning=True)), LinearMasking(), x)


def mask_counts(trace: list) -> list:
    return [(x == 0).sum(-1).tolist() for x in trace]


@pytest.mark.parametrize("order", ["random", "confidence"])
@pytest.mark.parametrize("remask", ["cap", "rescale"])
def test_remask_follows_the_unmask_count_keeps_the_prompt_and_revisits_tokens(order, remask):
    x, unmasked, remasked = prompt_batch(batch=8, length=8), [], []
    Unmask(steps=8, order=order)(
        CountingNet(), LinearMasking(), x, generator=torch.Generator().manual_seed(0), trace=unmasked
    )
    out = Remask(steps=8, order=order, eta=1.0, remask=remask)(
        CountingNet(), LinearMasking(), x, generator=torch.Generator().manual_seed(0), trace=remasked
    )
    assert mask_counts(remasked) == mask_counts(unmasked)
    given = x != 0
    assert all((step[given] == x[given]).all() for step in remasked) and (out != 0).all()
    trace = torch.stack([x, *remasked])  # (steps + 1, B, L)
    revisited = ((trace[:-1] != 0) & (trace[1:] == 0)).any(0)  # decoded, then [MASK] again
    assert revisited.any() and not (revisited & given).any()


def test_remasking_with_the_largest_sigma_changes_revealed_tokens():
    x, trace = torch.zeros(16, 8, dtype=torch.long), []
    Remask(steps=16, eta=1.0, remask="rescale")(
        CountingNet(), LinearMasking(), x, generator=torch.Generator().manual_seed(0), trace=trace
    )
    trace = torch.stack(trace)
    first = trace.gather(0, (trace != 0).long().argmax(0, keepdim=True))[0]  # each position's first token
    assert (first != trace[-1]).any()


def test_sigma_is_the_formula_and_never_exceeds_sigma_max():
    grid = torch.linspace(0, 1, 21, dtype=torch.float64)
    for m_t in grid:
        for m_s in grid[grid <= m_t]:
            sigma_max = min(1.0, m_s.item() / (1 - m_t.item())) if m_t < 1 else (1.0 if m_s > 0 else 0.0)
            assert Remask().sigma_max(m_t, m_s).item() == pytest.approx(sigma_max)
            for eta in (0.0, 0.02, 0.5, 1.0):
                cap = Remask(eta=eta, remask="cap").sigma(m_t, m_s).item()
                rescale = Remask(eta=eta, remask="rescale").sigma(m_t, m_s).item()
                assert cap == pytest.approx(min(eta, sigma_max)) and rescale == pytest.approx(eta * sigma_max)
                assert cap <= sigma_max + 1e-12 and rescale <= sigma_max + 1e-12


def test_confidence_remasks_the_least_sure_decoded_token():
    x = torch.tensor([[5, 6, 7, 0, 0, 9]])
    conf = torch.tensor([[0.9, 0.2, 0.5, 0.0, 0.0, math.inf]], dtype=torch.float64)
    tokens, prob = torch.full_like(x, 3), torch.full(x.shape, 0.6, dtype=torch.float64)
    half, quarter = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)
    s = Remask(order="confidence", eta=1.0, remask="rescale")  # keep 1, sigma 0.5 of 3 decoded: r = 1
    new, new_conf = s.step(x, conf=conf, tokens=tokens, prob=prob, m_t=half, m_s=quarter)
    assert new.tolist() == [[5, 0, 7, 3, 3, 9]] and new_conf[0, 3:5].tolist() == [0.6, 0.6]


def test_bad_remask_options_settings_and_configs():
    with pytest.raises(ValueError, match="sampler.remask='both' is not one of cap, rescale"):
        Remask(remask="both")
    with pytest.raises(ValueError, match=r"sampler.eta=1.5 must lie in \[0, 1\]"):
        Remask(eta=1.5)
    short = Remask(steps=256, order="confidence", eta=0.3, remask="rescale", top_p=0.9).with_max_steps(4)
    assert (type(short), short.steps, short.order, short.eta, short.remask, short.top_p) == (
        Remask,
        4,
        "confidence",
        0.3,
        "rescale",
        0.9,
    )
    assert short.settings() == {
        "steps": 4,
        "eta": 0.3,
        "guidance_scale": None,
        "nfe": 4,
        "top_p": 0.9,
        "remask": "rescale",
    }
    assert Unmask(steps=8).settings() == {"steps": 8, "eta": None, "guidance_scale": None, "nfe": 8, "top_p": 1.0}
    for name, cls in (("unmask", Unmask), ("remask", Remask)):
        sampler = instantiate(OmegaConf.load(CONFIGS / f"{name}.yaml"))
        assert type(sampler) is cls and sampler.top_p == 1.0 and not sampler.cache and sampler.mask_id == 0
    assert (sampler.eta, sampler.remask) == (0.02, "cap")
