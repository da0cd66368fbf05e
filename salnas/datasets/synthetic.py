"""The embedded dataset: procedural scenes whose saliency is known by construction.

Each scene has a textured background and several objects that differ in colour,
contrast, size, shape and orientation. The generating saliency map rewards colour
*uniqueness* (an object whose colour differs from the others and from the background
pops out, which needs context, i.e. receptive field) and local contrast, at every scale,
plus a centre bias. Fixations of 15 observers are sampled from that map, so a model can
learn it and architecture choices (receptive field, multi-scale fusion) matter.

Deterministic: scene ``i`` depends only on ``(SEED, i)``.
"""

from __future__ import annotations

import colorsys

import numpy as np
from scipy.ndimage import gaussian_filter

from salnas.datasets.base import ProblemError, SaliencySource, register
from salnas.density import Fixations

SEED = 20240728
DEFAULT_COUNT = 300
SIZE = (240, 320)  # (H, W) of the generated originals
N_OBSERVERS = 15
MEAN_FIXATIONS_PER_OBSERVER = 6
OBJECT_MASS, CENTRE_MASS = 0.7, 0.22  # the rest is spread uniformly


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float64)


def _shape_mask(
    kind: int,
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    ry: float,
    rx: float,
    angle: float,
) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / rx
    v = (-(xx - cx) * s + (yy - cy) * c) / ry
    if kind == 0:  # ellipse
        return (u**2 + v**2 <= 1.0).astype(np.float64)
    if kind == 1:  # rectangle
        return ((np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)).astype(np.float64)
    return ((v >= -1.0) & (v <= 1.0) & (np.abs(u) <= (1.0 - v) / 2.0)).astype(
        np.float64
    )  # triangle


def generate_scene(
    index: int, size: tuple[int, int] = SIZE
) -> tuple[np.ndarray, np.ndarray, Fixations]:
    """Scene ``index``: (uint8 RGB image, generating saliency map summing to 1, fixations)."""
    rng = np.random.default_rng([SEED, index])
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    # Background: a base colour modulated by low-frequency waves and fine grain.
    base = _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.35, 0.7))
    texture = np.zeros((h, w))
    for _ in range(4):
        f = rng.uniform(0.01, 0.08)
        theta = rng.uniform(0, np.pi)
        texture += np.sin(
            2 * np.pi * f * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 6.3)
        )
    texture = 0.1 * texture / 4 + 0.05 * gaussian_filter(rng.standard_normal((h, w)), 1.0)
    image = np.clip(base[None, None, :] * (1.0 + texture[..., None]), 0, 1)

    # Objects: most share a "distractor" hue; a few get their own (the pop-outs).
    n_obj = int(rng.integers(3, 8))
    distractor_hue = rng.random()
    saliency = np.zeros((h, w))
    colours: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    sizes: list[float] = []
    for _ in range(n_obj):
        unique = rng.random() < 0.35
        hue = rng.random() if unique else distractor_hue + rng.normal(0, 0.02)
        colour = _hsv(hue, rng.uniform(0.5, 1.0), rng.uniform(0.3, 1.0))
        r = float(np.exp(rng.uniform(np.log(0.03), np.log(0.22))) * min(h, w))
        aspect = rng.uniform(0.4, 1.0)
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        mask = _shape_mask(
            int(rng.integers(0, 3)), yy, xx, cy, cx, r * aspect, r, rng.uniform(0, np.pi)
        )
        image = image * (1 - mask[..., None]) + colour[None, None, :] * mask[..., None]
        masks = [m * (1 - mask) for m in masks]  # occluded parts of earlier objects are not seen
        colours.append(colour)
        masks.append(mask)
        sizes.append(r)

    colours_arr = np.stack(colours)
    for i, (mask, r) in enumerate(zip(masks, sizes, strict=True)):
        visible = mask.sum()
        if visible < 4:
            continue
        others = np.delete(colours_arr, i, axis=0)
        uniqueness = np.min(np.linalg.norm(others - colours_arr[i], axis=1)) if len(others) else 1.0
        contrast = np.linalg.norm(colours_arr[i] - base)
        weight = 0.15 + 2.0 * uniqueness + 0.6 * contrast
        # Small objects attract as many looks as big ones: normalise by area, then blur.
        saliency += (
            weight * gaussian_filter(mask, max(1.0, 0.3 * r)) / visible * (np.sqrt(visible) * 8)
        )
    centre = np.exp(-(((yy - h / 2) / (0.3 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2) / 2)
    # Mix by probability mass, so objects (not the centre) draw most of the looks.
    objects = saliency / saliency.sum() if saliency.sum() > 0 else np.full((h, w), 1.0 / (h * w))
    saliency = OBJECT_MASS * objects + CENTRE_MASS * centre / centre.sum()
    saliency += (1.0 - OBJECT_MASS - CENTRE_MASS) / (h * w)

    # Fixations: observers sample pixels of the generating map, with sub-pixel jitter.
    counts = rng.poisson(MEAN_FIXATIONS_PER_OBSERVER, N_OBSERVERS).clip(min=1)
    flat = rng.choice(h * w, size=int(counts.sum()), p=saliency.ravel())
    fy = flat // w + rng.uniform(-0.5, 0.5, flat.size)
    fx = flat % w + rng.uniform(-0.5, 0.5, flat.size)
    subject = np.repeat(np.arange(N_OBSERVERS), counts)
    fix = Fixations.from_arrays(np.clip(fx, 0, w - 1), np.clip(fy, 0, h - 1), subject)
    return (image * 255 + 0.5).astype(np.uint8), saliency.astype(np.float32), fix


@register
class SyntheticSource(SaliencySource):
    """``synthetic[:N]``: N procedural scenes of 240x320 (default 300)."""

    kind = "synthetic"
    coordinate_note = "0-based pixels, sampled from the generating map"

    def __init__(self, count: str | int | None = None) -> None:
        super().__init__(None)
        try:
            self.count = DEFAULT_COUNT if count in (None, "") else int(count)  # type: ignore[arg-type]
        except ValueError:
            raise ProblemError(f"synthetic:N needs an integer image count, got '{count}'") from None
        if self.count < 3:
            raise ProblemError(
                f"synthetic:N needs at least 3 images (train/val/test), got {self.count}"
            )
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, Fixations]] = {}

    @property
    def spec(self) -> str:
        return f"synthetic:{self.count}"

    def _scene(self, stem: str) -> tuple[np.ndarray, np.ndarray, Fixations]:
        index = int(stem)
        if index not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[index] = generate_scene(index)
        return self._cache[index]

    def stems(self) -> list[str]:
        return [f"{i:05d}" for i in range(self.count)]

    def load_image(self, stem: str) -> np.ndarray:
        return self._scene(stem)[0]

    def image_size(self, stem: str) -> tuple[int, int]:
        return SIZE

    def load_fixations(self, stem: str) -> Fixations:
        return self._scene(stem)[2]

    def generating_map(self, stem: str) -> np.ndarray:
        """The map the fixations were sampled from: the best any model can predict."""
        return self._scene(stem)[1]

    def fingerprint(self) -> str:
        return f"synthetic-{SEED}-{self.count}-v1"
