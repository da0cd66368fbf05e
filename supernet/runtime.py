"""Where training runs: the device, and data-parallel process groups (``torchrun``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from salnas.datasets.batches import Shard
from salnas.errors import ConfigError

__all__ = ["average_gradients", "close_distributed", "init_distributed", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (an error when there is none)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def init_distributed(device: torch.device) -> Shard:
    """Join a ``torchrun`` process group when the environment sets one up (NCCL on CUDA,
    gloo on CPU); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


def close_distributed(shard: Shard) -> None:
    """Leave the process group joined by :func:`init_distributed` (no-op for one process)."""
    if shard.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: Sequence[nn.Parameter], world: int) -> None:
    """Average the gradients of ``params`` over the group with one all-reduce.

    Parameters a process did not use this step count as zero, so every process applies the
    same update (DistributedDataParallel's reducer cannot: a sandwich step runs several
    different subnets before one optimiser step).
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
