"""Synthetic video generators: bouncing discs (free or in labelled directions) and Moving MNIST
(Srivastava et al. 2015), vectorized.

Clips are uint8 (n, 1, T, size, size). A clip is drawn in two steps: `*_tracks` draws where each
object is in every frame ((y, x) of its top-left corner, row first), and `render_discs` /
`paste_digits` draw those tracks into frames, all clips and frames at once. Bounces reflect the
velocity at the borders (a triangle wave of the unbounded motion), so objects stay fully inside.

Moving MNIST: digits picked uniformly from the given images, start uniform in [0, size - h]^2,
angle theta uniform in [0, 2 pi), velocity (sin theta, cos theta) x step_length x (size - h) pixels
per frame (the reference's step_length = 0.1 of the free range: 3.6 px/frame at 64 with 28 px
digits), positions rounded to whole pixels, digits combined by pixel-wise max. With `directions`
(n,) in 0..K-1 theta = 2 pi k / K instead; with y pointing down, K = 4 reads 0 right, 1 down,
2 left, 3 up (K = 8 adds the diagonals: 1 down-right, 3 down-left, 5 up-left, 7 up-right). The
start is then drawn where no digit reaches a border within the clip, so the label is the direction
of the whole clip; where the travel exceeds the free range that is impossible, the start is uniform
and the digits bounce (the label is then the initial direction).
"""

import math
from typing import NamedTuple

import torch
from einops import rearrange

_BLOB_SPEEDS = torch.tensor([-2, -1, 1, 2])


def reflect(u: torch.Tensor, span) -> torch.Tensor:
    """Unbounded coordinates folded into [0, span]: the path of a point bouncing off 0 and span."""
    return ((u + span) % (2 * span) - span).abs()


def blob_tracks(
    n: int,
    num_frames: int,
    size: int,
    diameter: int,
    generator=None,
    velocity: torch.Tensor | None = None,
    clear_frames: int = 1,
) -> torch.Tensor:
    """long (n, T, 2): top-left corners of discs. Without `velocity` the start is uniform and the speeds
    per axis are drawn from {-2,-1,1,2}; with long `velocity` (n, 2) px/frame (y, x) the start is drawn
    uniformly among those from which the first `clear_frames` frames reach no border (uniform where
    none is)."""
    span = size - diameter
    if velocity is None:
        start = torch.randint(0, span + 1, (n, 1, 2), generator=generator)
        velocity = _BLOB_SPEEDS[torch.randint(0, 4, (n, 1, 2), generator=generator)]
    else:
        velocity = velocity.view(n, 1, 2)
        travel = velocity * (clear_frames - 1)
        lo = (-travel).clamp(min=0)
        hi = (span - travel).clamp(max=span)
        blocked = lo > hi
        lo = torch.where(blocked, 0, lo)
        hi = torch.where(blocked, span, hi)
        u = torch.rand((n, 1, 2), generator=generator, dtype=torch.float64)
        start = lo + (u * (hi - lo + 1)).floor().long()
    t = torch.arange(num_frames)[None, :, None]
    return reflect(start + velocity * t, span)


def render_discs(corners: torch.Tensor, size: int, diameter: int) -> torch.Tensor:
    """uint8 (n, 1, T, size, size) of filled discs (255) whose bounding boxes start at corners (n, T, 2)."""
    grid = torch.arange(size, device=corners.device, dtype=torch.float32)
    centre = corners.float() + (diameter - 1) / 2
    dy = (grid - centre[..., 0, None]) ** 2  # (n, T, size)
    dx = (grid - centre[..., 1, None]) ** 2
    inside = dy[..., :, None] + dx[..., None, :] <= (diameter / 2) ** 2
    return rearrange(inside.to(torch.uint8) * 255, "n t h w -> n 1 t h w")


def bouncing_blobs(n: int, num_frames: int, size: int = 32, diameter: int = 12, generator=None) -> torch.Tensor:
    """uint8 (n, 1, T, size, size): one disc per clip bouncing off the borders."""
    tracks = blob_tracks(n=n, num_frames=num_frames, size=size, diameter=diameter, generator=generator)
    return render_discs(tracks, size, diameter)


def digit_tracks(
    n: int,
    num_frames: int,
    span: int,
    num_digits: int,
    generator=None,
    step_length: float = 0.1,
    directions: torch.Tensor | None = None,
    num_directions: int = 4,
) -> torch.Tensor:
    """float (n, T, num_digits, 2): unrounded top-left corners in [0, span] pixels (see the module doc)."""
    shape = (n, 1, num_digits)
    if directions is None:
        theta = torch.rand(shape, generator=generator, dtype=torch.float64) * (2 * math.pi)
    else:
        theta = (directions.double() * (2 * math.pi / num_directions)).view(n, 1, 1).expand(shape)
    velocity = torch.stack([theta.sin(), theta.cos()], -1) * (step_length * span)  # (n, 1, D, 2) px/frame
    u = torch.rand(shape + (2,), generator=generator, dtype=torch.float64)
    lo = torch.zeros_like(velocity)
    hi = torch.full_like(velocity, float(span))
    if directions is not None:  # starts from which the whole clip stays clear of the borders
        travel = velocity * (num_frames - 1)
        lo = (-travel).clamp(min=0)
        hi = (span - travel).clamp(max=span)
        crossed = lo > hi
        lo = torch.where(crossed, 0.0, lo)
        hi = torch.where(crossed, float(span), hi)
    start = lo + u * (hi - lo)
    t = torch.arange(num_frames, dtype=torch.float64)[None, :, None, None]
    return reflect(start + velocity * t, span).float()


def digit_clip_tracks(
    num_available: int,
    n: int,
    num_frames: int,
    span: int,
    num_digits: int,
    generator=None,
    step_length: float = 0.1,
    directions=None,
    num_directions: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What `moving_mnist` draws before rendering: which (n, D) digits, and long corners (n, T, D, 2)."""
    which = torch.randint(0, num_available, (n, num_digits), generator=generator)
    tracks = digit_tracks(
        n=n,
        num_frames=num_frames,
        span=span,
        num_digits=num_digits,
        generator=generator,
        step_length=step_length,
        directions=directions,
        num_directions=num_directions,
    )
    return which, tracks.round().long()


def paste_digits(digits: torch.Tensor, which: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (n, 1, T, size, size): digits[which] (n, D) pasted at long corners (n, T, D, 2), max-combined,
    with one scatter_reduce over the flattened canvas."""
    n, T, D, _ = corners.shape
    h, w = digits.shape[-2:]
    rows = corners[..., 0, None, None] + torch.arange(h, device=corners.device)[:, None]  # (n, T, D, h, 1)
    cols = corners[..., 1, None, None] + torch.arange(w, device=corners.device)  # (n, T, D, 1, w)
    frame = torch.arange(n * T, device=corners.device).view(n, T, 1, 1, 1)
    index = (frame * size + rows) * size + cols  # (n, T, D, h, w) into the flattened (n*T*size*size) canvas
    src = digits[which][:, None].expand(n, T, D, h, w)
    canvas = torch.zeros(n * T * size * size, dtype=digits.dtype, device=digits.device)
    canvas.scatter_reduce_(0, index.reshape(-1), src.reshape(-1), reduce="amax")
    return rearrange(canvas, "(n t h w) -> n 1 t h w", n=n, t=T, h=size)


class MovingDigits(NamedTuple):
    clips: torch.Tensor  # uint8 (n, 1, T, size, size)
    which: torch.Tensor  # long (n, num_digits): index of each digit in `digits`
    corners: torch.Tensor  # long (n, T, num_digits, 2): pasted top-left corners (y, x)
    labels: torch.Tensor | None  # long (n, num_digits): labels[which], when labels were given


def moving_mnist(
    digits: torch.Tensor,
    n: int,
    num_frames: int = 20,
    size: int = 64,
    num_digits: int = 2,
    generator=None,
    directions: torch.Tensor | None = None,
    num_directions: int = 4,
    step_length: float = 0.1,
    labels: torch.Tensor | None = None,
) -> MovingDigits:
    """Moving MNIST clips of square digits (N_digits, h, h) uint8 on a size x size canvas (see the module doc)."""
    which, corners = digit_clip_tracks(
        num_available=len(digits),
        n=n,
        num_frames=num_frames,
        span=size - digits.shape[-1],
        num_digits=num_digits,
        generator=generator,
        step_length=step_length,
        directions=directions,
        num_directions=num_directions,
    )
    clips = paste_digits(digits, which, corners=corners, size=size)
    return MovingDigits(clips=clips, which=which, corners=corners, labels=None if labels is None else labels[which])
