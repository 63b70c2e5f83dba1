"""EMA of the denoiser: the warm-up decay formula, updates, swapping, state round trip."""

import torch
from torch import nn

from vdiff.callbacks import EMA


class _Task(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)
        self.other = nn.Linear(2, 2)  # not the denoiser: must not be averaged


class _Trainer:
    global_step = 0


def test_ema_update_formula_and_scope():
    task, trainer = _Task(), _Trainer()
    ema = EMA(decay=0.9, warmup=True)
    ema.on_fit_start(trainer, task)
    assert set(ema.shadow) == {"weight", "bias"}
    w0 = task.net.weight.detach().clone()
    with torch.no_grad():
        task.net.weight.add_(1.0)
    trainer.global_step = 1
    ema.on_train_batch_end(trainer, task, None, None, 0)
    d = min(0.9, 1 / 10)  # warm-up decay after 0 updates
    torch.testing.assert_close(ema.shadow["weight"], d * w0 + (1 - d) * (w0 + 1))
    ema.on_train_batch_end(trainer, task, None, None, 0)  # same global step: no second update
    assert ema.num_updates == 1


def test_ema_swap_and_state_roundtrip():
    task, trainer = _Task(), _Trainer()
    ema = EMA(decay=0.5, warmup=False)
    ema.on_fit_start(trainer, task)
    with torch.no_grad():
        task.net.weight.fill_(2.0)
    trainer.global_step = 1
    ema.on_train_batch_end(trainer, task, None, None, 0)
    trained = task.net.weight.detach().clone()
    averaged = ema.shadow["weight"].clone()
    ema.on_validation_start(trainer, task)
    torch.testing.assert_close(task.net.weight.detach(), averaged)
    ema.on_validation_end(trainer, task)
    torch.testing.assert_close(task.net.weight.detach(), trained)
    restored = EMA(decay=0.5, warmup=False)
    restored.load_state_dict(ema.state_dict())
    restored.on_fit_start(trainer, task)
    torch.testing.assert_close(restored.shadow["weight"], averaged)
    assert restored.num_updates == 1
