"""Saliency maps as colour: the one Viridis table and the heatmap overlay.

* :data:`VIRIDIS` is a 256 x 3 uint8 lookup table interpolated linearly between the ten
  anchors of Plotly's ``sequential.Viridis`` (equal to what the report drew before this module
  existed; a test pins it to Plotly's list), so the report, ``salnas predict --overlay`` and
  notebooks colour maps alike.
* :func:`colorize` maps a saliency map of any scale to RGB, min-max scaled: a map is only
  defined up to a monotone transform for display (CC and NSS ignore offset and scale). A
  constant map is drawn in the lowest colour.
* :func:`heatmap_overlay` blends that colour map over the image, ``(1 - alpha) * image +
  alpha * colour``, after resizing the map to the image when their sizes differ.

Core module: numpy and Pillow only, no plotting library.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VIRIDIS", "VIRIDIS_ANCHORS", "colorize", "heatmap_overlay", "viridis_lut"]

# plotly.colors.sequential.Viridis
VIRIDIS_ANCHORS: tuple[str, ...] = (
    "#440154", "#482878", "#3e4989", "#31688e", "#26828e",
    "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725",
)


def viridis_lut(n: int = 256) -> np.ndarray:
    """An ``n`` x 3 uint8 Viridis table, interpolated linearly between the anchors (the
    fractional part is truncated, as the report always did)."""
    anchors = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in VIRIDIS_ANCHORS],
                       dtype=np.float64)
    t = np.linspace(0, 1, len(anchors))
    x = np.linspace(0, 1, n)
    return np.stack([np.interp(x, t, anchors[:, k]) for k in range(3)], 1).astype(np.uint8)


VIRIDIS: np.ndarray = viridis_lut()
VIRIDIS.setflags(write=False)


def colorize(saliency: np.ndarray, lut: np.ndarray = VIRIDIS) -> np.ndarray:
    """A 2-D map (any scale) as uint8 RGB (H, W, 3) through ``lut``, min-max scaled;
    non-finite values count as the minimum."""
    m = np.asarray(saliency, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D, got shape {m.shape}")
    finite = np.isfinite(m)
    if not finite.any():
        return lut[np.zeros(m.shape, np.intp)]
    lo, hi = float(m[finite].min()), float(m[finite].max())
    m = np.where(finite, m, lo)
    if hi <= lo:
        idx = np.zeros(m.shape, np.intp)
    else:
        idx = (np.clip((m - lo) / (hi - lo), 0, 1) * (len(lut) - 1)).astype(np.intp)
    return lut[idx]


def _resize(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.asarray(m, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR))


def heatmap_overlay(image: np.ndarray, density: np.ndarray, alpha: float = 0.5,
                    lut: np.ndarray = VIRIDIS) -> np.ndarray:
    """``density`` coloured with ``lut`` and blended over the uint8 RGB ``image`` (H, W, 3):
    ``(1 - alpha) * image + alpha * colour``, at the image's size (uint8 RGB)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {rgb.shape}")
    rgb = rgb[..., :3].astype(np.float32)
    m = np.asarray(density, dtype=np.float32)
    if m.shape != rgb.shape[:2]:
        m = _resize(m, rgb.shape[:2])
    heat = colorize(m, lut).astype(np.float32)
    out = (1.0 - alpha) * rgb + alpha * heat
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
