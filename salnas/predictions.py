"""Saved prediction maps: ``DIR/<stem>.png`` (8- or 16-bit grayscale) or ``DIR/<stem>.npy``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from salnas.datasets.base import ProblemError, read_gray
from salnas.errors import SalnasError
from salnas.io import atomic_open

PREDICTION_SUFFIXES = (".npy", ".png")


def predicted_stems(folder: Path, stems: Sequence[str]) -> list[str]:
    """The ``stems`` that have a prediction file in ``folder`` (either suffix)."""
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return [s for s in stems if any(f"{s}{x}" in names for x in PREDICTION_SUFFIXES)]


def find_prediction(folder: Path, stem: str) -> Path:
    """The one prediction file of ``stem``; both ``.png`` and ``.npy`` is an error naming both."""
    found = [p for p in (folder / f"{stem}{s}" for s in PREDICTION_SUFFIXES) if p.is_file()]
    if len(found) > 1:
        raise SalnasError(
            f"{found[0]} and {found[1]} are both predictions of image '{stem}'; keep one of them"
        )
    if found:
        return found[0]
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
        if m.ndim != 2 or m.dtype.kind not in "iuf" or not np.isfinite(m).all():
            raise SalnasError(f"{path}: a prediction must be a finite 2-D map, got shape {m.shape}")
        if (m < 0).any():
            raise SalnasError(f"{path}: a prediction must not be negative (min {float(m.min()):g});"
                              " save a saliency map or density (>= 0)")
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
