"""Tokenizers of `data=text_file` (configs/tokenizer/): one character per token, or a byte-level BPE.

Both reserve id 0 for [MASK]; real tokens are ids 1..V-1 and vocab_size V counts the mask. A
tokenizer is built from the corpus (`fit(train, whole)`) or restored from a checkpoint
(`load(state())`), never both: its `state()` (`kind`, `settings`, and the vocabulary or the BPE's JSON)
is saved in the datamodule's state_dict, so a checkpoint decodes, and takes prompts, without the
corpus. `settings()` are its config values (data.tokenizer.<key>), which a run resuming a checkpoint
must share with it.

`token_chars()` is (V,) long, the characters each token id stands for (0 for [MASK]): a window's
characters are its sum, so bits per character can be measured whatever the tokenizer. For a byte-level
token that is the number of UTF-8 lead bytes it holds (a character split over two tokens counts in
the token holding its first byte); over a whole text the counts add up to its length exactly.
"""

import functools

import numpy as np
import torch

from vdiff.data.text import encode_text


class CharTokenizer:
    """One token per character: the sorted characters of the whole corpus (or the given `vocab`)."""

    kind = "char"

    def __init__(self, vocab: str | None = None):
        self.given_vocab = vocab
        self.vocab: str | None = None

    @property
    def fitted(self) -> bool:
        return self.vocab is not None

    def fit(self, train: str, whole: str) -> None:
        """Every character of the whole corpus (val characters must be encodable too)."""
        self.vocab = self.given_vocab if self.given_vocab is not None else "".join(sorted(set(whole)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 1

    def encode(self, text: str) -> torch.Tensor:
        """(N,) ids 1..V-1; KeyError(char) for a character outside the vocabulary."""
        return encode_text(text, self.vocab) if text else torch.zeros(0, dtype=torch.long)

    def decode(self, ids: list[int]) -> str:
        """The text of ids 1..V-1."""
        return "".join(self.vocab[i - 1] for i in ids)

    def token_chars(self) -> torch.Tensor:
        return torch.tensor([0] + [1] * len(self.vocab), dtype=torch.long)

    def settings(self) -> dict:
        return {"vocab": self.given_vocab}

    def state(self) -> dict:
        return {"kind": self.kind, "settings": self.settings(), "vocab": self.vocab}

    def load(self, state: dict) -> None:
        self.vocab = state["vocab"]

    def describe(self) -> str:
        return f"{len(self.vocab)} characters"


@functools.cache
def byte_decoder() -> dict[str, int]:
    """The byte-level alphabet's character -> byte (GPT-2's bytes_to_unicode, which `tokenizers` uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _lines(text: str, lines_per_piece: int = 64) -> list[str]:
    """The text in pieces of whole lines (their concatenation is the text), what BPE trains on and encodes."""
    lines = text.splitlines(keepends=True)
    return ["".join(lines[i : i + lines_per_piece]) for i in range(0, len(lines), lines_per_piece)]


class BPETokenizer:
    """A byte-level BPE (the `tokenizers` library) of up to `vocab_size` ids, the mask included, learnt
    from the training split: 256 byte tokens and merges of pairs seen at least `min_frequency` times.
    Any text encodes (unseen characters fall back to bytes). A small corpus may stop merging before
    `vocab_size`: then V is smaller (`vocab_size` is the cap)."""

    kind = "bpe"

    def __init__(self, vocab_size: int = 1024, min_frequency: int = 2):
        if vocab_size < 258:
            raise ValueError(
                f"data.tokenizer.vocab_size={vocab_size} must be at least 258: [MASK], the 256 bytes and one merge"
            )
        if min_frequency < 1:
            raise ValueError(f"data.tokenizer.min_frequency={min_frequency} must be at least 1")
        self.max_vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.tokenizer = None  # a tokenizers.Tokenizer, ids shifted by one (0 is [MASK])
        self.json: str | None = None

    @property
    def fitted(self) -> bool:
        return self.tokenizer is not None

    def fit(self, train: str, whole: str) -> None:
        """Learns the merges from the training split only."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.max_vocab_size - 1,
            min_frequency=self.min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_lines(train), trainer=trainer)
        self._use(tok)

    def _use(self, tok) -> None:
        self.tokenizer = tok
        self.json = tok.to_str()
        decoder = byte_decoder()
        table = [b""] * tok.get_vocab_size()
        for token, i in tok.get_vocab().items():
            table[i] = bytes(decoder[c] for c in token)
        self.token_bytes = [b"", *table]  # by our id: 0 is [MASK]

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str) -> torch.Tensor:
        """(N,) ids 1..V-1 (int32), encoded a piece of whole lines at a time (as trained)."""
        pieces = self.tokenizer.encode_batch(_lines(text))
        ids = np.fromiter((i + 1 for p in pieces for i in p.ids), dtype=np.int32)
        return torch.from_numpy(ids)

    def decode(self, ids: list[int]) -> str:
        """The text of ids 1..V-1; bytes of a character cut at either end show as U+FFFD."""
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_chars(self) -> torch.Tensor:
        return torch.tensor([sum((b & 0xC0) != 0x80 for b in t) for t in self.token_bytes], dtype=torch.long)

    def settings(self) -> dict:
        return {"vocab_size": self.max_vocab_size, "min_frequency": self.min_frequency}

    def state(self) -> dict:
        return {"kind": self.kind, "settings": self.settings(), "json": self.json}

    def load(self, state: dict) -> None:
        from tokenizers import Tokenizer

        self._use(Tokenizer.from_str(state["json"]))

    def describe(self) -> str:
        return f"{self.vocab_size - 1} byte-level BPE tokens"
