"""The Conditioner: label dropout for classifier-free guidance, the null condition, label checks,
context tokens; and how the U-Nets and the Gaussian task use it."""

import functools

import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir

from vdiff.diffusion import LinearSchedule
from vdiff.models import UNetTiny, VideoUNetTiny
from vdiff.models.attention import FactorizedBlock
from vdiff.models.conditioning import Conditioner
from vdiff.run import check_conditioning
from vdiff.samplers import DDIM
from vdiff.tasks import GaussianDiffusion
from vdiff.utils.config import ConfigError, build


def test_dropout_rate_in_training_and_none_in_eval():
    torch.manual_seed(0)
    cond = Conditioner(10, 8, drop_prob=0.3)
    labels = torch.randint(0, 10, (20000,))
    rate = cond(labels, batch_size=len(labels)).is_null.float().mean().item()
    assert rate == pytest.approx(0.3, abs=0.015)  # 4.7 standard deviations of a 20000-draw mean
    assert not cond.eval()(labels, batch_size=len(labels)).is_null.any()


def test_none_is_the_null_row_and_dropped_labels_get_it():
    torch.manual_seed(0)
    cond = Conditioner(4, 6, drop_prob=0.5, context="learned", context_dim=5)
    null = cond(None, batch_size=3)
    assert null.is_null.all() and null.vector.shape == (3, 6) and null.context.shape == (3, 1, 5)
    torch.testing.assert_close(null.vector, cond.embedding.weight[4].expand(3, 6))
    labels = torch.randint(0, 4, (200,))
    out = cond(labels, batch_size=200)
    torch.testing.assert_close(out.vector[out.is_null], cond.embedding.weight[4].expand(int(out.is_null.sum()), 6))
    torch.testing.assert_close(out.vector[~out.is_null], cond.embedding(labels[~out.is_null]))


def test_one_hot_block_context():
    cond = Conditioner(3, 4, context="one_hot_blocks", context_dim=6).eval()
    ctx = cond(torch.tensor([0, 2]), batch_size=2).context  # (2, 1, 6)
    assert ctx[:, 0].tolist() == [[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]]
    torch.testing.assert_close(cond(None, batch_size=2).context[:, 0], cond.null_token.expand(2, 6))


@pytest.mark.parametrize("labels", [[-1, 0], [0, 10]])
def test_labels_out_of_range_are_refused(labels):
    with pytest.raises(ValueError, match=r"labels must lie in 0..9"):
        Conditioner(10, 4)(torch.tensor(labels), batch_size=2)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="cond_drop_prob=1.0"):
        Conditioner(10, 4, drop_prob=1.0)
    with pytest.raises(ValueError, match="context='text'"):
        Conditioner(10, 4, context="text")


def test_networks_add_the_condition_vector_and_drop_labels_in_training():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 4, 8, 8)
    t = torch.full((64,), 3)
    labels = torch.randint(0, 4, (64,))
    block = functools.partial(FactorizedBlock, heads=2)
    net = VideoUNetTiny(block, channels=8, num_classes=4, cond_drop_prob=0.5)
    net.eval()
    conditional = net(x, t, labels)
    unconditional = net(x, t, None)
    assert not torch.allclose(conditional, unconditional)
    net.train()
    torch.manual_seed(1)
    trained = net(x, t, labels)
    dropped = (trained - unconditional).flatten(1).abs().amax(1) < 1e-5  # rows given the null condition
    kept = (trained - conditional).flatten(1).abs().amax(1) < 1e-5
    assert (dropped ^ kept).all() and 10 < dropped.sum() < 54
    with pytest.raises(ValueError, match="num_classes"):
        VideoUNetTiny(block, channels=8)(x, t, labels)


def test_the_task_checks_the_networks_label_dropout():
    def task(net, cond_drop_prob):
        return GaussianDiffusion(net, LinearSchedule(10), DDIM(5), optimizer=None, cond_drop_prob=cond_drop_prob)

    with pytest.raises(ValueError, match="task.cond_drop_prob=0.1 drops class labels .* no conditioner"):
        task(UNetTiny(), 0.1)
    with pytest.raises(ValueError, match=r"task.cond_drop_prob=0.1 differs from the network's label dropout \[0.0\]"):
        task(UNetTiny(num_classes=10), 0.1)
    assert task(UNetTiny(num_classes=10, cond_drop_prob=0.1), 0.1).net.cond.drop_prob == 0.1


def compose_train(overrides: list[str]):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides)


def test_task_cond_drop_prob_reaches_the_network_through_the_model_config():
    cfg = compose_train(["experiment=mnist_cfg", "model.net.channels=16", "model.net.channel_mult=[1,2]"])
    assert cfg.model.net.cond_drop_prob == cfg.task.cond_drop_prob == 0.1
    task = build(cfg.task, "task")
    assert task.net.cond.drop_prob == 0.1
    assert compose_train(["experiment=mnist_ddpm"]).model.net.cond_drop_prob == 0.0


def test_label_dropout_without_labels_fails_at_start_up_naming_the_key(tmp_path):
    cfg = compose_train(["experiment=mnist_ddpm", "task.cond_drop_prob=0.1"])
    with pytest.raises(ConfigError, match=r"^task.cond_drop_prob=0.1 drops class labels, but data \(vdiff.data"):
        check_conditioning(cfg, build(cfg.data, "data", root=str(tmp_path)))
    cfg = compose_train(["experiment=mnist_ddpm", "task.cond_drop_prob=0.1", "data.conditional=true"])
    check_conditioning(cfg, build(cfg.data, "data", root=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"^task.cond_drop_prob=0.1 drops class labels .* no conditioner"):
        build(cfg.task, "task")
