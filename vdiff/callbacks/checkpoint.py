"""Lightning's ModelCheckpoint with three guarantees across stops and resumes.

- `last.ckpt` holds the final step: at the end of training the current step is saved when the last
  periodic save was earlier (max_steps not a multiple of the interval), and on a stop signal
  (SIGTERM, SIGINT, a sampler's `Stopped`) it is saved on the way out.
- `save_top_k` holds across resumes: files in `dirpath` named by this callback's `filename` pattern
  that its state does not list (its state in last.ckpt may predate them, or the run dir was moved)
  are read back once, ranked with the rest, and the surplus deleted.
- The last file keeps its name: a callback that lost its state overwrites `last.ckpt` rather than
  starting `last-v1.ckpt` beside a stale one.
With `save_last: link` (configs/callbacks/default.yaml) Lightning makes `last.ckpt` a relative symlink to
the step file just saved (the final-step and stop-signal saves write that step file first, then link),
so a run keeps two full checkpoints (best, newest step), not three.
"""

import glob
import os
import re

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vdiff.utils import stop

STOPS = (SIGTERMException, stop.Stopped)


def _pattern(filename: str) -> str:
    """The glob matching every file a `filename` template can produce (its `{...}` fields as `*`)."""
    return re.sub(r"\{[^}]*\}", "*", filename) + "*" + ModelCheckpoint.FILE_EXTENSION


class Checkpoint(ModelCheckpoint):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._adopted = False

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        if self.save_last and not self.last_model_path:
            self.last_model_path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:
        if not self._adopted:
            self._adopted = True
            self._adopt_untracked(trainer)
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _untracked(self, trainer) -> list[str]:
        if not self.dirpath or not self.filename:
            return []
        known = {os.path.realpath(p) for p in [*self.best_k_models, self.best_model_path, self.last_model_path] if p}
        # the file resumed from is kept, as Lightning keeps it; a `last` link resumed from is not its target
        resumed = os.path.abspath(trainer.ckpt_path) if trainer.ckpt_path else None
        files = glob.glob(os.path.join(glob.escape(str(self.dirpath)), _pattern(self.filename)))
        return sorted(
            p
            for p in files
            if os.path.realpath(p) not in known
            and os.path.abspath(p) != resumed
            and not os.path.basename(p).startswith(self.CHECKPOINT_NAME_LAST)
        )

    def _adopt_untracked(self, trainer) -> None:
        """Rank files this callback wrote before its state was saved (or in a moved run dir) with the
        tracked ones; keep the best `save_top_k`, delete the rest."""
        untracked = self._untracked(trainer)
        if self.save_top_k == -1 or not untracked:
            return
        if self.monitor is None:  # the newest file is the one kept: it is about to be replaced
            for path in untracked:
                self._remove_checkpoint(trainer, path)
            return
        for path in untracked:
            score = self._stored_score(path)
            if score is None:
                continue
            self.best_k_models[path] = score
        ranked = sorted(self.best_k_models.items(), key=lambda kv: float(kv[1]), reverse=self.mode == "max")
        for path, _ in ranked[self.save_top_k :]:
            del self.best_k_models[path]
            if os.path.isfile(path):
                self._remove_checkpoint(trainer, path)
        if self.best_k_models:
            self.best_model_path = ranked[0][0]
            self.best_model_score = ranked[0][1]
            self.kth_best_model_path, self.kth_value = ranked[min(self.save_top_k, len(ranked)) - 1]

    def _stored_score(self, path: str) -> torch.Tensor | None:
        """The monitored value a file of ours was saved with (its own callback state lists it)."""
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:
            return None
        for state in ckpt.get("callbacks", {}).values():
            if isinstance(state, dict) and state.get("monitor") == self.monitor:
                for p, score in (state.get("best_k_models") or {}).items():
                    if os.path.basename(p) == os.path.basename(path):
                        return torch.as_tensor(score).cpu()
        return None

    def _save_now(self, trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self.monitor is None:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def _may_save_now(self, trainer) -> bool:
        return bool(self.save_last) and trainer.global_step > 0 and not self._should_skip_saving_checkpoint(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._may_save_now(trainer):
            self._save_now(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, STOPS) and self._may_save_now(trainer):
            self._save_now(trainer)
