"""data=text_file: your own corpus with tokenizer=char or tokenizer=bpe, bits per character, and the CLI."""

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, run
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vdiff.data import TextFileDataModule
from vdiff.data.tokenizer import BPETokenizer, CharTokenizer
from vdiff.diffusion.masked import LinearMasking
from vdiff.metrics import BitsPerToken
from vdiff.models import Transformer
from vdiff.samplers import Unmask
from vdiff.tasks import MaskedDiffusion

WORDS = [
    "the",
    "king",
    "and",
    "queen",
    "of",
    "night",
    "shall",
    "walk",
    "where",
    "rivers",
    "run",
    "through",
    "golden",
    "fields",
    "ünd",
    "café",
    "東京",
]


def corpus(n_lines: int = 400, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + ".\n" for _ in range(n_lines)
    )


@pytest.fixture
def text_path(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus(), encoding="utf-8")
    return path


def take(dm, n: int) -> list[torch.Tensor]:
    stream = iter(dm.train_dataloader())
    return [next(stream)["x"] for _ in range(n)]


def test_char_tokenizer_windows_and_splits(text_path):
    text = text_path.read_text(encoding="utf-8")
    dm = TextFileDataModule(str(text_path), tokenizer=CharTokenizer(), context=32, batch_size=4, eval_batch_size=8)
    dm.setup()
    assert dm.info() == {"vocab_size": len(set(text)) + 1, "seq_len": 32} and dm.shape == (32,)
    assert dm.decode(dm.encode(text[:300])) == text[:300]
    n_train = round(0.9 * len(text))
    for window in dm.decode_batch(take(dm, 2)[0]):
        assert len(window) == 32 and window in text[:n_train]
    val = list(dm.val_dataloader())
    x = torch.cat([b["x"] for b in val])
    assert "".join(dm.decode_batch(x)) == text[n_train : n_train + len(x) * 32]
    assert torch.equal(torch.cat([b["chars"] for b in val]), torch.full((len(x),), 32))  # one character a token


def test_a_folder_of_txt_files_is_joined_in_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second file\n" * 20)
    (tmp_path / "a.txt").write_text("first file" * 20)  # no final newline: one is added
    (tmp_path / "notes.md").write_text("not a .txt file")
    dm = TextFileDataModule(str(tmp_path), context=8)
    dm.prepare_data()
    assert dm.files == [str(tmp_path / "a.txt"), str(tmp_path / "b" / "2.txt")]
    assert dm.text == "first file" * 20 + "\n" + "second file\n" * 20


def test_bpe_round_trip_char_counts_and_prompts(text_path):
    text = text_path.read_text(encoding="utf-8")
    dm = TextFileDataModule(str(text_path), tokenizer=BPETokenizer(vocab_size=400), context=16)
    dm.setup()
    tok = dm.tokenizer
    assert 258 <= dm.vocab_size <= 400 and dm.info()["vocab_size"] == dm.vocab_size
    ids = tok.encode(text)
    assert ids.min() >= 1 and ids.max() < dm.vocab_size and len(ids) < len(text) / 2  # merges shorten the text
    assert tok.decode(ids.tolist()) == text  # byte-level: exact round trip, accents and CJK included
    assert int(tok.token_chars()[ids.long()].sum()) == len(text)  # a token's characters add up to the text's
    unseen = "Zebra ✓ naïve"  # characters the corpus never had still encode, as bytes
    assert dm.decode(dm.encode(unseen)) == unseen
    prompt = dm.encode("The king __ night")
    assert (prompt == 0).sum() == 2 and dm.decode(prompt) == "The king __ night"
    val = next(iter(dm.val_dataloader()))
    assert val["x"].shape[1] == 16 and torch.equal(val["chars"], tok.token_chars()[val["x"]].sum(1))
    assert (val["chars"] > 16).all()  # several characters a token
    again = BPETokenizer(vocab_size=400)
    again.fit(dm.parts[0], dm.text)
    assert again.json == tok.json  # learnt deterministically (every DDP rank learns the same)


def test_the_tokenizer_travels_in_the_state_dict(text_path, tmp_path):
    dm = TextFileDataModule(str(text_path), tokenizer=BPETokenizer(vocab_size=300), context=16)
    dm.setup()
    state = dm.state_dict()
    assert state["tokenizer"]["kind"] == "bpe" and json.loads(state["tokenizer"]["json"])["model"]["type"] == "BPE"
    fresh = TextFileDataModule(str(tmp_path / "nowhere.txt"), tokenizer=BPETokenizer(vocab_size=300), context=16)
    fresh.load_state_dict(state)  # no corpus read
    assert fresh.info() == dm.info() and fresh.parts is None
    sample = torch.tensor([5, 0, 0, 17, 250, 3])
    assert fresh.decode(sample) == dm.decode(sample) and torch.equal(
        fresh.encode("queen _ café"), dm.encode("queen _ café")
    )
    dm.load_state_dict(state)  # Lightning restores it again: the same, so fine
    with pytest.raises(
        ValueError,
        match="data.tokenizer: the checkpoint was trained with the bpe tokenizer but this run's is char; resume with tokenizer=bpe",
    ):
        TextFileDataModule(str(text_path)).load_state_dict(state)
    with pytest.raises(ValueError, match="data.tokenizer.vocab_size=512 differs from the checkpoint's 300"):
        TextFileDataModule(str(text_path), tokenizer=BPETokenizer(vocab_size=512)).load_state_dict(state)
    other = TextFileDataModule(str(text_path), tokenizer=BPETokenizer(vocab_size=300), splits=(0.5, 0.5), context=16)
    other.info()  # learnt from another training split
    with pytest.raises(
        ValueError, match="data.tokenizer: the checkpoint's bpe tokenizer differs from the one built from data.root="
    ):
        other.load_state_dict(state)
    char = TextFileDataModule(str(text_path), context=16)
    char_state = char.state_dict()
    assert char_state["tokenizer"] == {"kind": "char", "settings": {"vocab": None}, "vocab": char.tokenizer.vocab}
    restored = TextFileDataModule("/nonexistent", context=16)
    restored.load_state_dict(char_state)
    assert restored.decode(char.encode("queen of night")) == "queen of night"


def test_resumed_batch_stream_is_exact(text_path):
    def module(seed=3):
        return TextFileDataModule(
            str(text_path), tokenizer=BPETokenizer(vocab_size=300), context=16, batch_size=4, seed=seed
        )

    dm = module()
    straight = take(dm, 6)
    assert all(torch.equal(a, b) for a, b in zip(straight, take(module(), 6)))
    dm.trainer = SimpleNamespace(global_step=2, accumulate_grad_batches=2, global_rank=0, world_size=1)
    assert all(torch.equal(a, b) for a, b in zip(take(dm, 2), straight[4:]))
    assert not torch.equal(take(module(seed=4), 1)[0], straight[0])


def test_val_bpc_is_per_character_and_bpt_per_token(monkeypatch):
    """A hand-computable case: every window costs c nats per token (a stubbed NELBO); windows of L = 4
    tokens standing for 8 and 4 characters give bpt = c / ln 2 and bpc = 2 (4 c) / (12 ln 2)."""
    import vdiff.tasks.masked as masked

    c = 0.75
    monkeypatch.setattr(
        masked, "nelbo_per_token", lambda nll, m, t, schedule: torch.full((nll.shape[0],), c, dtype=torch.float64)
    )
    task = MaskedDiffusion(
        Transformer(6, 4, dim=16, depth=1, heads=2), LinearMasking(), Unmask(2), optimizer=None, val_t_samples=2
    )
    task.on_validation_epoch_start()
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer here
        task.evaluate({"x": torch.tensor([[1, 2, 3, 4], [5, 4, 3, 2]]), "chars": torch.tensor([8, 4])}, "val")
    assert float(task.val_bpt.compute()) == pytest.approx(c / math.log(2), rel=1e-12)
    assert float(task.val_bpc.compute()) == pytest.approx(2 * 4 * c / (12 * math.log(2)), rel=1e-12)
    plain = MaskedDiffusion(Transformer(6, 4, dim=16, depth=1, heads=2), LinearMasking(), Unmask(2), optimizer=None)
    plain.on_validation_epoch_start()
    with pytest.warns(UserWarning, match="self.log"):
        plain.evaluate({"x": torch.tensor([[1, 2, 3, 4]])}, "val")  # no "chars": one per token
    assert float(plain.val_bpc.compute()) == float(plain.val_bpt.compute()) == pytest.approx(c / math.log(2))


def test_bits_per_char_metric_divides_the_same_bits_by_characters(text_path):
    torch.manual_seed(0)
    dm = TextFileDataModule(str(text_path), tokenizer=BPETokenizer(vocab_size=300), context=16, eval_batch_size=8)
    dm.setup()
    task = MaskedDiffusion(
        Transformer(dm.vocab_size, 16, dim=16, depth=1, heads=2), LinearMasking(), Unmask(2), optimizer=None
    )
    r = BitsPerToken(t_samples=1)(None, dm, torch.device("cpu"), task=task)
    assert r["num_chars"] == int(dm.eval_chars["val"].sum()) and r["num_tokens"] == dm.eval_sets["val"].numel()
    assert r["bits_per_char"] * r["num_chars"] == pytest.approx(r["bits_per_token"] * r["num_tokens"], rel=1e-9)
    assert r["bits_per_char"] < r["bits_per_token"]


def test_bad_input_names_the_file_or_key(tmp_path):
    with pytest.raises(ValueError, match="data.root is not set"):
        TextFileDataModule(None)
    with pytest.raises(FileNotFoundError, match=f"data.root={tmp_path / 'none.txt'} not found"):
        TextFileDataModule(str(tmp_path / "none.txt")).prepare_data()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"data.root={tmp_path / 'empty'} holds no .txt files"):
        TextFileDataModule(str(tmp_path / "empty")).prepare_data()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("fine text\n" * 50)
    (tmp_path / "docs" / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"{tmp_path / 'docs' / 'latin1.txt'} is not UTF-8 text \\(byte 3"):
        TextFileDataModule(str(tmp_path / "docs")).prepare_data()
    (tmp_path / "docs" / "latin1.txt").write_text("snake_case\n")
    with pytest.raises(ValueError, match="data.mask_char='_' occurs in .*latin1.txt"):
        TextFileDataModule(str(tmp_path / "docs")).prepare_data()
    with pytest.raises(ValueError, match="data.context=400 exceeds the .* tokens of the val split"):
        TextFileDataModule(str(tmp_path / "docs"), mask_char="#", context=400).setup()
    with pytest.raises(ValueError, match="data.tokenizer.vocab_size=100 must be at least 258"):
        BPETokenizer(vocab_size=100)


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_configs_compose_and_the_tokenizer_group_reaches_data(text_path):
    bpe = config("experiment=text_file_bpe_cpu", f"data.root={text_path}")
    assert bpe.data.tokenizer._target_.endswith("BPETokenizer") and bpe.data.context == 64
    char = config("data=text_file", "tokenizer=char", f"data.root={text_path}")
    dm = instantiate(char.data, seed=0, context=16)
    assert isinstance(dm.tokenizer, CharTokenizer) and dm.info()["seq_len"] == 16
    assert isinstance(
        instantiate(config("data=text_file", f"data.root={text_path}").data, seed=0).tokenizer, CharTokenizer
    )
    assert "tokenizer" not in config("experiment=text_shakespeare_cpu").data  # other data untouched


TINY_TEXT = [
    "experiment=text_file_bpe_cpu",
    "model=transformer_tiny",
    "data.context=32",
    "data.tokenizer.vocab_size=320",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "trainer.limit_val_batches=1",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "sampler.steps=4",
    "callbacks.samples.num_samples=2",
    "callbacks.progress_bar=null",
]


def test_train_then_sample_with_bpe_and_an_infill_prompt(text_path, tmp_path):
    out = tmp_path / "run"
    run("train.py", *TINY_TEXT, f"data.root={text_path}", f"hydra.run.dir={out}")
    rows = (out / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "val/bpc" in header and "val/bpt" in header
    values = next(dict(zip(header, r.split(","))) for r in rows[1:] if dict(zip(header, r.split(",")))["val/bpc"])
    assert float(values["val/bpc"]) < float(values["val/bpt"])  # BPE tokens are more than a character each
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state = ckpt["TextFileDataModule"]["tokenizer"]
    assert state["kind"] == "bpe" and state["settings"]["vocab_size"] == 320
    assert ckpt["config"]["model"]["net"]["vocab_size"] == len(json.loads(state["json"])["model"]["vocab"]) + 1
    prompt = "The king ____ night"
    run(
        "sample.py",
        f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
        "num_samples=2",
        f"prompt={prompt}",
        "paths.data_dir=/nonexistent",  # no corpus at sampling time: the checkpoint's tokenizer decodes
        "progress=false",
        f"out_dir={tmp_path / 'samples'}",
    )
    samples = json.loads((tmp_path / "samples" / "samples.json").read_text())
    assert all(0 not in ids for ids in samples["ids"])  # every [MASK] filled (a generated "_" byte is text)
    for text in samples["text"]:
        assert text.startswith("The king ") and " night" in text
    proc = run(
        "train.py",
        *(o for o in TINY_TEXT if not o.startswith("data.tokenizer.")),
        f"data.root={text_path}",
        "tokenizer=char",
        "trainer.max_steps=4",
        "ckpt_path=last",
        f"hydra.run.dir={out}",
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [
        "error: data.tokenizer: the checkpoint was trained with the bpe tokenizer but this run's is char; resume with tokenizer=bpe"
    ], proc.stderr[-2000:]
