"""Synthetic periodic sequences: a small, checkable task for masked diffusion language models.

Batch: {"x": (B, L) long}. Each sequence tiles a random pattern of length p, uniform in
[min_period, max_period], whose tokens are uniform over the symbols 1..V-1 ("A", "B", ...), cut to
L = seq_len. Id 0 is [MASK]. Training batches are drawn on the fly (batch k a pure function of
(seed, k, rank)); val/test are fixed sets drawn from their own seeds. Samples are scored in
vdiff/metrics/patterns.py (`periodic`, PatternValidity, PatternTrace).
"""

import torch

from vdiff.data.tokens import TokenDataModule, batch_seed

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def tiled_patterns(
    n: int, vocab_size: int, seq_len: int, min_period: int, max_period: int, g: torch.Generator
) -> torch.Tensor:
    """(n, seq_len) long: random patterns (periods uniform in [min_period, max_period]) tiled."""
    period = torch.randint(min_period, max_period + 1, (n, 1), generator=g)
    pattern = torch.randint(1, vocab_size, (n, max_period), generator=g)
    return pattern.gather(1, torch.arange(seq_len) % period)


class PatternsDataModule(TokenDataModule):
    resume_hint = "data.vocab_size"

    def __init__(
        self,
        vocab_size: int = 16,
        seq_len: int = 32,
        min_period: int = 2,
        max_period: int = 4,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_val: int = 2048,
        num_test: int = 2048,
        mask_char: str = "_",
        seed: int = 0,
    ):
        super().__init__(seq_len, batch_size, eval_batch_size=eval_batch_size, mask_char=mask_char, seed=seed)
        if not 3 <= vocab_size <= len(LETTERS) + 1:
            raise ValueError(
                f"data.vocab_size={vocab_size} must be in 3..{len(LETTERS) + 1} (the [MASK] id plus 2..26 letters)"
            )
        if not 1 <= min_period <= max_period:
            raise ValueError(
                f"data.min_period={min_period} and data.max_period={max_period} need 1 <= min_period <= max_period"
            )
        if mask_char in LETTERS[: vocab_size - 1]:
            raise ValueError(
                f"data.mask_char={mask_char!r} is one of the pattern letters; choose another mask character"
            )
        self.min_period = min_period
        self.max_period = max_period
        self.num_val = num_val
        self.num_test = num_test
        self.vocab = LETTERS[: vocab_size - 1]  # no file: known from the config
        self.source = f"data.vocab_size={vocab_size}"

    def _build_vocab(self) -> None:
        pass

    def _draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        return tiled_patterns(
            n,
            vocab_size=self.vocab_size,
            seq_len=self.seq_len,
            min_period=self.min_period,
            max_period=self.max_period,
            g=g,
        )

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        for stream, (split, n) in enumerate((("val", self.num_val), ("test", self.num_test)), start=1):
            if split not in self.eval_sets:
                self.eval_sets[split] = self._draw(
                    n, torch.Generator().manual_seed(batch_seed(self.seed, k=0, rank=0, stream=stream))
                )

    def _make_batch(self, g: torch.Generator) -> dict:
        return {"x": self._draw(self.batch_size, g)}
