"""Supernet checkpoints: building a supernet from a config, saving and loading it safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from salnas.config import Config, config_from_dict
from salnas.errors import ConfigError, SalnasError
from salnas.io import load_torch_safe, save_torch_atomic
from salnas.supernet.model import Supernet
from salnas.supernet.space import SearchSpace

__all__ = ["CHECKPOINT_FORMAT", "build_supernet", "load_checkpoint", "load_supernet",
           "save_checkpoint"]

CHECKPOINT_FORMAT = "salnas-supernet-v1"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a supernet checkpoint atomically (the counterpart of :func:`load_checkpoint`)."""
    save_torch_atomic(path, payload)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a supernet checkpoint safely (``weights_only``), with a clear error."""
    ckpt = load_torch_safe(
        path,
        "supernet checkpoint",
        (CHECKPOINT_FORMAT,),
        missing_hint="train one with `salnas supernet train`",
    )
    missing = {"epoch", "model", "config"} - set(ckpt)
    if missing:
        raise SalnasError(f"{path}: supernet checkpoint without {sorted(missing)}; it is "
                          "damaged or not from `salnas supernet train`")
    return ckpt


def build_supernet(config: Config, pretrained: bool | None = None) -> Supernet:
    """The untrained supernet of ``config`` (``supernet.space``, ImageNet encoder unless
    ``pretrained`` says otherwise)."""
    space = SearchSpace(config.supernet.space or None)
    res = np.asarray(space.to_config()["resolutions"])
    if (res > np.asarray(config.data.resolution)).any():
        raise ConfigError(
            f"supernet.space resolutions {res.tolist()} exceed data.resolution "
            f"{list(config.data.resolution)}: the data are cached at data.resolution, so every "
            "searched resolution must be at most that"
        )
    return Supernet(
        space, pretrained=config.supernet.pretrained if pretrained is None else pretrained
    )


def load_supernet(
    path: Path, weights: str | None = None
) -> tuple[Supernet, Config, dict[str, Any]]:
    """The trained supernet of a checkpoint, its config, and the checkpoint itself.

    ``weights`` is ``"best"`` (the epoch with the best val CC) or ``"last"``; by default the
    one the run's ``supernet.keep`` names. Checkpoints without a best epoch give the last.
    """
    ckpt = load_checkpoint(path)
    config = config_from_dict(ckpt["config"], f"{path} (embedded config)")
    weights = weights or config.supernet.keep
    if weights not in ("best", "last"):
        raise SalnasError(f"supernet weights must be 'best' or 'last', not {weights!r}")
    model = build_supernet(config, pretrained=False)
    best = ckpt.get("best")
    model.load_state_dict(best["model"] if weights == "best" and best else ckpt["model"])
    return model, config, ckpt
