"""Writing generated samples to a folder: what `sample.py` leaves behind for each kind of data.

A datamodule names its writer through `write_samples(samples, out_dir)`; these are the writers.
Images are (N, C, H, W), videos (N, C, T, H, W), both in [0, 1]; text is (N, L) token ids.
"""

import importlib.util
import json
import math
import os

import torch
from einops import rearrange
from PIL import Image
from torchvision.utils import make_grid, save_image


def write_images(samples: torch.Tensor, out_dir: str) -> list[str]:
    """samples (N, C, H, W) in [0, 1] -> samples.pt (the tensor) and samples.png (a grid of up to 256)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "samples.pt"), os.path.join(out_dir, "samples.png")]
    torch.save(samples, paths[0])
    grid = samples[:256]
    save_image(grid, paths[1], nrow=math.ceil(math.sqrt(len(grid))), padding=2, pad_value=1.0)
    return paths


def write_text(samples: torch.Tensor, texts: list[str], out_dir: str) -> list[str]:
    """samples (N, L) token ids and their decoded texts -> samples.txt (one sample per block, separated
    by a rule) and samples.json ({"ids": [[...]], "text": [...]})."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "samples.txt"), os.path.join(out_dir, "samples.json")]
    with open(paths[0], "w", encoding="utf-8") as f:
        f.write(format_texts(texts))
    with open(paths[1], "w", encoding="utf-8") as f:
        json.dump({"ids": samples.tolist(), "text": texts}, f)
    return paths


def format_texts(texts: list[str]) -> str:
    return "".join(f"===== sample {i} =====\n{t}\n" for i, t in enumerate(texts))


MAX_CLIPS = 16  # clips shown in a video's png grid and gif


def write_video(samples: torch.Tensor, out_dir: str, fps: int = 4) -> list[str]:
    """samples (N, C, T, H, W) in [0, 1] -> samples.pt (the tensor), samples.png (one row per clip,
    one column per frame, up to 16 clips), samples.gif (looping; frame t is a grid of up to 16 clips
    at time t, upscaled to be viewable) and, when PyAV is installed, samples.mp4 (the same frames)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"samples.{ext}") for ext in ("pt", "png", "gif")]
    torch.save(samples, paths[0])
    save_image(frame_grid(samples), paths[1])
    frames = video_frames(samples)
    write_gif(frames, paths[2], fps)
    if importlib.util.find_spec("av") is not None:
        paths.append(os.path.join(out_dir, "samples.mp4"))
        write_mp4(frames, paths[3], fps)
    return paths


def frame_grid(samples: torch.Tensor, max_clips: int = MAX_CLIPS) -> torch.Tensor:
    """(N, C, T, H, W) -> (C, H', W') grid of the first max_clips clips: clip i in row i, frame t in column t."""
    clips = samples[:max_clips].float().cpu()
    return make_grid(rearrange(clips, "n c t h w -> (n t) c h w"), nrow=clips.shape[2], padding=2, pad_value=1.0)


def video_frames(samples: torch.Tensor, max_clips: int = MAX_CLIPS, min_size: int = 256) -> list[Image.Image]:
    """One PIL image per time step: a square-ish grid of the first max_clips clips at that step,
    upscaled by a whole factor (nearest neighbour) until its larger side is at least min_size
    pixels and cropped to even sides (what H.264 asks). Grayscale clips give 'L' images, others RGB."""
    clips = samples[:max_clips].float().cpu().clamp(0, 1)
    n, c, t = clips.shape[:3]
    grids = torch.stack(
        [make_grid(clips[:, :, i], nrow=math.ceil(math.sqrt(n)), padding=2, pad_value=1.0) for i in range(t)]
    )
    scale = max(1, math.ceil(min_size / max(grids.shape[-2:])))
    grids = grids.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    h, w = grids.shape[-2:]
    grids = (grids[..., : h - h % 2, : w - w % 2] * 255).round().to(torch.uint8)
    if c == 1:
        return [Image.fromarray(g[0].numpy()) for g in grids]
    return [Image.fromarray(rearrange(g[:3], "c h w -> h w c").numpy()) for g in grids]


def write_gif(frames: list[Image.Image], path: str, fps: int = 4) -> str:
    """A GIF that loops forever at fps frames per second. Pillow merges identical consecutive frames
    into one longer frame, so a clip standing still has fewer GIF frames but the same duration."""
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return path


def write_mp4(frames: list[Image.Image], path: str, fps: int = 4) -> str:
    """An MP4 (H.264 where PyAV's FFmpeg has libx264, MPEG-4 part 2 otherwise) of equally sized frames."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame.convert("RGB"))))
        container.mux(stream.encode())
    return path
