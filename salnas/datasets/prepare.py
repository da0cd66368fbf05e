"""Decoded, resized tensors cached as memory-mapped ``.npy`` files, and the torch Dataset.

A prepared dataset holds every image of a source at one model resolution: uint8 images,
float32 ground-truth densities (sum 1) and uint8 fixation counts. It is built once per
(dataset fingerprint, resolution, sigma policy) into the cache folder, atomically, and
reopened memory-mapped by later epochs, searches and processes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from salnas.config import check_sigma_px
from salnas.datasets.base import SaliencySource
from salnas.datasets.check import check_source
from salnas.density import (
    Fixations,
    default_sigma_px,
    density_from_fixations,
    fixation_count_map,
    scaled_sigma,
)
from salnas.io import write_json_atomic

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("SALNAS_CACHE", Path.home() / ".cache" / "salnas"))


def resolve_sigma(source: SaliencySource, size: tuple[int, int], override: float | None) -> float:
    """Blur sigma in pixels of the original image: override > dataset's own > 3% of max side."""
    if override is not None:
        return float(check_sigma_px(override, "sigma_px") or override)
    if source.default_sigma_px is not None:
        return float(source.default_sigma_px)
    return default_sigma_px(size)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a uint8 RGB image to ``size=(H, W)``."""
    if image.shape[:2] == tuple(size):
        return image
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a float map, renormalised to sum 1 (if non-zero)."""
    if m.shape[:2] != tuple(size):
        m = np.asarray(
            Image.fromarray(m.astype(np.float32), mode="F").resize(
                (size[1], size[0]), Image.Resampling.BILINEAR
            )
        )
    m = np.clip(m, 0, None).astype(np.float32)
    total = m.sum()
    return m / total if total > 0 else m


def ground_truth(
    source: SaliencySource,
    stem: str,
    size: tuple[int, int] | None = None,
    sigma_px: float | None = None,
) -> tuple[np.ndarray, np.ndarray, Fixations]:
    """(density, fixation counts, fixations) of ``stem`` at ``size`` (default: original size).

    The dataset's own map is used when it ships one and no ``sigma_px`` override is given;
    otherwise the density is blurred from the fixations with the one sigma policy.
    """
    orig = source.image_size(stem)
    out = (int(size[0]), int(size[1])) if size else orig
    fix_orig = source.load_fixations(stem)
    fix = fix_orig.select(fix_orig.inside(orig)).rescale(orig, out)
    given = source.load_map(stem) if sigma_px is None else None
    if given is not None:
        density = resize_map(given, out)
    else:
        sigma = scaled_sigma(resolve_sigma(source, orig, sigma_px), orig, out)
        density = density_from_fixations(fix, out, sigma)
    return density, fixation_count_map(fix, out), fix


@dataclass
class PreparedDataset:
    """All images of a source at one resolution, memory-mapped from the cache."""

    source: SaliencySource
    stems: list[str]
    resolution: tuple[int, int]
    images: np.ndarray  # (N, H, W, 3) uint8
    density: np.ndarray  # (N, H, W) float32, each sums to 1
    fixmap: np.ndarray  # (N, H, W) uint8 fixation counts
    orig_sizes: np.ndarray  # (N, 2) original (H, W)
    sigma_px: float | None
    path: Path

    def index_of(self, stems: list[str]) -> list[int]:
        lookup = {s: i for i, s in enumerate(self.stems)}
        return [lookup[s] for s in stems]


def _cache_key(source: SaliencySource, resolution: tuple[int, int], sigma_px: float | None) -> str:
    sigma = "auto" if sigma_px is None else f"{sigma_px:g}"
    h, w = resolution
    return f"{source.kind}-{source.fingerprint()}-{h}x{w}-s{sigma}-v{CACHE_VERSION}"


def prepare(
    source: SaliencySource,
    resolution: tuple[int, int],
    sigma_px: float | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> PreparedDataset:
    """Check the dataset (stopping on any problem), then decode and cache it once."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / _cache_key(source, resolution, sigma_px)
    if not (path / "meta.json").is_file():
        check_source(source, progress=progress).raise_if_problems()
        _build(source, resolution, sigma_px, path, progress)
    meta = json.loads((path / "meta.json").read_text())
    load = lambda name: np.load(path / f"{name}.npy", mmap_mode="r")  # noqa: E731
    return PreparedDataset(
        source=source,
        stems=list(meta["stems"]),
        resolution=tuple(resolution),  # type: ignore[arg-type]
        images=load("images"),
        density=load("density"),
        fixmap=load("fixmap"),
        orig_sizes=load("orig_sizes"),
        sigma_px=sigma_px,
        path=path,
    )


def _build(
    source: SaliencySource,
    resolution: tuple[int, int],
    sigma_px: float | None,
    path: Path,
    progress: bool,
) -> None:
    stems = source.stems()
    h, w = resolution
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        mm = lambda name, shape, dtype: np.lib.format.open_memmap(  # noqa: E731
            tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape
        )
        images = mm("images", (len(stems), h, w, 3), np.uint8)
        density = mm("density", (len(stems), h, w), np.float32)
        fixmap = mm("fixmap", (len(stems), h, w), np.uint8)
        sizes = mm("orig_sizes", (len(stems), 2), np.int64)
        for i, stem in enumerate(
            tqdm(stems, desc=f"caching {source.kind} {h}x{w}", disable=not progress)
        ):
            image = source.load_image(stem)
            sizes[i] = image.shape[:2]
            images[i] = resize_image(image, (h, w))
            density[i], counts, _ = ground_truth(source, stem, (h, w), sigma_px)
            fixmap[i] = np.minimum(counts, 255)
        for arr in (images, density, fixmap, sizes):
            arr.flush()
        del images, density, fixmap, sizes
        write_json_atomic(
            tmp / "meta.json",
            {
                "spec": source.spec,
                "fingerprint": source.fingerprint(),
                "resolution": [h, w],
                "sigma_px": sigma_px,
                "stems": stems,
                "version": CACHE_VERSION,
            },
        )
        try:
            os.replace(tmp, path)
        except OSError:  # another process finished the same cache first
            if not (path / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class SaliencyDataset(torch.utils.data.Dataset):
    """Items of a prepared dataset: image (3, H, W) float in [0, 1], density (1, H, W),
    fixation counts (1, H, W), the item's index into the prepared dataset and whether it was
    flipped (so a cache of per-image predictions, e.g. a KD teacher's, can follow)."""

    def __init__(
        self,
        prepared: PreparedDataset,
        stems: list[str] | None = None,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        self.prepared = prepared
        self.indices = (
            prepared.index_of(stems) if stems is not None else list(range(len(prepared.stems)))
        )
        self.hflip = hflip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Flips depend on (seed, epoch, index) only, so resumed runs see the same data."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.indices[i]
        image = (
            torch.from_numpy(np.array(self.prepared.images[j])).permute(2, 0, 1).float().div_(255.0)
        )
        density = torch.from_numpy(np.array(self.prepared.density[j]))[None]
        fixmap = torch.from_numpy(np.array(self.prepared.fixmap[j])).float()[None]
        flipped = bool(
            self.hflip and np.random.default_rng([self.seed, self.epoch, j]).random() < 0.5)
        if flipped:
            image, density, fixmap = image.flip(-1), density.flip(-1), fixmap.flip(-1)
        return {"image": image, "density": density, "fixmap": fixmap, "index": torch.tensor(j),
                "flipped": torch.tensor(flipped)}
