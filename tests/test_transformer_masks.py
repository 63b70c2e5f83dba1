"""The token transformer under attention masks, explicit positions and a KV cache: what the
autoregressive and block-diffusion tasks rely on."""

import pytest
import torch

from vdiff.models.transformer import KVCache, Transformer


def _net(**kw):
    torch.manual_seed(0)
    return Transformer(vocab_size=12, seq_len=16, dim=32, depth=2, heads=4, **kw).eval()


@pytest.mark.parametrize("kw", [{}, {"positions": "rotary"}, {"relative_bias": True}])
def test_causal_mask_a_future_token_never_changes_an_earlier_logit(kw):
    net = _net(**kw)
    if kw.get("relative_bias"):
        with torch.no_grad():
            for b in net.blocks:
                b.relative.table.normal_()
    x = torch.randint(1, 12, (2, 16))
    causal = torch.ones(16, 16, dtype=torch.bool).tril()
    y = x.clone()
    y[:, 9] = (y[:, 9] % 11) + 1  # change token 9
    a, b = net(x, attn_mask=causal), net(y, attn_mask=causal)
    assert torch.equal(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


@pytest.mark.parametrize("kw", [{}, {"positions": "rotary"}, {"relative_bias": True}])
def test_kv_cache_gives_the_logits_of_the_full_causal_pass(kw):
    net = _net(**kw)
    if kw.get("relative_bias"):
        with torch.no_grad():
            for b in net.blocks:
                b.relative.table.normal_()
    x = torch.randint(1, 12, (3, 16))
    full = net(x, attn_mask=torch.ones(16, 16, dtype=torch.bool).tril())
    cache = KVCache()
    prefill = net(x[:, :5], attn_mask=torch.ones(5, 5, dtype=torch.bool).tril(), cache=cache, commit=True)
    steps = [prefill] + [net(x[:, i : i + 1], cache=cache, commit=True) for i in range(5, 16)]
    assert cache.length == 16
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_default_call_is_the_bidirectional_pass_and_positions_can_repeat():
    net = _net()
    x = torch.randint(1, 12, (2, 8))
    assert torch.equal(net(x), net(x, positions=torch.arange(8), attn_mask=torch.ones(8, 8, dtype=torch.bool)))
    # two copies at the same positions, each attending only to itself: each half is the plain pass
    two = torch.cat([x, x.flip(0)], dim=1)
    own = torch.block_diag(torch.ones(8, 8), torch.ones(8, 8)).bool()
    out = net(two, positions=torch.arange(8).repeat(2), attn_mask=own)
    assert torch.allclose(out[:, :8], net(x), atol=1e-5) and torch.allclose(out[:, 8:], net(x.flip(0)), atol=1e-5)


def test_a_position_past_the_table_is_refused():
    net = _net()
    with pytest.raises(ValueError, match="seq_len=16"):
        net(torch.randint(1, 12, (1, 4)), positions=torch.arange(14, 18))
