"""Known data files checked against their published checksums on first use.

`PUBLISHED` maps a file's path under the data root to (algorithm, digest): the MD5s torchvision
checks for the MNIST and Fashion-MNIST downloads (`torchvision.datasets.MNIST.resources`,
`FashionMNIST.resources`) and the SHA-256 of the text corpora as the shared data folder publishes
them (its SHA256SUMS). A file that matches is remembered by a marker file in a user-writable cache
(`$VDIFF_CACHE_DIR`, else `$XDG_CACHE_HOME/vdiff`, else `~/.cache/vdiff`), keyed by the file's
absolute path, size, mtime and ctime and the expected digest, so later runs only stat it; the data
folder itself may be read-only and is never written. A file that differs, or cannot be read, raises
ValueError naming it. Files not in the table (a user's own corpus) are not checked here.
"""

import hashlib
import os

PUBLISHED = {
    "MNIST/raw/train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "MNIST/raw/train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
    "MNIST/raw/t10k-images-idx3-ubyte.gz": ("md5", "9fb629c4189551a2d022fa330f9573f3"),
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": ("md5", "ec29112dd5afa0611ce80d1b7f02629c"),
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
    "text/tinyshakespeare.txt": ("sha256", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    "text/kjv.txt": ("sha256", "b5c4940bcfeee072c0935b5200d0f9d88a00a0199cb0961d16133458fcdfae5d"),
}


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("VDIFF_CACHE_DIR") or os.path.join(base, "vdiff")


def unreadable(path: str, error: BaseException) -> ValueError:
    """The one-sentence error for a data file that cannot be read."""
    return ValueError(
        f"data file {path} cannot be read ({type(error).__name__}: {error}); replace it with a fresh copy"
    )


def file_digest(path: str, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise unreadable(path, e) from e
    return digest.hexdigest()


def _marker(path: str, expected: str) -> str:
    st = os.stat(path)
    key = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{expected}"
    return os.path.join(cache_dir(), "verified", hashlib.sha256(key.encode()).hexdigest())


def verify(path: str, name: str) -> None:
    """Check the file at `path`, known under the data root as `name` (e.g. MNIST/raw/...gz),
    against its published checksum; nothing to do for a name not in `PUBLISHED`."""
    name = os.path.normpath(name).replace(os.sep, "/")
    if name not in PUBLISHED:
        return
    algorithm, expected = PUBLISHED[name]
    marker = _marker(path, expected)
    if os.path.isfile(marker):
        return
    if file_digest(path, algorithm) != expected:
        raise ValueError(
            f"data file {path} is corrupt or altered: its {algorithm.upper()} differs from the published one of "
            f"{name}; replace it with a fresh copy"
        )
    try:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w") as f:
            f.write(os.path.abspath(path) + "\n")
    except OSError:
        pass  # no writable cache: the file is checked again next time
