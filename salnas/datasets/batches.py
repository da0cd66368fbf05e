"""Batches of a :class:`SaliencyDataset`: seeded order, sharding over processes, resizing.

Every training and evaluation loop of salnas (supernet training, BN recalibration, validation,
the fitness oracle, the distill trainer) iterates data through :func:`iterate_batches`, so
the batch order is one function of ``(seed, epoch)`` everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from salnas.datasets.prepare import SaliencyDataset

__all__ = ["Shard", "iterate_batches", "resize_images", "training_images_at"]


@dataclass(frozen=True)
class Shard:
    """This process's place in a data-parallel group (``rank`` of ``world`` processes)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the outputs (rank 0)."""
        return self.rank == 0


def iterate_batches(
    dataset: SaliencyDataset,
    batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    shard: Shard = Shard(),
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Stacked batches of ``dataset`` in a ``(seed, epoch)``-seeded order.

    Each step takes ``batch_size * shard.world`` items and this process gets every
    ``world``-th of them, so the processes of a group see disjoint parts of one global batch.
    """
    dataset.set_epoch(epoch)
    order = (
        np.random.default_rng([seed, epoch, 7]).permutation(len(dataset))
        if shuffle
        else np.arange(len(dataset))
    )
    per_step = batch_size * shard.world
    n_steps = len(order) // per_step if drop_last else math.ceil(len(order) / per_step)
    for step in range(n_steps):
        chunk = order[step * per_step : (step + 1) * per_step][shard.rank :: shard.world]
        if len(chunk) == 0:
            continue
        items = [dataset[int(i)] for i in chunk]
        yield {k: torch.stack([it[k] for it in items]) for k in items[0]}


def resize_images(images: torch.Tensor, resolution: Sequence[int]) -> torch.Tensor:
    """``images`` (B, 3, H, W) resized to ``resolution`` (antialiased bilinear; a no-op at
    their own size). The one resizing rule of model inputs."""
    size = (int(resolution[0]), int(resolution[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def training_images_at(
    dataset: SaliencyDataset,
    resolution: Sequence[int],
    n_batches: int,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """The first ``n_batches`` shuffled batches of images at ``resolution`` (epoch 0): what
    BatchNorm recalibration runs on."""
    out = []
    for i, batch in enumerate(iterate_batches(dataset, batch_size, seed, 0, Shard())):
        if i >= n_batches:
            break
        out.append(resize_images(batch["image"].to(device), resolution))
    return out
