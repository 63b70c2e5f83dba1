"""A diverged run stops, or skips its bad steps, and never writes a checkpoint holding NaN or inf.

Before each optimizer step the loss and/or the gradient norm (`watch`) are checked. With
`action: stop` a non-finite value ends the run with a `RunFault` naming the step (train.py prints it
as one sentence, exit status 3); the weights of that step are never updated. With `action: skip` the
step's gradients are dropped (the optimizer leaves the weights and its moments alone), the count is
logged as `train/skipped_steps`, and more than `max_consecutive_skips` bad steps in a row stop the run.
Every checkpoint is checked as it is written (weights, optimizer state, callback states such as the
EMA; not the scores of monitoring callbacks, which start at inf): one holding a
non-finite tensor is refused with a `RunFault` before the file is touched, so the last good file stays.
"""

import torch
from lightning.pytorch.callbacks import Callback

from vdiff.utils.config import RunFault

WATCHABLE = ("loss", "grad_norm")


def _float_tensors(obj, prefix: str = ""):
    """(key, tensor) for every floating-point tensor in nested dicts / lists."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point():
            yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _float_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _float_tensors(v, f"{prefix}.{i}")


def first_non_finite(obj) -> str | None:
    """The key of the first floating-point tensor in `obj` holding NaN or inf, or None."""
    items = list(_float_tensors(obj))
    if not items:
        return None
    flags = torch.stack([torch.isfinite(t).all().cpu() for _, t in items])
    if bool(flags.all()):
        return None
    return items[int((~flags).nonzero()[0])][0]


def last_checkpoint(trainer) -> str:
    """Where the run's last good checkpoint is, in words."""
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "last_model_path", "") and getattr(cb, "_last_global_step_saved", 0):
            return f"{cb.last_model_path} (step {cb._last_global_step_saved}) is kept"
    return "no checkpoint was written"


class NonFiniteGuard(Callback):
    def __init__(self, watch=("loss", "grad_norm"), action: str = "stop", max_consecutive_skips: int = 10):
        watch = [watch] if isinstance(watch, str) else list(watch)
        if not watch or any(w not in WATCHABLE for w in watch):
            raise ValueError(f"callbacks.nonfinite.watch={watch} must list one or more of {', '.join(WATCHABLE)}")
        if action not in ("stop", "skip"):
            raise ValueError(f"callbacks.nonfinite.action={action} must be stop or skip")
        self.watch = watch
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped = 0
        self._consecutive = 0
        self._loss = None

    @property
    def state_key(self) -> str:
        return "NonFiniteGuard"

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._loss = loss.detach()

    def _bad_values(self, pl_module) -> dict[str, torch.Tensor]:
        values = {}
        if "loss" in self.watch and self._loss is not None:
            values["train/loss"] = self._loss.float()
        if "grad_norm" in self.watch:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            if grads:
                values["the gradient norm"] = torch.nn.utils.get_total_norm(grads).float()
        return values

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        values = self._bad_values(pl_module)
        finite = bool(torch.stack([torch.isfinite(v) for v in values.values()]).all()) if values else True
        bad = trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if not bad:
            self._consecutive = 0
            return
        what = (
            ", ".join(f"{k} is {v.item():g}" for k, v in values.items() if not torch.isfinite(v))
            or "another rank's values are not finite"
        )
        step = trainer.global_step
        if self.action == "stop":
            raise RunFault(
                f"training diverged at step {step}: {what}; {last_checkpoint(trainer)} "
                f"(resume it with a lower learning rate, or set callbacks.nonfinite.action=skip to skip such steps)"
            )
        self.skipped += 1
        self._consecutive += 1
        if self._consecutive > self.max_consecutive_skips:
            raise RunFault(
                f"training diverged at step {step}: {what} for {self._consecutive} steps in a row "
                f"(callbacks.nonfinite.max_consecutive_skips={self.max_consecutive_skips}); {last_checkpoint(trainer)}"
            )
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._loss = None
        if self.action == "skip":
            pl_module.log("train/skipped_steps", float(self.skipped))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        scores = {cb.state_key for cb in trainer.callbacks if hasattr(cb, "monitor")}  # best scores start at inf
        callbacks = {k: v for k, v in (checkpoint.get("callbacks") or {}).items() if k not in scores}
        parts = {
            "state_dict": checkpoint.get("state_dict"),
            "callbacks": callbacks,
            "optimizer_states": checkpoint.get("optimizer_states"),
        }
        key = first_non_finite(parts)
        if key is not None:
            raise RunFault(
                f"refused to write a checkpoint at step {trainer.global_step}: {key} holds non-finite values; "
                f"{last_checkpoint(trainer)}"
            )

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = state.get("skipped", 0)
