"""Clips cut from one decoded array of video frames (a video folder's, vdiff/data/video_folder.py):
the dataset that indexes them, and which videos are held out for val / test."""

import math

import torch


class FrameClips(torch.utils.data.Dataset):
    """Clips of `num_frames` frames every `stride` frames starting at frame `first[i]` of the uint8
    (F, C, R, R) `frames`; `__getitems__` fetches a whole batch."""

    def __init__(self, frames: torch.Tensor, first: torch.Tensor, num_frames: int, stride: int, labels=None):
        self.frames = frames
        self.first = first
        self.offsets = torch.arange(num_frames) * stride
        self.labels = labels

    def __len__(self) -> int:
        return len(self.first)

    def clips(self, idx) -> torch.Tensor:
        """uint8 (B, C, T, R, R)."""
        frames = self.frames[self.first[torch.as_tensor(idx)][:, None] + self.offsets]  # (B, T, C, R, R)
        return frames.transpose(1, 2)

    def __getitems__(self, idx) -> dict:
        idx = torch.as_tensor(idx)
        batch = {"x": self.clips(idx).float() / 127.5 - 1}
        if self.labels is not None:
            batch["label"] = self.labels[idx]
            batch["cond"] = batch["label"]
        return batch

    def __getitem__(self, i):
        return self.__getitems__([i])


def held_out(n: int, fraction: float) -> list[int]:
    """Which of n videos (in name order) to hold out: round(fraction * n), at least one when n >= 2,
    spread evenly over the order."""
    if fraction <= 0 or n < 2:
        return []
    k = min(n - 1, max(1, round(fraction * n)))
    return sorted({math.floor((j + 0.5) * n / k) for j in range(k)})
