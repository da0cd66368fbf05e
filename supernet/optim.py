"""The one optimiser factory and learning-rate schedule of salnas (supernet and distill).

Weight decay applies to conv and linear weights only (not BatchNorm parameters or biases),
and a pretrained encoder learns at ``encoder_lr_scale`` times the decoder's rate.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["OptimSettings", "ScheduleSettings", "lr_factor", "make_optimizer", "param_groups",
           "set_lr"]


class OptimSettings(Protocol):
    """What the factory reads (``supernet`` and ``distill`` config sections both have it)."""

    @property
    def optimizer(self) -> str: ...
    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def encoder_lr_scale(self) -> float: ...


class ScheduleSettings(Protocol):
    """What the schedule reads."""

    @property
    def epochs(self) -> int: ...
    @property
    def warmup_epochs(self) -> int: ...
    @property
    def schedule(self) -> str: ...


def param_groups(model: nn.Module, settings: OptimSettings, *,
                 pretrained: bool) -> list[dict[str, Any]]:
    """Parameter groups: decay only on weights of rank > 1; ``encoder.*`` at the encoder
    learning-rate scale when the encoder starts from learned weights (``lr_scale`` is kept
    in each group for :func:`set_lr`)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim > 1
        encoder = name.startswith("encoder.")
        groups.setdefault((encoder, decay), []).append(p)
    out = []
    for (encoder, decay), params in sorted(groups.items()):
        scale = settings.encoder_lr_scale if (encoder and pretrained) else 1.0
        out.append(
            {
                "params": params,
                "lr": settings.lr * scale,
                "lr_scale": scale,
                "weight_decay": settings.weight_decay if decay else 0.0,
            }
        )
    return out


def make_optimizer(model: nn.Module, settings: OptimSettings, *,
                   pretrained: bool) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.9, over :func:`param_groups`."""
    groups = param_groups(model, settings, pretrained=pretrained)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.lr)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {settings.optimizer!r} (adamw or sgd)")


def lr_factor(epoch: int, cfg: ScheduleSettings) -> float:
    """Multiplier of the base learning rate at ``epoch``: linear warm-up, then cosine (or
    constant) over the remaining epochs."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "constant":
        return 1.0
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


def set_lr(optimiser: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    """Set every group's rate to ``base_lr * lr_scale * factor``."""
    for group in optimiser.param_groups:
        group["lr"] = base_lr * group.get("lr_scale", 1.0) * factor
