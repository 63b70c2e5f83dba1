"""The base of the discrete-token datamodules: vocabulary, encoding, checkpointed state, loaders.

Batch: {"x": (B, L) long token ids}, and optionally `CHARS` ("chars", (B,) long): the characters each
window stands for where a token may be more than one (val/bpc divides by them; without the key a
token is one character). Id 0 is always [MASK]; real symbols are ids 1..V-1, where
vocab_size V counts the mask and `vocab[i]` (a str) is the symbol of id i+1. The vocabulary is
saved in every checkpoint (`state_dict`), so a run resumes, and samples decode, with the same one.
Training batches form an infinite stream whose batch k is a pure function of (seed, k, rank) and
which starts at `batches_done(trainer)`, so a resumed run sees what a straight run would have.
"""

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from vdiff.contracts import DataDefaults
from vdiff.data.batches import batches_done, own_generator
from vdiff.outputs import log_text, write_text

CHARS = "chars"  # optional key of a token batch: (B,) long, the characters each window stands for


def window_chars(batch: dict) -> torch.Tensor:
    """(B,) characters of each window of a token batch: batch[CHARS] where the datamodule gives it
    (subword tokens, vdiff/data/text_file.py), else one character per token."""
    x = batch["x"]
    chars = batch.get(CHARS)
    return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device) if chars is None else chars


def batch_seed(seed: int, k: int, rank: int = 0, stream: int = 0) -> int:
    """Generator seed of batch k on a rank; stream 0 = training, others for fixed eval sets. A hash
    to 32 bits, as torch's CPU generator keeps only the low 32 bits of a seed."""
    return int(np.random.SeedSequence([x % 2**64 for x in (seed, stream, k, rank)]).generate_state(1)[0])


class SeededBatches:
    """Infinite stream of `make(generator)` batches, batch k seeded by (seed, k, rank), from `start`."""

    def __init__(self, make, seed: int = 0, rank: int = 0, start: int = 0):
        self.make = make
        self.seed = seed
        self.rank = rank
        self.start = start

    def __iter__(self):
        k = self.start
        while True:
            yield self.make(torch.Generator().manual_seed(batch_seed(self.seed, k, self.rank)))
            k += 1


def _stack(rows: list) -> dict:
    return {"x": torch.stack(rows).long()}


class TokenDataModule(DataDefaults, L.LightningDataModule):
    """Vocabulary, encoding, checkpointed state and loaders shared by the discrete datamodules.
    Subclasses define `_build_vocab()` (sets `self.vocab`), `_make_batch(generator)` (one training
    batch) and fill `self.eval_sets` ({"val", "test"}: (N, L) ids) in `setup()`."""

    resume_hint = "data file"  # what to keep the same when the checkpoint's vocabulary differs

    def __init__(self, seq_len: int, batch_size: int, eval_batch_size: int, mask_char: str = "_", seed: int = 0):
        super().__init__()
        if len(mask_char) != 1:
            raise ValueError(f"data.mask_char={mask_char!r} must be a single character")
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.mask_char = mask_char
        self.seed = seed
        self.mask_id = 0
        self.shape = (seq_len,)  # of one example
        self.vocab: str | None = None
        self.source = ""  # where the vocabulary was built from, for error messages
        self.eval_sets: dict[str, torch.Tensor] = {}

    def _vocab(self) -> str:
        if self.vocab is None:
            self._build_vocab()
        return self.vocab

    @property
    def vocab_size(self) -> int:
        if self.vocab is None:
            raise RuntimeError(
                "the vocabulary is not built yet: call prepare_data(), setup() or load_state_dict() first"
            )
        return len(self.vocab) + 1

    def info(self) -> dict:
        self._vocab()
        return {"vocab_size": self.vocab_size, "seq_len": self.seq_len}

    def state_dict(self) -> dict:
        return {"vocab": self.vocab}

    def load_state_dict(self, state: dict) -> None:
        if self.vocab is not None and self.vocab != state["vocab"]:
            raise ValueError(
                f"vocabulary mismatch: the checkpoint's vocabulary ({len(state['vocab'])} symbols) differs from the one built "
                f"from {self.source} ({len(self.vocab)} symbols); resume with the same {self.resume_hint}"
            )
        self.vocab = state["vocab"]

    def encode(self, text: str) -> torch.Tensor:
        """(L,) long ids of a string; mask_char -> 0."""
        ids = {c: i + 1 for i, c in enumerate(self._vocab())} | {self.mask_char: self.mask_id}
        try:
            return torch.tensor([ids[c] for c in text], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        """String of a 1-D tensor or list of ids; mask id -> mask_char."""
        symbols = self.mask_char + self._vocab()
        return "".join(symbols[i] for i in torch.as_tensor(ids).tolist())

    def decode_batch(self, x: torch.Tensor) -> list[str]:
        return [self.decode(row) for row in x]

    def write_samples(self, samples: torch.Tensor, out_dir: str) -> list[str]:
        return write_text(samples, self.decode_batch(samples), out_dir)

    def log_samples(self, trainer, samples: torch.Tensor) -> None:
        log_text(trainer, samples, texts=self.decode_batch(samples), vocab_size=self.vocab_size)

    def train_tokens(self, max_tokens: int = 1 << 20) -> torch.Tensor:
        """(N,) ids of the training split for statistics such as unigram frequencies: here the
        first training batches of the seeded stream, about `max_tokens` ids; a datamodule whose
        training split is a fixed text returns that text."""
        rows = []
        count = 0
        for batch in SeededBatches(self._make_batch, self.seed):
            rows.append(batch["x"].flatten())
            count += rows[-1].numel()
            if count >= max_tokens:
                break
        return torch.cat(rows)[:max_tokens]

    def train_dataloader(self) -> SeededBatches:
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        return SeededBatches(self._make_batch, self.seed, rank, start=batches_done(trainer))

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.eval_sets[split], batch_size=self.eval_batch_size, collate_fn=_stack, generator=own_generator()
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
