"""Evaluation of subnets: forward at a genome's resolution, BN recalibration, and the one
validation loop (the supernet's per-epoch validation, the fitness oracle and the distill
trainer's model selection all score through :func:`score_batches`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnas import metrics
from salnas.datasets.batches import iterate_batches, resize_images, training_images_at
from salnas.datasets.prepare import SaliencyDataset
from salnas.layout import ORACLE_METRICS
from salnas.losses import logits_to_density
from salnas.supernet.bn import recalibrate_bn
from salnas.supernet.model import Supernet
from salnas.supernet.space import Genome

__all__ = ["ValBatch", "at_resolution", "calibrated_subnet", "forward_at", "score_batches",
           "val_batches", "validate"]


def forward_at(model: nn.Module, images: Tensor, resolution: Sequence[int]) -> Tensor:
    """Logits at the size of ``images`` for a model that runs at ``resolution``."""
    logits = model(resize_images(images, resolution))
    if logits.shape[-2:] != images.shape[-2:]:
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear",
                               align_corners=False)
    return logits


def calibrated_subnet(
    model: Supernet,
    genome: Genome,
    data: SaliencyDataset,
    n_batches: int,
    batch_size: int,
    seed: int,
    device: torch.device | str,
) -> nn.Module:
    """Standalone copy of ``genome`` with BatchNorm statistics re-estimated on training batches.

    The supernet's shared statistics are left untouched.
    """
    net = model.extract(genome).to(device)
    return recalibrate_bn(
        net, training_images_at(data, genome.resolution, n_batches, batch_size, seed, device)
    )


@dataclass
class ValBatch:
    """One validation batch: model inputs (at the model's resolution) and the targets at the
    data resolution."""

    images: Tensor  # (B, 3, h, w)
    density: Tensor  # (B, H, W)
    fixmap: Tensor  # (B, H, W)


def val_batches(data: SaliencyDataset, batch_size: int, resolution: Sequence[int] | None = None,
                device: torch.device | str = "cpu") -> Iterator[ValBatch]:
    """The validation items in order (no flips), images resized to ``resolution`` (default:
    the data resolution) on ``device``; lazily, one batch at a time."""
    for batch in iterate_batches(data, batch_size, shuffle=False, drop_last=False):
        images = batch["image"].to(device)
        yield ValBatch(images if resolution is None else resize_images(images, resolution),
                       batch["density"][:, 0], batch["fixmap"][:, 0])


def at_resolution(batches: Iterable[ValBatch], resolution: Sequence[int],
                  device: torch.device | str = "cpu") -> list[ValBatch]:
    """``batches`` with their images resized to ``resolution`` on ``device`` (targets kept)."""
    return [ValBatch(resize_images(b.images, resolution).to(device), b.density, b.fixmap)
            for b in batches]


@torch.no_grad()
def score_batches(model: nn.Module, batches: Iterable[ValBatch],
                  names: Sequence[str] = ORACLE_METRICS) -> dict[str, float]:
    """Mean of each metric over every image of ``batches`` (eval mode, BN statistics as they
    stand). The AUC jitter generator starts from seed 0 at each call, so a score does not
    depend on what was scored before."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    sums = dict.fromkeys(names, 0.0)
    n = 0
    for batch in batches:
        logits = model(batch.images)
        if logits.shape[-2:] != batch.density.shape[-2:]:
            logits = F.interpolate(logits, size=batch.density.shape[-2:], mode="bilinear",
                                   align_corners=False)
        pred = logits_to_density(logits).cpu()
        scores = metrics.compute_metrics(pred, batch.density, batch.fixmap, names=names,
                                         generator=generator)
        for k in names:
            sums[k] += float(scores[k].sum())
        n += pred.shape[0]
    return {k: v / max(n, 1) for k, v in sums.items()}


def validate(
    model: nn.Module,
    resolution: Sequence[int],
    data: SaliencyDataset,
    batch_size: int,
    device: torch.device | str,
    names: Sequence[str] = ORACLE_METRICS,
) -> dict[str, float]:
    """Mean val metrics, at the data resolution, of ``model`` run at ``resolution``."""
    return score_batches(model, val_batches(data, batch_size, resolution, device), names)
