"""Reader for the IDX files of MNIST-style datasets (LeCun et al.), gzipped or not.

An IDX file is a big-endian header (magic: 0, 0, dtype code, ndim; then ndim uint32 sizes) followed
by the raw array. Reading it directly keeps the read-only data folder untouched (no extraction).
"""

import gzip
import os
import zlib

import numpy as np
import torch

from vdiff.data.verify import unreadable

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> torch.Tensor:
    """The array of an IDX file; ValueError naming the file when it is not one, is cut short, or
    its gzip stream is broken (truncated, bad CRC)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise unreadable(path, e) from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    dtype = np.dtype(_DTYPES[data[2]])
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"data file {path} is cut short inside its IDX header; replace it with a fresh copy")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", ndim, offset=4))
    if len(data) < 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(
            f"data file {path} holds fewer values than its IDX header's shape {shape}; replace it with a fresh copy"
        )
    array = np.frombuffer(data, dtype, int(np.prod(shape)), offset=4 + 4 * ndim)
    return torch.from_numpy(array.reshape(shape).copy())


def find_idx(folder: str, stem: str) -> str | None:
    """The path of `stem` (e.g. 'train-images-idx3-ubyte') in folder, gzipped or not, else None."""
    for name in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None
