"""Saved prediction maps: ``DIR/<stem>.png`` (8- or 16-bit grayscale) or ``DIR/<stem>.npy``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from salnas.datasets.base import ProblemError, read_gray
from salnas.errors import SalnasError
from salnas.io import atomic_open

PREDICTION_SUFFIXES = (".npy", ".png")


def find_prediction(folder: Path, stem: str) -> Path:
    for suffix in PREDICTION_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise SalnasError(
        f"no prediction for image '{stem}' in {folder} (expected {stem}.png or {stem}.npy); "
        "every image of the evaluated split needs one"
    )


def read_prediction(path: Path) -> np.ndarray:
    """A prediction map as float32 (H, W); values keep their scale (metrics normalise)."""
    if path.suffix == ".npy":
        try:
            m = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SalnasError(f"{path}: unreadable .npy prediction ({e})") from e
        m = np.squeeze(m)
        if m.ndim != 2 or not np.isfinite(m).all():
            raise SalnasError(f"{path}: a prediction must be a finite 2-D map, got shape {m.shape}")
        return m.astype(np.float32)
    try:
        return read_gray(path)
    except ProblemError as e:
        raise SalnasError(str(e)) from e


def write_prediction(path: Path, saliency: np.ndarray) -> None:
    """Write a map as 16-bit PNG (min-max scaled) or float ``.npy``, by the path's suffix."""
    path = Path(path)
    if path.suffix == ".npy":
        with atomic_open(path, "wb") as fh:
            np.save(fh, saliency.astype(np.float32))
        return
    lo, hi = float(saliency.min()), float(saliency.max())
    scaled = (saliency - lo) / (hi - lo) if hi > lo else np.zeros_like(saliency)
    image = Image.fromarray((scaled * 65535 + 0.5).astype(np.uint16))
    with atomic_open(path, "wb") as fh:
        image.save(fh, format="PNG")
