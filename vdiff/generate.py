"""Drawing samples from a trained task in batches, reproducibly from a seed."""

import torch


def class_labels(n: int, num_classes: int | None = None, labels=None) -> torch.Tensor | None:
    """The (n,) long labels `generate` conditions on: `labels` repeated, or 0..K-1 cycled; None
    for unconditional data. Metrics that compare samples with their requested class use it too."""
    if not num_classes:
        return None
    base = torch.as_tensor(list(labels) if labels is not None else range(num_classes), dtype=torch.long)
    if ((base < 0) | (base >= num_classes)).any():
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return base.repeat(n // len(base) + 1)[:n]


@torch.no_grad()
def generate(
    task,
    data_shape,
    n: int,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    labels=None,
    batch_size: int = 500,
    progress: bool = False,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """n data-space samples on the CPU (images in [0, 1], token ids) of examples shaped `data_shape`
    (the datamodule's `shape`). The task says what x_T is: its shape (`task.sample_shape(data_shape)`,
    e.g. a latent's) and its distribution (`task.prior`: noise, or all [MASK]), drawn on the CPU from
    `seed` (the same on any device); `init` (n, *sample shape) replaces it when given (e.g. a prompt
    to infill). Class labels are `class_labels(n, num_classes, labels)`. The task is put in eval mode
    for the duration."""
    device = task.device
    if init is None:
        init = task.prior(n, task.sample_shape(data_shape), torch.Generator().manual_seed(seed))
    cond = class_labels(n, num_classes, labels)
    gen = torch.Generator(device).manual_seed(seed + 1)
    was_training = task.training
    task.eval()
    try:
        out = []
        for i in range(0, n, batch_size):
            c = None if cond is None else cond[i : i + batch_size].to(device)
            x = init[i : i + batch_size].to(device)
            out.append(task.generate(x, cond=c, generator=gen, progress=progress).cpu())
        return torch.cat(out)
    finally:
        task.train(was_training)
