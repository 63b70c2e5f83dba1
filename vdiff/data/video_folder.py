"""A folder of your own videos as training clips (`data=video_folder data.root=<dir>`).

Videos are mp4 / webm / mkv / mov / avi files (PyAV), GIFs, or folders of frame images (png / jpg,
sorted by name), anywhere under data.root (vdiff/data/video_files.py). Every frame is resized on
its short side to `resolution` and centre-cropped square, as grayscale (`channels: 1`) or RGB (3).
All frames are decoded once, at start-up, into one uint8 array that a cache file keeps for the next
run with the same files and settings.

A clip is `frames` frames taken every `frame_stride` frames from any start in a video: the training
split is the deterministic index of every (video, start) pair, shuffled per epoch by
`vdiff.data.batches.IndexBatches`, so batch k is a pure function of (seed, k) and a resumed run sees
exactly the batches a straight run would have. About `val_fraction` of the videos (spread over the
name order, within each class) are held out: val and test clips (test = val) are their
non-overlapping clips, taken round-robin over the videos so the first N clips cover as many videos
as they can; `reference_clips("train")` takes the training videos the same way.

With `conditional: true` each first-level subfolder of data.root is a class (sorted names); the class
names are in `state_dict()`, so a checkpoint carries them, and resuming on a folder with other classes
is a ValueError naming data.root.

Batch: {"x": (B, C, T, R, R) float in [-1, 1], and with `conditional` "label" and "cond" (B,) long}.
"""

import logging

import lightning as L
import torch
from torch.utils.data import DataLoader

from vdiff.contracts import DataDefaults
from vdiff.data.batches import IndexBatches, batches_done, eval_loader, loader_batches
from vdiff.data.frame_clips import FrameClips, held_out
from vdiff.data.video_files import find_videos, load_videos
from vdiff.outputs import log_video, write_video

log = logging.getLogger(__name__)


class VideoFolderDataModule(DataDefaults, L.LightningDataModule):
    def __init__(
        self,
        root: str | None = None,
        frames: int = 8,
        frame_stride: int = 1,
        resolution: int = 32,
        channels: int = 1,
        conditional: bool = False,
        skip_bad_files: bool = False,
        max_frames: int | None = None,
        val_fraction: float = 0.1,
        max_eval_clips: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        cache: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if not root:
            raise ValueError("data.root is not set: point it at the folder of your videos (data.root=<dir>)")
        for key, value, least in (
            ("frames", frames, 1),
            ("frame_stride", frame_stride, 1),
            ("resolution", resolution, 1),
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if value < least:
                raise ValueError(f"data.{key}={value} must be at least {least}")
        if channels not in (1, 3):
            raise ValueError(f"data.channels={channels} must be 1 (grayscale) or 3 (RGB)")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"data.val_fraction={val_fraction} must lie in [0, 1)")
        self.need = (frames - 1) * frame_stride + 1  # frames of a video one clip spans
        if max_frames is not None and max_frames < self.need:
            raise ValueError(
                f"data.max_frames={max_frames} is below the {self.need} frames one clip spans "
                f"(data.frames={frames}, data.frame_stride={frame_stride})"
            )
        if max_eval_clips is not None and max_eval_clips < 1:
            raise ValueError(f"data.max_eval_clips={max_eval_clips} must be at least 1 or null")
        self.root = root
        self.num_frames = frames
        self.frame_stride = frame_stride
        self.size = resolution
        self.channels = channels
        self.conditional = conditional
        self.skip_bad_files = skip_bad_files
        self.max_frames = max_frames
        self.val_fraction = val_fraction
        self.max_eval_clips = max_eval_clips
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.seed = seed
        self.shape = (channels, frames, resolution, resolution)  # of one example, (C, T, H, W)
        self.num_classes: int | None = None
        self.class_names: list[str] | None = None  # from the folder (prepare_data) or a checkpoint
        self.decoded = None  # vdiff.data.video_files.Decoded, once prepare_data has run
        self.skipped = 0  # videos skipped with skip_bad_files
        self.splits: dict[str, FrameClips] = {}

    # -- reading the folder ------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Lists and decodes the videos (or reads the cache): FileNotFoundError / ValueError naming
        data.root or the bad file."""
        if self.decoded is not None:
            return
        videos, classes = find_videos(self.root, self.conditional)
        if self.class_names is not None and classes != self.class_names:  # a checkpoint's classes came first
            self._check_classes(self.class_names, classes)
        self.videos = videos
        self._adopt_classes(classes)
        self.decoded = load_videos(
            self.root,
            videos,
            resolution=self.size,
            channels=self.channels,
            need=self.need,
            max_frames=self.max_frames,
            skip_bad_files=self.skip_bad_files,
            describe_need=f"data.frames={self.num_frames} x data.frame_stride={self.frame_stride}",
            use_cache=self.cache,
        )
        self.skipped = len(self.decoded.bad) + len(self.decoded.short)
        if self.skipped:
            log.warning(
                "data.root=%s: skipped %d of %d videos (%d unreadable, %d too short)",
                self.root,
                self.skipped,
                len(videos),
                len(self.decoded.bad),
                len(self.decoded.short),
            )

    def _adopt_classes(self, classes: list[str] | None) -> None:
        self.class_names = classes
        self.num_classes = len(classes) if self.conditional and classes else None

    def _conditional_changed(self, stored: list[str] | None) -> ValueError:
        return ValueError(
            f"data.conditional={str(self.conditional).lower()}, but the checkpoint was trained "
            f"{'with' if stored else 'without'} class labels; use the checkpoint's data.conditional"
        )

    def _check_classes(self, stored: list[str] | None, found: list[str] | None) -> None:
        if stored == found:
            return
        if not found or not stored:  # one of them has no classes
            raise self._conditional_changed(stored)
        raise ValueError(
            f"data.root={self.root} holds the classes {found}, but the checkpoint was trained on {stored}; "
            "resume with the same class subfolders"
        )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.prepare_data()
        d = self.decoded
        frames = torch.from_numpy(d.frames)
        starts = torch.tensor([0, *d.lengths]).cumsum(0)[:-1].tolist()  # first frame of each kept video
        labels = [self.videos[i].label for i in d.kept]
        groups: dict[int, list[int]] = {}
        for j, label in enumerate(labels):  # kept videos of each class (one group when unconditional)
            groups.setdefault(label, []).append(j)
        val = {g[i] for g in groups.values() for i in held_out(len(g), self.val_fraction)}
        train = [j for j in range(len(labels)) if j not in val]
        if not val:
            log.warning(
                "data.root=%s: too few videos to hold any out (data.val_fraction=%s); validating on training videos",
                self.root,
                self.val_fraction,
            )
            val = set(train)
        clip = lambda j, s: (starts[j] + s, labels[j])
        every = [clip(j, s) for j in train for s in range(d.lengths[j] - self.need + 1)]
        self.splits = {
            "train": self._clips(frames, every),
            "reference": self._clips(frames, self._round_robin(train, d.lengths, clip)),
            "val": self._clips(frames, self._round_robin(sorted(val), d.lengths, clip)[: self.max_eval_clips]),
        }
        self.splits["test"] = self.splits["val"]
        log.info(
            "data.root=%s: %d videos (%d held out for val / test), %d training clips, %d val clips%s",
            self.root,
            len(labels),
            len(val) if val != set(train) else 0,
            len(self.splits["train"]),
            len(self.splits["val"]),
            " (frames read from the cache)" if d.from_cache else "",
        )

    def _round_robin(self, videos: list[int], lengths: list[int], clip) -> list[tuple[int, int]]:
        """Non-overlapping clips of the videos: the first clip of each video, then the second of each, ..."""
        per_video = [[clip(j, s) for s in range(0, lengths[j] - self.need + 1, self.need)] for j in videos]
        return [c for row in range(max(map(len, per_video))) for c in (v[row] for v in per_video if row < len(v))]

    def _clips(self, frames: torch.Tensor, clips: list[tuple[int, int]]) -> FrameClips:
        first = torch.tensor([c[0] for c in clips], dtype=torch.long)
        labels = torch.tensor([c[1] for c in clips], dtype=torch.long) if self.conditional else None
        return FrameClips(frames, first, self.num_frames, self.frame_stride, labels)

    # -- contract members ---------------------------------------------------------------------

    def info(self) -> dict:
        if self.conditional and self.class_names is None:
            self.prepare_data()
        return {
            "num_frames": self.num_frames,
            "size": self.size,
            "channels": self.channels,
            "num_classes": self.num_classes,
        }

    def label_names(self) -> list[str] | None:
        """The names of labels 0..K-1 (the class folders, or the checkpoint's); None when unconditional."""
        return list(self.class_names) if self.conditional and self.class_names else None

    def state_dict(self) -> dict:
        return {"class_names": self.class_names if self.conditional else None}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's class names: checked against the folder's when it was read, else adopted
        (sample.py needs no videos)."""
        stored = state.get("class_names")
        if self.decoded is not None:  # the folder was read first
            self._check_classes(stored, self.class_names if self.conditional else None)
        elif (stored is not None) != self.conditional:
            raise self._conditional_changed(stored)
        else:
            self._adopt_classes(stored)

    def reference_clips(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The first n clips of a split as float (N, C, T, H, W) in [0, 1] (train: the training videos'
        non-overlapping clips, round-robin over the videos)."""
        self.setup()
        clips = self.splits["reference" if split == "train" else split]
        idx = torch.arange(len(clips))[:n]
        return torch.cat([clips.clips(i).float() / 255 for i in idx.split(self.eval_batch_size)])

    def reference_labels(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The (N,) long classes of `reference_clips(split, n)`."""
        self.setup()
        clips = self.splits["reference" if split == "train" else split]
        if clips.labels is None:
            raise ValueError("data.conditional=false: these videos have no labels; set data.conditional=true")
        return clips.labels[:n]

    def reference_images(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The frames of the first n clips, flattened to float (N * T, C, H, W) in [0, 1]."""
        return self.reference_clips(split, n).transpose(1, 2).flatten(0, 1)

    def write_samples(self, samples: torch.Tensor, out_dir: str) -> list[str]:
        return write_video(samples, out_dir)

    def log_samples(self, trainer, samples: torch.Tensor) -> None:
        log_video(trainer, samples)

    # -- loaders ------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        split = self.splits["train"]
        index = IndexBatches(
            len(split), self.batch_size, seed=self.seed, rank=rank, world_size=world, start=batches_done(trainer)
        )
        return loader_batches(index, split, self.num_workers, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        return eval_loader(self.splits["val"], self.eval_batch_size, self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return eval_loader(self.splits["test"], self.eval_batch_size, self.num_workers)
