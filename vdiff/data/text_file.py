"""Your own text corpus for masked diffusion (`data=text_file data.root=<file or folder> tokenizer=char|bpe`).

data.root is a UTF-8 text file, or a folder whose .txt files (at any depth, sorted by path) are
joined, each ending in a newline. The text is split in order into train / val[ / test] fractions of
its characters (test = val with two), and each part is tokenized by `data.tokenizer`
(vdiff/data/tokenizer.py): one token per character (`tokenizer=char`, what CharTextDataModule does)
or a byte-level BPE learnt from the training part (`tokenizer=bpe`). Training batches are random
windows of `context` tokens of the train part (batch k a pure function of (seed, k, rank)); val and
test are the consecutive windows tiling their part.

Batches: {"x": (B, context) long ids, id 0 = [MASK]}; val / test batches add "chars" (B,) long, the
characters each window stands for (the declared key `vdiff.data.tokens.CHARS`), so the masked task
reports val/bpc in bits per character whatever the tokenizer, beside val/bpt in bits per token.
The tokenizer is saved in the state_dict (the checkpoint): sample.py decodes and infills without the
corpus, and a resumed run keeps the checkpoint's tokenizer (a BPE is not learnt again), refusing one
of another kind or other settings with a ValueError naming data.tokenizer.
"""

import itertools
import os

import torch
from torch.utils.data import DataLoader

from vdiff.data.batches import eval_loader
from vdiff.data.tokenizer import CharTokenizer
from vdiff.data.tokens import CHARS, TokenDataModule


def text_files(root: str) -> list[str]:
    """The corpus files: root itself, or the .txt files under it sorted by path (hidden ones left out)."""
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.root={root} not found; point it at a UTF-8 .txt file or a folder of them")
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [os.path.join(folder, n) for n in names if n.endswith(".txt") and not n.startswith(".")]
    if not files:
        raise FileNotFoundError(f"data.root={root} holds no .txt files")
    return sorted(files, key=lambda p: os.path.relpath(p, root))


def read_utf8(path: str) -> str:
    """A file's text; ValueError naming it when it is not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({type(e).__name__}: {e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); convert it to UTF-8 or move it out of data.root"
        ) from None


class _Windows(torch.utils.data.Dataset):
    """Eval windows (N, L) and their characters (N,); `__getitems__` gives a whole batch."""

    def __init__(self, x: torch.Tensor, chars: torch.Tensor):
        self.x = x
        self.chars = chars

    def __len__(self) -> int:
        return len(self.x)

    def __getitems__(self, idx) -> dict:
        idx = torch.as_tensor(idx)
        return {"x": self.x[idx].long(), CHARS: self.chars[idx]}


class TextFileDataModule(TokenDataModule):
    resume_hint = "data.root"

    def __init__(
        self,
        root: str | None = None,
        tokenizer=None,
        context: int = 256,
        batch_size: int = 64,
        eval_batch_size: int = 64,
        splits=(0.9, 0.1),
        mask_char: str = "_",
        max_eval_windows: int | None = None,
        seed: int = 0,
    ):
        super().__init__(context, batch_size, eval_batch_size=eval_batch_size, mask_char=mask_char, seed=seed)
        if not root:
            raise ValueError(
                "data.root is not set: point it at a UTF-8 .txt file or a folder of them (data.root=<path>)"
            )
        for key, value in (("context", context), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"data.{key}={value} must be at least 1")
        splits = tuple(float(s) for s in splits)
        if len(splits) not in (2, 3) or min(splits) <= 0 or sum(splits) > 1 + 1e-9:
            raise ValueError(
                f"data.splits={list(splits)} must be 2 or 3 positive fractions (train, val[, test]) summing to <= 1"
            )
        self.root = root
        self.context = context
        self.tokenizer = tokenizer if tokenizer is not None else CharTokenizer()
        self.splits = splits
        self.max_eval_windows = max_eval_windows
        self.source = root
        self.files: list[str] = []
        self.parts: list[str] | None = None  # the text of each split, in order
        self.train_ids: torch.Tensor | None = None
        self.eval_chars: dict[str, torch.Tensor] = {}

    # -- the corpus and the tokenizer -----------------------------------------------------------

    def prepare_data(self) -> None:
        """Reads the corpus: FileNotFoundError naming data.root, ValueError naming a non-UTF-8 file."""
        if self.parts is not None:
            return
        self.files = text_files(self.root)
        texts = [read_utf8(path) for path in self.files]
        text = "".join(t if t.endswith("\n") or i == len(texts) - 1 else t + "\n" for i, t in enumerate(texts))
        if self.mask_char in text:
            where = next(p for p, t in zip(self.files, texts) if self.mask_char in t)
            raise ValueError(
                f"data.mask_char={self.mask_char!r} occurs in {where}; choose a mask character the text never uses"
            )
        bounds = [0]
        total = 0.0
        for frac in self.splits:
            total += frac
            bounds.append(min(len(text), round(total * len(text))))
        self.text = text
        self.parts = [text[lo:hi] for lo, hi in itertools.pairwise(bounds)]

    def _tokenizer(self):
        """The tokenizer, built from the corpus unless a checkpoint's was loaded."""
        if not self.tokenizer.fitted:
            self.prepare_data()
            self.tokenizer.fit(self.parts[0], self.text)
        return self.tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tokenizer().vocab_size

    def info(self) -> dict:
        return {"vocab_size": self.vocab_size, "seq_len": self.context}

    def state_dict(self) -> dict:
        return {"tokenizer": self._tokenizer().state()}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's tokenizer, adopted (or, when one is built already, compared): another kind,
        or other settings, is a ValueError naming data.tokenizer."""
        stored = state.get("tokenizer")
        if stored is None:
            raise ValueError(
                "data.tokenizer: the checkpoint holds no tokenizer (it was not trained with data=text_file)"
            )
        mine = self.tokenizer
        if stored["kind"] != mine.kind:
            raise ValueError(
                f"data.tokenizer: the checkpoint was trained with the {stored['kind']} tokenizer but this run's is "
                f"{mine.kind}; resume with tokenizer={stored['kind']}"
            )
        for key, value in mine.settings().items():
            if stored["settings"].get(key) != value:
                raise ValueError(
                    f"data.tokenizer.{key}={value} differs from the checkpoint's {stored['settings'].get(key)}; "
                    f"resume with data.tokenizer.{key}={stored['settings'].get(key)}"
                )
        if not mine.fitted:
            mine.load(stored)
        elif mine.state() != stored:
            raise ValueError(
                f"data.tokenizer: the checkpoint's {mine.kind} tokenizer differs from the one built from "
                f"data.root={self.root} ({mine.describe()}); resume with the same {self.resume_hint}"
            )

    def encode(self, text: str) -> torch.Tensor:
        """(N,) long ids of a prompt: each mask_char is one [MASK] token (id 0), the text between is tokenized."""
        tok = self._tokenizer()
        pieces = text.split(self.mask_char)
        out = []
        for i, piece in enumerate(pieces):
            if i:
                out.append(torch.tensor([self.mask_id]))
            try:
                out.append(tok.encode(piece).long())
            except KeyError as e:
                raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None
        return torch.cat(out)

    def decode(self, ids) -> str:
        """Text of a 1-D tensor or list of ids; each mask id shows as mask_char."""
        tok = self._tokenizer()
        ids = torch.as_tensor(ids).tolist()
        runs = itertools.groupby(ids, key=lambda i: i == self.mask_id)
        return "".join(self.mask_char * len(list(run)) if masked else tok.decode(list(run)) for masked, run in runs)

    # -- splits and batches --------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.train_ids is not None:
            return
        tok = self._tokenizer()
        self.prepare_data()
        ids = []
        for part in self.parts:
            try:
                ids.append(tok.encode(part))
            except KeyError as e:
                raise ValueError(
                    f"data.root={self.root} holds the character {e.args[0]!r}, which is not in the tokenizer's "
                    f"vocabulary ({tok.describe()}); resume with the same {self.resume_hint}"
                ) from None
        for name, part in zip(("train", "val", "test"), ids):
            if len(part) < self.context:
                raise ValueError(
                    f"data.context={self.context} exceeds the {len(part)} tokens of the {name} split of data.root={self.root}"
                )
        chars = tok.token_chars()
        self.train_ids = ids[0]
        for name, part in zip(("val", "test"), ids[1:] if len(ids) == 3 else [ids[1], ids[1]]):
            windows = part[: len(part) // self.context * self.context].view(-1, self.context)[: self.max_eval_windows]
            self.eval_sets[name] = windows
            self.eval_chars[name] = chars[windows.long()].sum(1)

    def train_tokens(self, max_tokens: int | None = None) -> torch.Tensor:
        """The whole training part, (N,) ids (`max_tokens` is ignored: it is at hand)."""
        self.setup()
        return self.train_ids

    def train_dataloader(self):
        self.setup()
        return super().train_dataloader()

    def _make_batch(self, g: torch.Generator) -> dict:
        start = torch.randint(0, len(self.train_ids) - self.context + 1, (self.batch_size, 1), generator=g)
        return {"x": self.train_ids[start + torch.arange(self.context)].long()}

    def _eval_loader(self, split: str) -> DataLoader:
        return eval_loader(_Windows(self.eval_sets[split], self.eval_chars[split]), self.eval_batch_size)
