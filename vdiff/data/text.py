"""Character-level text for masked diffusion (batches and vocabulary as in `vdiff.data.tokens`).

`CharTextDataModule` reads `<root>/<file>` (UTF-8 text, or a .zip holding one text file such as
text8.zip) and splits it in order into train/val[/test] fractions: training batches are random
windows of the train part, val/test are consecutive non-overlapping windows tiling their part.
A known corpus (Tiny Shakespeare, KJV) is checked against its published SHA-256 on first use
(`vdiff.data.verify`).
"""

import itertools
import os
import zipfile
import zlib

import numpy as np
import torch

from vdiff.data.tokens import TokenDataModule
from vdiff.data.verify import unreadable, verify


def read_text(path: str) -> str:
    """UTF-8 text of a file, or of the single member of a .zip; ValueError naming the file when it
    cannot be read or decoded."""
    try:
        if not path.endswith(".zip"):
            with open(path, encoding="utf-8") as f:
                return f.read()
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise ValueError(f"data.file: {path} holds {len(names)} files; expected exactly one text file")
            return z.read(names[0]).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error) as e:
        raise unreadable(path, e) from e


def encode_text(text: str, vocab: str, chunk: int = 1 << 24) -> torch.Tensor:
    """(N,) ids 1..V-1 of a long text (uint8 when they fit), via a code-point lookup table;
    raises KeyError(char) for the first character outside the vocabulary."""
    table = np.zeros(max(map(ord, vocab)) + 1, np.int32)
    table[[ord(c) for c in vocab]] = np.arange(1, len(vocab) + 1)
    out = np.empty(len(text), np.uint8 if len(vocab) < 256 else np.int32)
    for lo in range(0, len(text), chunk):
        codes = np.frombuffer(text[lo : lo + chunk].encode("utf-32-le"), np.uint32)
        ids = table[np.minimum(codes, len(table) - 1)]
        bad = np.flatnonzero((ids == 0) | (codes >= len(table)))
        if len(bad):
            raise KeyError(text[lo + bad[0]])
        out[lo : lo + len(ids)] = ids
    return torch.from_numpy(out)


class CharTextDataModule(TokenDataModule):
    def __init__(
        self,
        root: str,
        file: str,
        seq_len: int = 256,
        batch_size: int = 64,
        eval_batch_size: int = 64,
        splits=(0.9, 0.1),
        vocab: str | None = None,
        mask_char: str = "_",
        max_eval_windows: int | None = None,
        seed: int = 0,
    ):
        super().__init__(seq_len, batch_size, eval_batch_size=eval_batch_size, mask_char=mask_char, seed=seed)
        splits = tuple(float(s) for s in splits)
        if len(splits) not in (2, 3) or min(splits) <= 0 or sum(splits) > 1 + 1e-9:
            raise ValueError(
                f"data.splits={list(splits)} must be 2 or 3 positive fractions (train, val[, test]) summing to <= 1"
            )
        self.path = os.path.join(root, file)
        self.splits = splits
        self.given_vocab = vocab
        self.max_eval_windows = max_eval_windows
        self.file = file  # the name under root, by which a known corpus is checked (vdiff.data.verify)
        self.source = self.path
        self.ids: torch.Tensor | None = None  # the whole text encoded, (N,)
        self.train_ids: torch.Tensor | None = None

    def _build_vocab(self) -> None:
        if not os.path.exists(self.path):
            raise FileNotFoundError(
                f"data.file: {self.path} not found; point data.root (or VDIFF_DATA_DIR) at the folder holding it"
            )
        verify(self.path, self.file)
        text = read_text(self.path)
        vocab = self.given_vocab if self.given_vocab is not None else "".join(sorted(set(text)))
        if self.mask_char in vocab:
            raise ValueError(
                f"data.mask_char={self.mask_char!r} occurs in the vocabulary of {self.path}; choose another mask character"
            )
        try:
            self.ids = encode_text(text, vocab)
        except KeyError as e:
            raise ValueError(f"{self.path} holds the character {e.args[0]!r}, which is not in data.vocab") from None
        adopted = self.vocab
        self.vocab = vocab
        if adopted is not None:  # a checkpoint's vocabulary was loaded first: they must agree
            self.load_state_dict({"vocab": adopted})

    def prepare_data(self) -> None:
        if self.ids is None:
            self._build_vocab()

    def setup(self, stage: str | None = None) -> None:
        if self.train_ids is not None:
            return
        self.prepare_data()
        n = len(self.ids)
        bounds = [0]
        total = 0.0
        for frac in self.splits:
            total += frac
            bounds.append(min(n, round(total * n)))
        parts = [self.ids[lo:hi] for lo, hi in itertools.pairwise(bounds)]
        for name, part in zip(("train", "val", "test"), parts):
            if len(part) < self.seq_len:
                raise ValueError(
                    f"data.seq_len={self.seq_len} exceeds the {len(part)} characters of the {name} split of {self.path}"
                )
        self.train_ids = parts[0]
        for name, part in zip(("val", "test"), parts[1:] if len(parts) == 3 else [parts[1], parts[1]]):
            windows = part[: len(part) // self.seq_len * self.seq_len].view(-1, self.seq_len)
            self.eval_sets[name] = windows[: self.max_eval_windows]

    def train_tokens(self, max_tokens: int | None = None) -> torch.Tensor:
        """The whole training part of the text, (N,) ids (`max_tokens` is ignored: it is at hand)."""
        self.setup()
        return self.train_ids

    def _make_batch(self, g: torch.Generator) -> dict:
        start = torch.randint(0, len(self.train_ids) - self.seq_len + 1, (self.batch_size, 1), generator=g)
        return {"x": self.train_ids[start + torch.arange(self.seq_len)].long()}
