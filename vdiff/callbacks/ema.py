"""Exponential moving average of the denoiser's weights (`pl_module.<attr>`), nothing else.

Written here rather than taken from Lightning's EMAWeightAveraging because that callback averages the
whole LightningModule, has no decay warm-up, and writes the average over the trained weights in the
checkpoint; here the average covers the denoiser only, uses the warm-up decay
min(decay, (1 + n) / (10 + n)) after n updates, and travels in the checkpoint beside the raw weights
(callback state), so resuming continues both and `sample.py` picks either.
Validation (val loss and sample grids) runs on the EMA weights: they are swapped in at
`on_validation_start` and back at `on_validation_end` (or `on_exception`, when a stop signal ends
validation), before any checkpoint is written.
"""

import torch
from lightning.pytorch.callbacks import Callback


class EMA(Callback):
    def __init__(
        self,
        decay: float = 0.9999,
        warmup: bool = True,
        update_every: int = 1,
        attr: str = "net",
        validate_with_ema: bool = True,
    ):
        if not 0 < decay < 1:
            raise ValueError(f"callbacks.ema.decay={decay} must lie in (0, 1)")
        self.decay = decay
        self.warmup = warmup
        self.update_every = update_every
        self.attr = attr
        self.validate_with_ema = validate_with_ema
        self.shadow: dict[str, torch.Tensor] | None = None
        self.num_updates = 0
        self._swapped = False
        self._last_step = -1

    @property
    def state_key(self) -> str:
        return "EMA"

    def _tracked(self, pl_module) -> dict[str, torch.Tensor]:
        net = getattr(pl_module, self.attr)
        return {k: v for k, v in net.state_dict(keep_vars=True).items() if v.dtype.is_floating_point}

    def on_fit_start(self, trainer, pl_module) -> None:
        tracked = self._tracked(pl_module)
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in tracked.items()}
        else:
            self.shadow = {k: self.shadow[k].to(v.device, v.dtype) for k, v in tracked.items()}

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.update_every or trainer.global_step == self._last_step:
            return
        self._last_step = trainer.global_step
        tracked = self._tracked(pl_module)
        keys = list(self.shadow)
        torch._foreach_lerp_(
            [self.shadow[k] for k in keys], [tracked[k].detach() for k in keys], 1 - self.current_decay()
        )
        self.num_updates += 1

    @torch.no_grad()
    def swap(self, pl_module) -> None:
        """Exchange the denoiser's weights with the EMA weights (call again to undo)."""
        for k, v in self._tracked(pl_module).items():
            tmp = v.detach().clone()
            v.data.copy_(self.shadow[k])
            self.shadow[k].copy_(tmp)
        self._swapped = not self._swapped

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.validate_with_ema and self.shadow is not None and not self._swapped:
            self.swap(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._swapped:
            self.swap(pl_module)

    def on_exception(self, trainer, pl_module, exception) -> None:
        # a stop inside validation: the trained weights go back before a checkpoint is written on the way out
        self.on_validation_end(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.shadow = state["shadow"]
        self.num_updates = state["num_updates"]
