"""Ground-truth fixation density: the one place that turns fixation points into a map.

Policy (used by every dataset, metric, baseline and report):

* Fixations are 0-based pixel coordinates in the image's own frame, pixel centres at
  integers; a fixation belongs to pixel ``(round(y), round(x))``.
* Fixations outside ``[-0.5, W - 0.5) x [-0.5, H - 0.5)`` are **dropped** (and counted
  by ``salnas data check``); eye trackers report such points off-screen.
* The density is a Gaussian blur of the fixation-count map (duplicates at one pixel
  add up), zero padding at the border, renormalised to sum to 1.
* The default sigma is ``0.03 * max(H, W)`` pixels unless a dataset defines its own
  (OSIE: 24 px); ``--sigma-px`` overrides both.
* At a model resolution the points are rescaled and sigma scales with each axis, so a
  map made at the model resolution matches one made at the original size and resized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

DEFAULT_SIGMA_FRACTION = 0.03


@dataclass(frozen=True)
class Fixations:
    """Fixation points of one image: 0-based ``x``, ``y`` and the observer id of each."""

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray

    @staticmethod
    def from_arrays(x, y, subject=None) -> Fixations:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"x and y differ in length ({x.size} vs {y.size})")
        s = (
            np.zeros(x.size, np.int64)
            if subject is None
            else np.asarray(subject, np.int64).reshape(-1)
        )
        if s.shape != x.shape:
            raise ValueError(f"subject ids ({s.size}) do not match fixations ({x.size})")
        return Fixations(x, y, s)

    def __len__(self) -> int:
        return int(self.x.size)

    @property
    def subjects(self) -> np.ndarray:
        return np.unique(self.subject)

    def inside(self, size: tuple[int, int]) -> np.ndarray:
        """Boolean mask of the points that fall on a pixel of an image of ``size=(H, W)``."""
        h, w = size
        return (self.x >= -0.5) & (self.x < w - 0.5) & (self.y >= -0.5) & (self.y < h - 0.5)

    def select(self, mask: np.ndarray) -> Fixations:
        return Fixations(self.x[mask], self.y[mask], self.subject[mask])

    def rescale(self, src_size: tuple[int, int], dst_size: tuple[int, int]) -> Fixations:
        """Map points from an image of ``src_size`` to the same image resized to ``dst_size``."""
        sy, sx = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
        return Fixations((self.x + 0.5) * sx - 0.5, (self.y + 0.5) * sy - 0.5, self.subject)


def default_sigma_px(size: tuple[int, int]) -> float:
    return DEFAULT_SIGMA_FRACTION * max(size)


def fixation_count_map(fix: Fixations, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel fixation counts (float32, ``size=(H, W)``); points off the image are dropped."""
    h, w = size
    inside = fix.inside(size)
    cols = np.clip(np.floor(fix.x[inside] + 0.5).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(fix.y[inside] + 0.5).astype(np.int64), 0, h - 1)
    counts = np.zeros(h * w, np.float32)
    np.add.at(counts, rows * w + cols, 1.0)
    return counts.reshape(h, w)


def density_from_fixations(
    fix: Fixations,
    size: tuple[int, int],
    sigma_px: float | tuple[float, float],
) -> np.ndarray:
    """Ground-truth density (float32, sums to 1) of ``fix`` on an image of ``size=(H, W)``.

    ``sigma_px`` is in pixels of this image; a pair gives (sigma_y, sigma_x). With no
    fixation on the image the result is all zeros.
    """
    counts = fixation_count_map(fix, size)
    sigma = tuple(float(s) for s in np.broadcast_to(np.asarray(sigma_px, np.float64), (2,)))
    if min(sigma) <= 0:
        raise ValueError(f"sigma_px must be positive, got {sigma_px}")
    blurred = gaussian_filter(counts.astype(np.float64), sigma=sigma, mode="constant", truncate=4.0)
    total = blurred.sum()
    return (blurred / total).astype(np.float32) if total > 0 else blurred.astype(np.float32)


def scaled_sigma(
    sigma_px: float, src_size: tuple[int, int], dst_size: tuple[int, int]
) -> tuple[float, float]:
    """Sigma (y, x) at ``dst_size`` for a blur of ``sigma_px`` defined at ``src_size``."""
    return sigma_px * dst_size[0] / src_size[0], sigma_px * dst_size[1] / src_size[1]
