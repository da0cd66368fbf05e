"""Standalone subnets: extraction from a trained supernet, saving, loading and prediction."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salnas.config import Config, config_from_dict
from salnas.datasets.prepare import resize_image
from salnas.errors import SalnasError
from salnas.io import load_torch_safe, save_torch_atomic
from salnas.losses import logits_to_density
from salnas.supernet.model import SalNet, Supernet
from salnas.supernet.space import Genome, GenomeError, SearchSpace

MODEL_FORMAT = "salnas-model-v1"


def parse_genome(space: SearchSpace, spec: str) -> Genome:
    """``max``, ``min``, ``random:SEED`` or a genome JSON file."""
    if spec == "max":
        return space.max_genome()
    if spec == "min":
        return space.min_genome()
    if spec.startswith("random:"):
        try:
            return space.random_genome(int(spec.split(":", 1)[1]))
        except ValueError:
            raise SalnasError(
                f"--genome {spec}: the seed after 'random:' must be an integer"
            ) from None
    path = Path(spec)
    if not path.is_file():
        raise SalnasError(f"--genome {spec}: use max, min, random:SEED or a genome JSON file")
    try:
        return Genome.from_json(path.read_text(), space)
    except (GenomeError, ValueError, KeyError, TypeError) as e:
        raise SalnasError(f"{path}: not a valid genome of this search space ({e})") from e


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@torch.no_grad()
def verify_extraction(
    supernet: Supernet,
    subnet: nn.Module,
    genome: Genome,
    images: torch.Tensor,
    tolerance: float = 1e-4,
) -> float:
    """Relative difference between the supernet with ``genome`` active and ``subnet``.

    Call it on a freshly extracted subnet, before BatchNorm recalibration, so both run in
    eval mode with the same statistics; raises if the difference exceeds ``tolerance``.
    """
    was_training, previous = supernet.training, supernet.genome
    try:
        supernet.set_active(genome)
        a = supernet.eval()(images)
    finally:
        if previous is not None:  # a supernet always has one; Genome | None only by type
            supernet.set_active(previous)
        supernet.train(was_training)
    b = subnet.eval()(images)
    diff = relative_difference(a, b)
    if not diff <= tolerance:
        raise SalnasError(
            f"extraction check failed: supernet and standalone outputs differ by "
            f"{diff:.2e} (relative) > {tolerance:g}"
        )
    return diff


def save_subnet(path: Path, subnet: SalNet, genome: Genome, config: Config, **meta: Any) -> None:
    """Write a standalone model file: weights, genome, search space and run config."""
    payload = {
        "format": MODEL_FORMAT,
        "genome": genome.to_json(),
        "space": genome.space.to_config() if genome.space is not None else None,
        "config": config.model_dump(mode="json"),
        "state_dict": subnet.state_dict(),
        "meta": json.dumps(meta, default=str),
    }
    save_torch_atomic(path, payload)


def load_subnet(
    path: Path, payload: dict[str, Any] | None = None
) -> tuple[SalNet, Genome, Config, dict[str, Any]]:
    """Rebuild a saved standalone model (``torch.load(weights_only=True)``); ``payload`` is the
    file's content when the caller has already read it."""
    if payload is None:
        payload = load_torch_safe(
            path, "model file", (MODEL_FORMAT,), "make one with `salnas supernet extract`"
        )
    space = SearchSpace(payload["space"])
    genome = Genome.from_json(payload["genome"], space)
    net = Supernet(space, pretrained=False).extract(genome)
    net.load_state_dict(payload["state_dict"])
    config = config_from_dict(payload["config"], f"{path} (embedded config)")
    return net.eval(), genome, config, json.loads(payload["meta"])


class ImageSource(Protocol):
    """What prediction reads: an RGB image per stem (a dataset, or a folder of plain images)."""

    def load_image(self, stem: str) -> np.ndarray: ...


def _input_tensor(image: np.ndarray, resolution: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float RGB in [0, 1] at the model's input resolution."""
    x = torch.from_numpy(np.array(resize_image(image, resolution)))
    return x.permute(2, 0, 1).float() / 255.0


def _density_at(density: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one (h, w) density to ``size``, renormalised to sum 1.

    Bilinear interpolation keeps values, not mass: the resized map sums to about the area
    ratio, so it is divided by its own sum (in float64) again.
    """
    out = F.interpolate(density[None, None].double(), size=size, mode="bilinear",
                        align_corners=False)[0, 0].clamp_min(0)
    total = out.sum()
    if total > 0:
        out = out / total
    return out.float().cpu().numpy()


@torch.no_grad()
def predict_batch(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: Sequence[np.ndarray],
    resolution: tuple[int, int],
    device: torch.device = torch.device("cpu"),
) -> list[np.ndarray]:
    """Saliency densities of uint8 RGB images in one (N, 3, H, W) forward pass, each at its
    image's original size and summing to 1 (float32)."""
    if not images:
        return []
    x = torch.stack([_input_tensor(im, resolution) for im in images]).to(device)
    density = logits_to_density(model(x))
    return [_density_at(d, tuple(im.shape[:2])) for d, im in zip(density, images, strict=True)]


def predict_image(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    resolution: tuple[int, int],
    device: torch.device = torch.device("cpu"),
) -> np.ndarray:
    """Saliency density of one uint8 RGB image at the image's original size, summing to 1.

    The spatial softmax of the logits, bilinearly resized to the image and renormalised (the
    metrics normalise maps themselves, so scores do not depend on this scale).
    """
    return predict_batch(model, [image], resolution, device)[0]


def predict_stems(
    model: Callable[[torch.Tensor], torch.Tensor],
    resolution: tuple[int, int],
    source: ImageSource,
    stems: list[str],
    out_dir: Path,
    fmt: str = "png",
    progress: bool | None = None,
    *,
    batch_size: int = 1,
    overlay_dir: Path | None = None,
    alpha: float = 0.5,
) -> list[Path]:
    """Write ``out_dir/<stem>.<fmt>`` for every stem, at each image's original size.

    ``png``: 16-bit, min-max scaled; ``npy``: the float32 density (sums to 1). Images go
    through the model ``batch_size`` at a time. With ``overlay_dir``, also a Viridis heatmap
    blended over the image (:func:`salnas.colormap.heatmap_overlay`) as
    ``overlay_dir/<stem>.png``. ``progress``: None decides by the terminal.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from salnas.colormap import heatmap_overlay
    from salnas.io import atomic_open, progress_enabled
    from salnas.predictions import write_prediction

    if fmt not in ("png", "npy"):
        raise SalnasError(f"--format must be png or npy, got '{fmt}'")
    if batch_size < 1:
        raise SalnasError(f"--batch-size must be at least 1, got {batch_size}")
    if not 0.0 <= alpha <= 1.0:
        raise SalnasError(f"--alpha must be in [0, 1], got {alpha}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tqdm(total=len(stems), desc="predicting", unit="image",
              disable=not progress_enabled(progress)) as bar:
        for start in range(0, len(stems), batch_size):
            chunk = stems[start:start + batch_size]
            images = [source.load_image(stem) for stem in chunk]
            for stem, image, saliency in zip(
                chunk, images, predict_batch(model, images, resolution), strict=True
            ):
                path = out_dir / f"{stem}.{fmt}"
                write_prediction(path, saliency)
                written.append(path)
                if overlay_dir is not None:
                    with atomic_open(overlay_dir / f"{stem}.png", "wb") as fh:
                        Image.fromarray(heatmap_overlay(image, saliency, alpha)).save(
                            fh, format="PNG")
            bar.update(len(chunk))
    return written
