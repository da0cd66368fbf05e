"""Knowledge distillation from a frozen teacher of another architecture, with cached targets.

``distill.teacher`` names the teacher of the ``teacher`` arm:

* ``self``: no teacher arm (the Self-KD arm's teacher is the student's own average);
* ``max``: the space's max subnet, trained once in the run as the max peer (its baseline arm
  at the first seed), frozen;
* ``model:PATH``: any salnas model file (``.pt``, ``.ts`` or ``.onnx``).

The target is ``alpha * ground_truth + (1 - alpha) * teacher`` as for Self-KD. The teacher
never trains, so its prediction of every training image (and of its mirror image, for the
horizontal flips) is computed once, at the student's input resolution, and cached: the
teacher arm costs one teacher pass over the training set, not one per step. An optional
temperature ``T`` softens the teacher's density, ``softmax(logits / T)`` over the pixels
(``distill.teacher_temperature``, 1: none), as in Hinton et al.'s KD.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from salnas.datasets.batches import iterate_batches, resize_images
from salnas.datasets.prepare import SaliencyDataset
from salnas.errors import ConfigError

__all__ = ["CachedTeacher", "parse_teacher"]

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def parse_teacher(spec: str) -> tuple[str, Path | None]:
    """``("self" | "max" | "model", path)`` of a ``distill.teacher`` value."""
    if spec in ("self", "max"):
        return spec, None
    if spec.startswith("model:") and len(spec) > len("model:"):
        return "model", Path(spec.split(":", 1)[1])
    raise ConfigError(f"distill.teacher {spec!r}: use self, max or model:PATH (a .pt, .ts or "
                      ".onnx salnas model)")


class CachedTeacher:
    """A frozen teacher's densities of a training set, computed once.

    ``targets(batch)`` returns the cached (B, H, W) densities of a batch of that set, flipped
    like the batch's images; the model is not called again.
    """

    ready = True  # a fixed teacher is usable from the first step

    def __init__(self, model: ModelFn, data: SaliencyDataset, resolution: Sequence[int], *,
                 batch_size: int = 8, temperature: float = 1.0,
                 device: torch.device | str = "cpu") -> None:
        if temperature <= 0:
            raise ConfigError(f"distill.teacher_temperature must be > 0, got {temperature}")
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.temperature = float(temperature)
        size = data.prepared.images.shape[1:3]
        n = len(data.prepared.stems)
        # (dataset index, flipped) -> density at the data resolution, float32
        self.cache = torch.zeros(n, 2, int(size[0]), int(size[1]))
        self.filled = torch.zeros(n, 2, dtype=torch.bool)
        plain = SaliencyDataset(data.prepared, [data.prepared.stems[i] for i in data.indices])
        if hasattr(model, "eval"):
            model.eval()
        with torch.no_grad():
            for batch in iterate_batches(plain, batch_size, shuffle=False, drop_last=False):
                index = batch["index"]
                images = batch["image"].to(device)
                for flip in (False, True):
                    x = images.flip(-1) if flip else images
                    self.cache[index, int(flip)] = self._density(model, x).cpu()
                    self.filled[index, int(flip)] = True

    def _density(self, model: ModelFn, images: torch.Tensor) -> torch.Tensor:
        logits = model(resize_images(images, self.resolution))
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear",
                                   align_corners=False)
        flat = (logits.float() / self.temperature).flatten(1).softmax(1)
        return flat.view(logits.shape[0], *logits.shape[-2:])

    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The cached densities (B, H, W) of ``batch`` (its ``index`` and ``flipped``)."""
        index = batch["index"].long()
        flipped = batch.get("flipped", torch.zeros_like(index, dtype=torch.bool)).long()
        if not bool(self.filled[index, flipped].all()):
            raise ValueError("CachedTeacher: a batch item is not in the cached training set")
        return self.cache[index, flipped]

    def target(self, batch: dict[str, torch.Tensor], images: torch.Tensor,
               resolution: Sequence[int]) -> torch.Tensor:
        """The trainer's teacher interface: the cached densities of ``batch``."""
        return self.targets(batch).to(images.device)
