"""DiT on video latents: patch layout, adaLN-Zero initialisation, conditioning modes, bad sizes."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import vdiff
from vdiff.models import DiT
from vdiff.models.dit import patchify, unpatchify
from vdiff.run import setup
from vdiff.utils.config import ConfigError

SIZE = (4, 8, 8)  # latent T, H, W


def tiny(**kwargs) -> DiT:
    args = {"in_channels": 4, "input_size": SIZE, "patch_size": (1, 2, 2), "hidden_size": 32, "depth": 2, "heads": 4}
    return DiT(**{**args, **kwargs})


def perturb(net: DiT) -> DiT:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def inputs(batch: int = 4):
    torch.manual_seed(0)
    return torch.randn(batch, 4, *SIZE), torch.randint(0, 1000, (batch,))


@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 2, 2), (4, 4, 4), (1, 1, 1)])
def test_patchify_unpatchify_identity_and_shapes(patch):
    x, t = inputs()
    grid = tuple(n // p for n, p in zip(SIZE, patch))
    tokens = patchify(x, patch)
    assert tokens.shape == (4, grid[0] * grid[1] * grid[2], 4 * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify(tokens, patch, grid), x)
    net = perturb(tiny(patch_size=patch, out_channels=3))
    assert net(x, t).shape == (4, 3, *SIZE)


def test_patch_is_one_token():
    x = torch.zeros(1, 4, *SIZE)
    x[0, :, 2:4, 2:4, 6:8] = 1.0  # exactly the patch at grid (1, 1, 3) of 2x2x2 patches
    tokens = patchify(x, (2, 2, 2))
    assert tokens[0].sum(-1).nonzero().flatten().tolist() == [1 * 16 + 1 * 4 + 3]


@pytest.mark.parametrize("conditioning", ["adaln", "cross_attn", "none"])
def test_adaln_zero_blocks_are_identity_and_output_is_zero_at_init(conditioning):
    net = tiny(conditioning=conditioning, num_classes=4).eval()
    x, t = inputs()
    cond = torch.tensor([0, 1, 2, 3])
    h = torch.randn(4, 32, 32)
    c = torch.randn(4, 32)
    context = net.conditioner(cond, batch_size=4).context if net.conditioner is not None else None
    for block in net.blocks:
        assert torch.equal(block(h, c, context), h)
    assert torch.equal(net(x, t, cond), torch.zeros_like(x))
    assert torch.equal(net(x, t), torch.zeros_like(x))


def test_adaln_output_depends_on_label_and_null_condition_works():
    net = perturb(tiny(conditioning="adaln", num_classes=4))
    x, t = inputs()
    out = net(x, t, torch.tensor([0, 0, 0, 0]))
    assert not torch.allclose(out, net(x, t, torch.tensor([1, 1, 1, 1])))
    null = net(x, t, None)
    assert null.shape == x.shape and torch.isfinite(null).all()
    assert not torch.allclose(null, out)


def test_cross_attn_output_depends_on_context():
    net = perturb(tiny(conditioning="cross_attn", num_classes=4))
    x, t = inputs()
    outs = [net(x, t, torch.full((4,), k)) for k in range(4)]
    for k in range(1, 4):
        assert not torch.allclose(outs[0], outs[k])
    assert not torch.allclose(outs[0], net(x, t, None))
    context = net.conditioner(torch.tensor([0, 1]), batch_size=2).context
    assert context.shape == (2, 1, 64)


def test_none_ignores_cond():
    net = perturb(tiny(conditioning="none", num_classes=4))
    assert net.conditioner is None
    x, t = inputs()
    out = net(x, t)
    assert torch.equal(out, net(x, t, torch.tensor([0, 1, 2, 3])))
    assert torch.equal(out, net(x, t, torch.tensor([3, 3, 3, 3])))


def test_sinusoidal_positions_and_gradients():
    net = perturb(tiny(positions="sinusoidal", num_classes=4)).train()
    assert "pos" not in dict(net.named_parameters())
    x, t = inputs()
    net(x, t, torch.tensor([0, 1, 2, 3])).square().mean().backward()
    assert net.embed.weight.grad.abs().sum() > 0


def test_cond_drop_prob_reaches_the_conditioner():
    net = tiny(num_classes=4, cond_drop_prob=0.5)
    assert net.conditioner.drop_prob == 0.5


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"input_size": (4, 8, 6), "patch_size": (1, 4, 4)}, "input_size=[4, 8, 6]"),
        ({"patch_size": (3, 2, 2)}, "patch_size=[3, 2, 2]"),
        ({"conditioning": "film"}, "conditioning='film'"),
        ({"positions": "rope"}, "positions='rope'"),
        ({"heads": 5}, "heads=5"),
        ({"cond_drop_prob": 0.1}, "num_classes is null"),
    ],
)
def test_bad_config_is_one_sentence_naming_the_parameter(kwargs, key):
    """The network speaks of its own parameters; the start-up check adds the config key (below)."""
    with pytest.raises(ValueError) as error:
        tiny(**kwargs)
    message = str(error.value)
    assert key in message and "model.net" not in message
    assert message.count(". ") == 0 and "\n" not in message


def startup_error(tmp_path, *overrides) -> str:
    """The one sentence vdiff.run.setup (train.py's start-up) refuses a composed config with."""
    root = Path(vdiff.__file__).parents[1]
    with initialize_config_dir(str(root / "configs"), version_base="1.3"):
        cfg = compose("train", [*overrides, f"paths.root_dir={root}", f"paths.output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError) as error:
        setup(cfg)
    return str(error.value)


def test_the_start_up_error_names_the_key_of_a_bad_network_value(tmp_path):
    assert startup_error(tmp_path, "experiment=latent_dit", "model.net.heads=5") == (
        "model.net: hidden_size=128 is not divisible by heads=5"
    )


def test_bad_inputs():
    net = tiny(num_classes=4)
    x, t = inputs()
    with pytest.raises(ValueError, match=r"do not match input_size=\[4, 8, 8\]"):
        net(torch.randn(2, 4, 4, 8, 4), t[:2])
    with pytest.raises(ValueError, match="labels must lie in 0..3"):
        net(x, t, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="built without num_classes"):
        tiny()(x, t, torch.tensor([0, 1, 2, 3]))


def test_configs_compose_and_build():
    config_dir = str(Path(vdiff.__file__).parents[1] / "configs" / "model")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        gpu = compose(config_name="dit")
        cpu = compose(config_name="dit_tiny")
    assert gpu.net.hidden_size == 384 and gpu.net.depth == 8 and gpu.net.cond_drop_prob == 0.0
    net = instantiate(cpu.net)
    assert isinstance(net, DiT) and net.grid == (8, 4, 4)
    x = torch.randn(1, 4, 8, 8, 8)
    assert net(x, torch.tensor([10])).shape == x.shape
