"""Discrete-text datamodules: synthetic periodic patterns, character-level text files and text8.zip."""

import random
import zipfile
from types import SimpleNamespace

import pytest
import torch
from conftest import DATA

from vdiff.data import CharTextDataModule, PatternsDataModule
from vdiff.metrics.patterns import periodic

SHAKESPEARE = DATA / "text" / "tinyshakespeare.txt"
TEXT8_VOCAB = " abcdefghijklmnopqrstuvwxyz"


def trainer(step: int, rank: int = 0, world: int = 1, accumulate: int = 1):
    return SimpleNamespace(global_step=step, accumulate_grad_batches=accumulate, global_rank=rank, world_size=world)


def take(dm, n: int) -> list[torch.Tensor]:
    stream = iter(dm.train_dataloader())
    return [next(stream)["x"] for _ in range(n)]


def test_patterns_batches_are_periodic_and_in_range():
    dm = PatternsDataModule(vocab_size=16, seq_len=32, batch_size=64, eval_batch_size=100, num_val=300, num_test=200)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.info() == {"vocab_size": 16, "seq_len": 32} and dm.vocab == "ABCDEFGHIJKLMNO" and dm.shape == (32,)
    x = take(dm, 3)
    val = list(dm.val_dataloader())
    assert [len(b["x"]) for b in val] == [100, 100, 100] and len(
        torch.cat([b["x"] for b in dm.test_dataloader()])
    ) == 200
    for batch in x + [b["x"] for b in val]:
        assert batch.dtype == torch.long and batch.shape[1] == 32
        assert batch.min() >= 1 and batch.max() <= 15 and periodic(batch).all()
    allx = torch.cat(x)
    periods = [min(p for p in (2, 3, 4) if torch.equal(row[p:], row[:-p])) for row in allx]
    assert set(periods) == {2, 3, 4}  # all periods occur
    assert not torch.equal(torch.cat([b["x"] for b in val])[:200], torch.cat([b["x"] for b in dm.test_dataloader()]))
    assert dm.decode_batch(allx[:2]) == [dm.decode(allx[0]), dm.decode(allx[1])] and len(dm.decode(allx[0])) == 32
    assert set(dm.decode(allx[0])) <= set(dm.vocab)


def test_periodic_rejects_perturbations_and_masks():
    x = torch.tensor([[1, 2, 3] * 4, [5, 6] * 6, [7, 1, 2, 3, 4] * 2 + [7, 1]])
    assert periodic(x).tolist() == [True, True, False]  # period 5 is outside 2..4
    assert periodic(x, max_period=5).tolist() == [True, True, True]
    bad = x.clone()
    bad[0, 7] = 9
    bad[1, 3] = 0
    assert periodic(bad).tolist() == [False, False, False]
    assert periodic(torch.tensor([[7] * 12])).tolist() == [True]  # period 1 implies period 2


def test_patterns_stream_is_seeded_resumable_and_per_rank():
    dm = PatternsDataModule(batch_size=16, seed=3)
    straight = take(dm, 6)
    assert all(torch.equal(a, b) for a, b in zip(straight, take(PatternsDataModule(batch_size=16, seed=3), 6)))
    assert not torch.equal(straight[0], straight[1])
    assert not torch.equal(straight[0], take(PatternsDataModule(batch_size=16, seed=4), 1)[0])
    dm.trainer = trainer(step=2, accumulate=2)  # 4 batches done
    assert all(torch.equal(a, b) for a, b in zip(take(dm, 2), straight[4:]))
    dm.trainer = trainer(step=0, rank=1, world=2)
    assert not torch.equal(take(dm, 1)[0], straight[0])


def test_patterns_vocab_checks():
    with pytest.raises(ValueError, match="data.vocab_size"):
        PatternsDataModule(vocab_size=28)
    with pytest.raises(ValueError, match="data.vocab_size"):
        PatternsDataModule(vocab_size=2)
    dm = PatternsDataModule(vocab_size=5)
    assert dm.encode("AB_D").tolist() == [1, 2, 0, 4] and dm.decode([4, 0, 1]) == "D_A"
    with pytest.raises(ValueError, match="'E'"):
        dm.encode("ABE")
    dm.load_state_dict(dm.state_dict())
    with pytest.raises(ValueError, match="vocabulary mismatch.*data.vocab_size=5"):
        dm.load_state_dict({"vocab": "ABCDE"})


@pytest.fixture
def shakespeare():
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} not found (set VDIFF_DATA_DIR to the shared data folder)")
    dm = CharTextDataModule(str(DATA), "text/tinyshakespeare.txt", seq_len=64, batch_size=8, eval_batch_size=50)
    dm.prepare_data()
    dm.setup("fit")
    return dm, SHAKESPEARE.read_text(encoding="utf-8")


def test_shakespeare_vocab_windows_and_splits(shakespeare):
    dm, text = shakespeare
    assert len(dm.vocab) == 65 and dm.vocab_size == 66 and dm.info() == {"vocab_size": 66, "seq_len": 64}
    passage = text[:200]
    assert passage.startswith("First Citizen:")
    ids = dm.encode(passage)
    assert ids.dtype == torch.long and ids.min() >= 1 and dm.decode(ids) == passage
    masked = ids.clone()
    masked[::3] = 0
    assert dm.decode(masked)[::3] == "_" * len(masked[::3])
    with pytest.raises(ValueError, match="'~'"):
        dm.encode("to be~")
    n_train = round(0.9 * len(text))
    train_text = text[:n_train]
    for window in dm.decode_batch(take(dm, 2)[0]):
        assert len(window) == 64 and window in train_text
    val = torch.cat([b["x"] for b in dm.val_dataloader()])
    n_val = (len(text) - n_train) // 64
    assert val.shape == (n_val, 64) and val.dtype == torch.long
    assert "".join(dm.decode_batch(val)) == text[n_train : n_train + n_val * 64]
    test = torch.cat([b["x"] for b in dm.test_dataloader()])
    assert torch.equal(test, val)  # two splits: test = val


def test_shakespeare_checkpoint_vocab(shakespeare):
    dm, _text = shakespeare
    state = dm.state_dict()
    assert state == {"vocab": dm.vocab}
    dm.load_state_dict(state)  # same vocabulary: fine
    with pytest.raises(
        ValueError,
        match="vocabulary mismatch.*checkpoint.*66 symbols.*tinyshakespeare.txt \\(65 symbols\\); resume with the same data file",
    ):
        dm.load_state_dict({"vocab": dm.vocab + "~"})
    fresh = CharTextDataModule("/nonexistent", "text/tinyshakespeare.txt")  # never reads a file
    fresh.load_state_dict(state)
    assert fresh.vocab_size == 66 and fresh.decode(dm.encode("Hello, world")) == "Hello, world"
    capped = CharTextDataModule(str(DATA), "text/tinyshakespeare.txt", seq_len=32, max_eval_windows=5)
    capped.load_state_dict({"vocab": dm.vocab[:-1]})  # checkpoint first, then the file disagrees
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        capped.setup("fit")


def write_zip(path, text: str):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("text8", text)


def test_text8_zip_fixed_vocab_and_three_splits(tmp_path):
    rng = random.Random(0)
    write_zip(tmp_path / "text8.zip", "".join(rng.choice(TEXT8_VOCAB) for _ in range(20000)))
    dm = CharTextDataModule(
        str(tmp_path), "text8.zip", seq_len=100, vocab=TEXT8_VOCAB, splits=(0.9, 0.05, 0.05), max_eval_windows=8
    )
    dm.setup("fit")
    assert dm.vocab == TEXT8_VOCAB and dm.vocab_size == 28 and dm.encode(" az").tolist() == [1, 2, 27]
    assert len(dm.train_ids) == 18000 and dm.ids.dtype == torch.uint8
    assert dm.eval_sets["val"].shape == (8, 100) and dm.eval_sets["test"].shape == (8, 100)
    full = CharTextDataModule(str(tmp_path), "text8.zip", seq_len=100, vocab=TEXT8_VOCAB, splits=(0.9, 0.05, 0.05))
    full.setup()
    assert len(full.eval_sets["val"]) == len(full.eval_sets["test"]) == 10  # 1000 characters each
    assert torch.equal(full.eval_sets["val"].flatten(), full.ids[18000:19000])
    assert torch.equal(full.eval_sets["test"].flatten(), full.ids[19000:20000])
    write_zip(tmp_path / "bad.zip", "hello world" * 10 + "Q")
    with pytest.raises(ValueError, match="bad.zip.*'Q'"):
        CharTextDataModule(str(tmp_path), "bad.zip", vocab=TEXT8_VOCAB).prepare_data()


def test_bad_settings(tmp_path):
    (tmp_path / "a.txt").write_text("ab_ab " * 20)
    with pytest.raises(ValueError, match="data.mask_char"):
        CharTextDataModule(str(tmp_path), "a.txt", seq_len=4).prepare_data()
    with pytest.raises(ValueError, match="data.splits"):
        CharTextDataModule(str(tmp_path), "a.txt", splits=(0.9, 0.2))
    with pytest.raises(ValueError, match="data.seq_len"):
        CharTextDataModule(str(tmp_path), "a.txt", seq_len=50, mask_char="#").setup()


def test_missing_file_names_the_path(tmp_path):
    dm = CharTextDataModule(str(tmp_path), "text/tinyshakespeare.txt")
    with pytest.raises(FileNotFoundError, match=f"data.file: {tmp_path}/text/tinyshakespeare.txt not found.*data.root"):
        dm.prepare_data()
