"""What samples become: the files `sample.py` writes for each kind of data, and the renderers that put
samples drawn while training into the run folder and the loggers. A datamodule picks both
(`write_samples`, `log_samples`).

    files.py    write_images / write_text / write_video: samples.pt, .png grids, .gif / .mp4, .txt / .json
    images.py   log_grid: an image grid to <run dir>/samples/ and TensorBoard / wandb
    video.py    log_video: clips as a frame grid and a GIF; log_wandb_video
    text.py     log_text: text samples and their unigram entropy
"""

from vdiff.outputs.files import (
    MAX_CLIPS,
    format_texts,
    frame_grid,
    video_frames,
    write_gif,
    write_images,
    write_mp4,
    write_text,
    write_video,
)
from vdiff.outputs.images import log_grid
from vdiff.outputs.text import log_text, unigram_entropy
from vdiff.outputs.video import log_video, log_wandb_video

__all__ = [
    "MAX_CLIPS",
    "format_texts",
    "frame_grid",
    "log_grid",
    "log_text",
    "log_video",
    "log_wandb_video",
    "unigram_entropy",
    "video_frames",
    "write_gif",
    "write_images",
    "write_mp4",
    "write_text",
    "write_video",
]
