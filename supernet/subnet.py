"""Standalone subnets: extraction from a trained supernet, saving, loading and prediction."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salnas.config import Config, config_from_dict
from salnas.datasets import SaliencySource
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


@torch.no_grad()
def predict_image(
    model: nn.Module,
    image: np.ndarray,
    resolution: tuple[int, int],
    device: torch.device = torch.device("cpu"),
) -> np.ndarray:
    """Saliency density of one uint8 RGB image, at the image's original size."""
    x = (
        torch.from_numpy(np.array(resize_image(image, resolution))).permute(2, 0, 1)[None].float()
        / 255.0
    )
    logits = model(x.to(device))
    density = logits_to_density(logits)[None]
    out = F.interpolate(density, size=image.shape[:2], mode="bilinear", align_corners=False)
    return out[0, 0].clamp_min(0).cpu().numpy()


def predict_stems(
    model: Callable[[torch.Tensor], torch.Tensor],
    resolution: tuple[int, int],
    source: SaliencySource,
    stems: list[str],
    out_dir: Path,
    fmt: str = "png",
    progress: bool = True,
) -> list[Path]:
    """Write ``out_dir/<stem>.<fmt>`` for every stem, at each image's original size."""
    from tqdm.auto import tqdm

    from salnas.predictions import write_prediction

    if fmt not in ("png", "npy"):
        raise SalnasError(f"--format must be png or npy, got '{fmt}'")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in tqdm(stems, desc="predicting", disable=not progress):
        saliency = predict_image(model, source.load_image(stem), resolution)
        path = out_dir / f"{stem}.{fmt}"
        write_prediction(path, saliency)
        written.append(path)
    return written
