"""Finding and decoding a user's videos: mp4 / webm / mkv / mov / avi files (PyAV), GIFs (Pillow) and
folders of frame images (png / jpg, sorted by name), each frame resized on its short side to the
resolution and centre-cropped square, as uint8 (T, C, R, R) with C = 1 (grayscale) or 3 (RGB).

`find_videos(root, conditional)` lists the videos under a folder; `decode(video, ...)` reads one,
raising `BadVideo` (a ValueError naming the file) when it cannot be read or stops short of the frame
count its container declares. `load_videos` decodes a whole list once and keeps the frames in a cache
file under `cache_dir()/video_folder/`, keyed by the files (paths, sizes, mtimes) and every setting
that changes what is kept (resolution, channels, frames needed, max_frames, skip_bad_files), so an
unchanged folder is read back without decoding and any change rebuilds it.
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from vdiff.data.verify import cache_dir

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")
GIF_EXTS = (".gif",)
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
CACHE_VERSION = 1  # bump when the decoding changes, so old cache files are not reused


class BadVideo(ValueError):
    """A video (or one frame image of a frame folder) that cannot be read, in one sentence naming it."""


@dataclass(frozen=True)
class Video:
    path: str  # a video or GIF file, or a folder of frame images
    rel: str  # its path under root, as shown in messages and stored in the cache's key
    label: int  # index of its first-level subfolder in the class list (conditional), else -1


def _visible(names: list[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("."))


def _frame_images(folder: str) -> list[str]:
    return [n for n in _visible(os.listdir(folder)) if n.lower().endswith(IMAGE_EXTS)]


def _scan(folder: str, root: str) -> list[str]:
    """Videos under `folder`: video and GIF files, and every folder holding frame images, in name order."""
    found = []
    if _frame_images(folder) and folder != root:
        found.append(folder)
    for name in _visible(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            found += _scan(path, root)
        elif name.lower().endswith(VIDEO_EXTS + GIF_EXTS):
            found.append(path)
    return found


def find_videos(root: str, conditional: bool) -> tuple[list[Video], list[str] | None]:
    """(the videos under root in name order, the class names or None). With `conditional` each
    first-level subfolder of root is a class (sorted names), and every video must lie in one."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.root={root} is not a folder; point data.root at the folder holding your videos")
    if _frame_images(root):  # root itself is one clip as frame images
        if conditional:
            raise ValueError(
                f"data.root={root} holds frame images directly; with data.conditional=true put each class's videos "
                "in a subfolder of data.root named after the class"
            )
        paths = [root]
    else:
        paths = _scan(root, root)
    if not paths:
        raise FileNotFoundError(
            f"data.root={root} holds no videos ({', '.join(VIDEO_EXTS + GIF_EXTS)} files, or folders of "
            f"{', '.join(IMAGE_EXTS)} frames)"
        )
    rels = [os.path.relpath(p, root) for p in paths]
    if not conditional:
        return [Video(p, r, -1) for p, r in zip(paths, rels)], None
    loose = [r for r in rels if os.sep not in r]
    if loose:
        raise ValueError(
            f"data.conditional=true reads classes from the subfolders of data.root={root}, but {loose[0]} lies "
            "directly in it; move each video into the subfolder of its class"
        )
    classes = sorted({r.split(os.sep, 1)[0] for r in rels})
    if len(classes) < 2:
        raise ValueError(
            f"data.conditional=true needs at least 2 class subfolders in data.root={root}, found {len(classes)}"
        )
    index = {c: i for i, c in enumerate(classes)}
    return [Video(p, r, index[r.split(os.sep, 1)[0]]) for p, r in zip(paths, rels)], classes


def square(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """uint8 (C, R, R): the image resized (antialiased) so its short side is R, centre-cropped to R x R."""
    image = image.convert("L" if channels == 1 else "RGB")
    w, h = image.size
    scale = resolution / min(w, h)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    if size != (w, h):
        image = image.resize(size, Image.Resampling.BICUBIC)
    left = (size[0] - resolution) // 2
    top = (size[1] - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _decode_container(path: str, resolution: int, channels: int, max_frames: int | None) -> list[np.ndarray]:
    try:
        import av
    except ImportError as e:  # an optional dependency (pyproject's `video` extra)
        raise BadVideo(f"{path}: decoding video files needs PyAV; pip install av (or convert to frame folders)") from e
    frames = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise BadVideo(f"{path} holds no video stream")
            stream = container.streams.video[0]
            declared = stream.frames or 0
            for frame in container.decode(stream):
                frames.append(square(frame.to_image(), resolution, channels))
                if max_frames is not None and len(frames) >= max_frames:
                    return frames
    except BadVideo:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as e:
        raise BadVideo(f"{path} cannot be decoded ({type(e).__name__}: {e}); it may be truncated or corrupt") from e
    if declared and len(frames) < declared:
        raise BadVideo(f"{path} is truncated: it declares {declared} frames but only {len(frames)} decode")
    return frames


def _decode_gif(path: str, resolution: int, channels: int, max_frames: int | None) -> list[np.ndarray]:
    frames = []
    try:
        with Image.open(path) as image:
            for frame in ImageSequence.Iterator(image):
                frames.append(square(frame, resolution, channels))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (OSError, UnidentifiedImageError, ValueError, EOFError) as e:
        raise BadVideo(f"{path} cannot be decoded ({type(e).__name__}: {e}); it may be truncated or corrupt") from e
    return frames


def _decode_folder(path: str, resolution: int, channels: int, max_frames: int | None) -> list[np.ndarray]:
    frames = []
    for name in _frame_images(path)[:max_frames]:
        file = os.path.join(path, name)
        try:
            with Image.open(file) as image:
                image.load()
                frames.append(square(image, resolution, channels))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise BadVideo(f"{file} (a frame of {path}) cannot be read ({type(e).__name__}: {e})") from e
    return frames


def decode(path: str, resolution: int, channels: int, max_frames: int | None = None) -> np.ndarray:
    """uint8 (T, C, R, R): every frame of a video file, GIF or frame folder (the first max_frames)."""
    if os.path.isdir(path):
        frames = _decode_folder(path, resolution, channels, max_frames)
    elif path.lower().endswith(GIF_EXTS):
        frames = _decode_gif(path, resolution, channels, max_frames)
    else:
        frames = _decode_container(path, resolution, channels, max_frames)
    if not frames:
        raise BadVideo(f"{path} holds no frames")
    return np.stack(frames)


def _stat(video: Video) -> list:
    """What identifies a video's content for the cache: its size and mtime (of every frame for a folder)."""
    if not os.path.isdir(video.path):
        st = os.stat(video.path)
        return [st.st_size, st.st_mtime_ns]
    return [
        [n, os.stat(os.path.join(video.path, n)).st_size, os.stat(os.path.join(video.path, n)).st_mtime_ns]
        for n in _frame_images(video.path)
    ]


@dataclass
class Decoded:
    frames: np.ndarray  # uint8 (total frames, C, R, R): the kept videos one after another
    lengths: list[int]  # frames of each kept video
    kept: list[int]  # index in the video list of each kept video
    bad: list[str]  # videos skipped as unreadable (skip_bad_files), by path under root
    short: list[str]  # videos skipped as shorter than a clip (skip_bad_files)
    from_cache: bool  # read back from the cache file without decoding


def cache_key(root: str, videos: list[Video], settings: dict) -> str:
    stats = [[v.rel, v.label, _stat(v)] for v in videos]
    text = json.dumps([CACHE_VERSION, os.path.abspath(root), stats, settings], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_videos(
    root: str,
    videos: list[Video],
    *,
    resolution: int,
    channels: int,
    need: int,
    max_frames: int | None,
    skip_bad_files: bool,
    describe_need: str,
    use_cache: bool = True,
) -> Decoded:
    """Every video decoded (or read back from the cache). A video that cannot be read, or has fewer
    than `need` frames, is a ValueError naming it, or is skipped and counted with skip_bad_files."""
    settings = {
        "resolution": resolution,
        "channels": channels,
        "need": need,
        "max_frames": max_frames,
        "skip_bad_files": skip_bad_files,
    }
    path = os.path.join(cache_dir(), "video_folder", cache_key(root, videos, settings))
    if use_cache and os.path.isfile(path + ".json") and os.path.isfile(path + ".npy"):
        try:
            with open(path + ".json", encoding="utf-8") as f:
                meta = json.load(f)
            frames = np.load(path + ".npy")
            if len(frames) == sum(meta["lengths"]):
                return Decoded(frames, meta["lengths"], meta["kept"], meta["bad"], meta["short"], from_cache=True)
        except (OSError, ValueError, KeyError) as e:
            log.warning("video cache %s is unreadable (%s); decoding again", path, e)
    arrays, lengths, kept, bad, short = [], [], [], [], []
    for i, video in enumerate(videos):
        try:
            clip = decode(video.path, resolution, channels, max_frames)
        except BadVideo:
            if not skip_bad_files:
                raise
            log.warning("data.skip_bad_files: skipping %s, which cannot be read", video.path)
            bad.append(video.rel)
            continue
        if len(clip) < need:
            if not skip_bad_files:
                raise ValueError(
                    f"{video.path} has {len(clip)} frames, fewer than the {need} a clip needs ({describe_need}); "
                    "lower them, or set data.skip_bad_files=true to skip such videos"
                )
            log.warning("data.skip_bad_files: skipping %s (%d frames, fewer than %d)", video.path, len(clip), need)
            short.append(video.rel)
            continue
        arrays.append(clip)
        lengths.append(len(clip))
        kept.append(i)
    if not arrays:
        raise FileNotFoundError(
            f"data.root={root}: none of its {len(videos)} videos is usable ({len(bad)} unreadable, {len(short)} "
            f"shorter than the {need} frames a clip needs)"
        )
    frames = np.concatenate(arrays)
    if use_cache:
        _write_cache(path, frames, {"lengths": lengths, "kept": kept, "bad": bad, "short": short})
    return Decoded(frames, lengths, kept, bad, short, from_cache=False)


def _write_cache(path: str, frames: np.ndarray, meta: dict) -> None:
    """Frames then metadata, each written to a temporary file and renamed, so a reader never sees half."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp + ".npy", "wb") as f:
            np.save(f, frames)
        os.replace(tmp + ".npy", path + ".npy")
        with open(tmp + ".json", "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(tmp + ".json", path + ".json")
    except OSError as e:
        log.warning("could not write the video cache %s (%s); the videos will be decoded again next time", path, e)
