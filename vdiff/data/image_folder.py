"""A user's own images: every png, jpg / jpeg and webp file under a folder, decoded once into a cache.

`data=image_folder data.root=<dir>`. Files are found recursively (hidden files and folders are
skipped) and sorted by their path relative to root, so the dataset's order is the same on every
machine. Each image is turned upright by its EXIF orientation, converted to RGB (`channels: 3`;
transparency is laid on white) or greyscale (`channels: 1`), its short side resized to the stored
side S with Pillow's antialiased bicubic filter, and the centre S x S square cut out.

`crop`: `center` stores S = resolution and every batch shows the whole square. `random` stores
S = ceil(9/8 x resolution) (36 for 32) and each training batch takes a random resolution x
resolution window per example, while validation, the test split, metrics and reference images take
the centre one. The window is drawn per batch from a generator seeded by (seed, rank, batch number),
like the flips (`random_flip`), so a resumed run sees exactly the batches of a straight run. Random
windows of a slightly enlarged square rather than crops along the long side: a cached array needs
one size for every image, and a fixed crop chosen at cache time would be the same view in every
epoch, which augments nothing.

Labels: the index of an image's first-level subfolder among the sorted subfolder names. With
`conditional: true` they are batch["cond"], every image must lie in a subfolder, and the class names
are kept in the checkpoint (the datamodule's `state_dict`): resuming or measuring against a folder
whose classes differ is a ValueError naming data.root. sample.py needs no files to draw samples; the
number of classes comes from the checkpoint.

Splits: val = `val_size` images (else round(val_fraction x N), at least 1) chosen by the SHA-1 of
their relative paths, so the choice does not depend on the seed and mostly survives adding files;
train = the rest; "test" is the val split (a folder has no test split of its own).

The cache: one file `<cache_dir>/<folder>-<root hash>-<R>px-<C>ch-<crop>-<key>.pt` holding the uint8
array (N, C, S, S), the labels, the class names and the file list, where key hashes the sorted file
list with each file's size and modification time, the resolution, the channels and the crop. It is
reused while that key matches and rebuilt otherwise (the stale file of the same settings is removed).
`cache_dir: null` puts it beside the folder, in `<root>/../.vdiff_cache`, when that is writable (not
inside root, where other tools, torchvision's ImageFolder among them, would take it for a class),
else in vdiff's user cache (`$VDIFF_CACHE_DIR`, else `$XDG_CACHE_HOME/vdiff`, else `~/.cache/vdiff`). Decoding runs in this
process: a 32x32 PNG decodes in well under a millisecond, so worker processes on a 2-core machine
would save seconds once per dataset (JPEGs are decoded at a reduced scale with Pillow's `draft`).

Bad input: a missing root or one without images is a FileNotFoundError naming data.root; an image
Pillow cannot read or that is truncated is a ValueError naming the file, unless `skip_bad_files`,
which leaves it out and logs how many were skipped (at every start, from the cache too).
"""

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time

import torch
from PIL import Image, ImageOps

from vdiff.data.images import ImageDataModule, ImageSplit
from vdiff.data.verify import cache_dir as user_cache_dir

log = logging.getLogger("vdiff.data")

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
CACHE_VERSION = 1  # part of the key: a change in decoding invalidates every cache
ROOT_CLASS = "."  # the class name of images lying directly in root


def stored_side(resolution: int, crop: str) -> int:
    """S, the side of the cached squares: the resolution, or 9/8 of it for random windows."""
    return resolution if crop == "center" else math.ceil(resolution * 9 / 8)


def scan(root: str) -> list[tuple[str, int, int]]:
    """(path relative to root with `/` separators, size in bytes, mtime in ns) of every image under
    root, sorted by path; hidden files and folders are skipped. FileNotFoundError naming data.root
    when root is missing or holds no images."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.root={root} is not a folder: point data.root at a folder of images")
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or not name.lower().endswith(EXTENSIONS):
                continue
            path = os.path.join(folder, name)
            st = os.stat(path)
            found.append((os.path.relpath(path, root).replace(os.sep, "/"), st.st_size, st.st_mtime_ns))
    if not found:
        raise FileNotFoundError(
            f"data.root={root} holds no images ({', '.join(e[1:] for e in EXTENSIONS)} files, searched recursively)"
        )
    return sorted(found)


def class_of(relpath: str) -> str:
    """An image's class: its first-level subfolder, or ROOT_CLASS for an image directly in root."""
    return relpath.split("/", 1)[0] if "/" in relpath else ROOT_CLASS


def decode(path: str, side: int, channels: int) -> torch.Tensor:
    """One image file as uint8 (C, side, side): short side resized to `side` (antialiased bicubic),
    then the centre square. Raises whatever Pillow raises for an unreadable or truncated file."""
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB" if channels == 3 else "L", (side, side))  # DCT-domain downscale, both sides stay >= side
        img.load()  # decodes everything now: a truncated file fails here, not later
        img = ImageOps.exif_transpose(img)  # a phone photo's EXIF rotation, as viewers show it
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        img = img.convert("RGB" if channels == 3 else "L")
        w, h = img.size
        scale = side / min(w, h)
        size = (side, max(side, round(h * scale))) if w <= h else (max(side, round(w * scale)), side)
        if size != (w, h):
            img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
        left, top = (size[0] - side) // 2, (size[1] - side) // 2
        img = img.crop((left, top, left + side, top + side))
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return x.view(side, side, channels).permute(2, 0, 1).contiguous()


def cache_key(files: list[tuple[str, int, int]], resolution: int, channels: int, crop: str) -> str:
    text = json.dumps(
        {"version": CACHE_VERSION, "files": files, "resolution": resolution, "channels": channels, "crop": crop}
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def val_indices(relpaths: list[str], n_val: int) -> torch.Tensor:
    """The sorted indices of the n_val paths of lowest SHA-1: a split fixed by the file names alone."""
    order = sorted(range(len(relpaths)), key=lambda i: hashlib.sha1(relpaths[i].encode()).hexdigest())
    return torch.tensor(sorted(order[:n_val]), dtype=torch.long)


class ImageFolderDataModule(ImageDataModule):
    def __init__(
        self,
        root: str,
        resolution: int = 32,
        channels: int = 3,
        crop: str = "center",
        random_flip: bool = True,
        conditional: bool = False,
        val_fraction: float = 0.05,
        val_size: int | None = None,
        cache_dir: str | None = None,
        skip_bad_files: bool = False,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
    ):
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            on_device=on_device,
            conditional=conditional,
            seed=seed,
        )
        if channels not in (1, 3):
            raise ValueError(f"data.channels={channels} must be 1 (greyscale) or 3 (RGB)")
        if crop not in ("center", "random"):
            raise ValueError(f"data.crop={crop!r} must be center or random")
        if resolution < 1:
            raise ValueError(f"data.resolution={resolution} must be a positive number of pixels")
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction={val_fraction} must lie in (0, 1)")
        self.root = os.path.abspath(os.path.expanduser(str(root)))
        self.resolution = resolution
        self.channels = channels
        self.crop = crop
        self.random_flip = random_flip
        self.val_fraction = val_fraction
        self.val_size = val_size
        self.cache_dir = cache_dir
        self.skip_bad_files = skip_bad_files
        self.shape = (channels, resolution, resolution)
        self.cache_path: str | None = None  # the cache file in use, once prepared
        self.skipped: list[str] = []  # files left out by skip_bad_files
        self._data: dict | None = None

    # --- the cache ----------------------------------------------------------------------------------

    def _cache_folder(self) -> str:
        if self.cache_dir is not None:
            folder = os.path.abspath(os.path.expanduser(str(self.cache_dir)))
            if not _writable_dir(folder):
                raise ValueError(f"data.cache_dir={self.cache_dir} cannot be created or written")
            return folder
        beside = os.path.join(os.path.dirname(self.root), ".vdiff_cache")
        if os.access(os.path.dirname(self.root), os.W_OK) and _writable_dir(beside):
            return beside
        fallback = os.path.join(user_cache_dir(), "image_folder")
        if not _writable_dir(fallback):
            raise ValueError(
                f"data.root={self.root} is read-only and {fallback} cannot be written: set data.cache_dir to a writable folder"
            )
        return fallback

    def _prefix(self) -> str:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(self.root.rstrip("/")) or "root")
        root_hash = hashlib.sha1(self.root.encode()).hexdigest()[:8]
        return f"{name}-{root_hash}-{self.resolution}px-{self.channels}ch-{self.crop}-"

    def _build(self, files: list[tuple[str, int, int]]) -> dict:
        side = stored_side(self.resolution, self.crop)
        start = time.perf_counter()
        log.info("decoding %d images under %s into a %dx%d cache (once)", len(files), self.root, side, side)
        images, kept, skipped = [], [], []
        for rel, _, _ in files:
            try:
                images.append(decode(os.path.join(self.root, rel), side, self.channels))
                kept.append(rel)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                if not self.skip_bad_files:
                    raise ValueError(
                        f"{os.path.join(self.root, rel)} cannot be read as an image ({type(e).__name__}: {e}); "
                        "replace or remove it, or set data.skip_bad_files=true"
                    ) from e
                skipped.append(rel)
        if not kept:
            raise FileNotFoundError(f"data.root={self.root}: none of its {len(files)} image files can be read")
        names = [class_of(r) for r in kept]
        classes = sorted(set(names))
        index = {c: i for i, c in enumerate(classes)}
        log.info("decoded %d images in %.1f s", len(kept), time.perf_counter() - start)
        return {
            "images": torch.stack(images),
            "labels": torch.tensor([index[c] for c in names], dtype=torch.long),
            "classes": classes,
            "files": kept,
            "skipped": skipped,
        }

    def _load_or_build(self) -> dict:
        files = scan(self.root)
        key = cache_key(files, self.resolution, self.channels, self.crop)
        folder = self._cache_folder()
        path = os.path.join(folder, f"{self._prefix()}{key[:16]}.pt")
        data = None
        if os.path.isfile(path):
            try:
                data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                if data.get("key") != key:
                    data = None
            except Exception:  # a cache cut short by a crash: rebuild it
                data = None
        if data is None:
            data = self._build(files)
            data["key"] = key
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
            os.close(fd)
            try:
                torch.save(data, tmp)
                os.replace(tmp, path)  # atomic: another process never reads half a file
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            for name in os.listdir(folder):  # the same settings' cache of an older file list
                if name.startswith(self._prefix()) and os.path.join(folder, name) != path:
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(folder, name))
            log.info("image cache written to %s", path)
        elif data["skipped"] and not self.skip_bad_files:
            bad = os.path.join(self.root, data["skipped"][0])
            raise ValueError(
                f"{bad} cannot be read as an image (left out of the cache {path} by data.skip_bad_files=true); "
                "replace or remove it, or set data.skip_bad_files=true"
            )
        self.cache_path = path
        return data

    # --- the DataModule -----------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Scan root, decode into the cache (or reuse it) and check the classes: every bad input fails here."""
        self._prepare()

    def _prepare(self) -> None:
        if self._data is not None:
            return
        data = self._load_or_build()
        self.skipped = list(data["skipped"])
        if self.skipped:
            log.warning(
                "data.skip_bad_files: skipped %d unreadable image(s) under %s, e.g. %s",
                len(self.skipped),
                self.root,
                self.skipped[0],
            )
        n = len(data["labels"])
        if self.conditional and ROOT_CLASS in data["classes"]:
            first = next(f for f in data["files"] if class_of(f) == ROOT_CLASS)
            raise ValueError(
                f"data.conditional=true takes classes from the subfolders of data.root={self.root}, but "
                f"{os.path.join(self.root, first)} lies directly in it; move it into a class folder or set data.conditional=false"
            )
        n_val = self.val_size if self.val_size is not None else max(1, round(self.val_fraction * n))
        if not 1 <= n_val < n:
            raise ValueError(
                f"data.val_size={n_val} leaves no training images of the {n} under data.root={self.root}"
                if self.val_size is not None
                else f"data.root={self.root} holds {n} image(s): at least 2 are needed for a train and a val split"
            )
        if self.batch_size > n - n_val:
            raise ValueError(
                f"data.batch_size={self.batch_size} exceeds the {n - n_val} training images under data.root={self.root}"
            )
        self.class_names = list(data["classes"])
        self.check_classes()
        self._data = data
        self._n_val = n_val

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self._prepare()
        data = self._data
        val = val_indices(data["files"], self._n_val)
        train = torch.ones(len(data["labels"]), dtype=torch.bool)
        train[val] = False
        split = {"crop_size": self.resolution, "seed": self.seed}
        self.splits = {
            "train": ImageSplit(
                data["images"][train], data["labels"][train], self.conditional, flip=self.random_flip, **split
            ),
            "val": ImageSplit(data["images"][val], data["labels"][val], self.conditional, **split),
        }
        self.splits["test"] = self.splits["val"]
