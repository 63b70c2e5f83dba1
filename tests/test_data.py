"""MNIST reading and the resumable batch stream."""

import gzip
import struct

import pytest
import torch

from vdiff.data.batches import IndexBatches
from vdiff.data.idx import read_idx
from vdiff.data.mnist import MNISTDataModule


def test_idx_reader_roundtrip(tmp_path):
    arr = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 3, 4, 5) + arr.numpy().tobytes())
    assert torch.equal(read_idx(str(path)), arr)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(str(bad))


def test_mnist_splits_and_scaling(mnist_root):
    dm = MNISTDataModule(root=mnist_root, val_size=5000, download=False)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    batch = dm.splits["train"].__getitems__([0, 1, 2])
    assert batch["x"].shape == (3, 1, 28, 28) and batch["x"].min() == -1 and batch["x"].max() == 1
    assert batch["label"].tolist() == [5, 0, 4]  # the first three MNIST training labels
    assert "cond" not in batch


def test_missing_files_name_the_path(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*data.root"):
        dm.prepare_data()


def test_index_stream_epochs_ranks_and_resume():
    full = IndexBatches(20, 4, seed=3)
    stream = iter(full)
    first = [next(stream) for _ in range(10)]  # two epochs of 5 batches
    assert sorted(torch.cat(first[:5]).tolist()) == list(range(20))
    assert not torch.equal(torch.cat(first[:5]), torch.cat(first[5:]))
    resumed = iter(IndexBatches(20, 4, seed=3, start=7))
    assert all(torch.equal(next(resumed), b) for b in first[7:])
    r0, r1 = (
        iter(IndexBatches(20, 4, seed=3, rank=0, world_size=2)),
        iter(IndexBatches(20, 4, seed=3, rank=1, world_size=2)),
    )
    seen = torch.cat([next(r0), next(r0), next(r1), next(r1)])
    assert sorted(seen.tolist()) == sorted(set(seen.tolist()))  # ranks never share an example in an epoch
    with pytest.raises(ValueError, match="data.batch_size"):
        IndexBatches(10, 8, world_size=2)
