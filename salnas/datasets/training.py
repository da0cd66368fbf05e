"""The data of a run: the dataset opened, checked and cached, and its train/val/test split.

The split is written to ``split.json`` in the run's supernet directory the first time and
read back by every later stage, so all stages of a run see the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from salnas.config import Config
from salnas.datasets.base import open_source
from salnas.datasets.prepare import PreparedDataset, SaliencyDataset, prepare
from salnas.datasets.split import load_split, resolve_split, save_split
from salnas.errors import DatasetError
from salnas.layout import SPLIT_JSON

__all__ = ["TrainingData", "load_training_data"]


@dataclass
class TrainingData:
    """A prepared dataset, its split, and the train and validation item sets."""

    prepared: PreparedDataset
    split: dict[str, list[str]]
    train: SaliencyDataset
    val: SaliencyDataset


def load_training_data(
    config: Config, out_dir: Path | None, progress: bool = True
) -> TrainingData:
    """Open, check and cache the dataset; reuse ``out_dir/split.json`` when there is one
    (else make the seeded split and write it there)."""
    source = open_source(config.data.spec)
    prepared = prepare(
        source,
        config.data.resolution,
        config.data.sigma_px,
        Path(config.data.cache_dir) if config.data.cache_dir else None,
        progress,
    )
    split_path = Path(out_dir) / SPLIT_JSON if out_dir is not None else None
    if split_path is not None and split_path.is_file():
        split = load_split(split_path, prepared.stems)
    else:
        split = resolve_split(
            prepared.stems,
            source.default_split,
            None,
            config.data.split_seed,
            config.data.val,
            config.data.test,
        )
        if split_path is not None:
            save_split(
                split_path,
                split,
                data=source.spec,
                seed=config.data.split_seed,
                fingerprint=source.fingerprint(),
            )
    for part, setting in (("val", "data.val"), ("test", "data.test")):
        if not split[part]:  # validation and test scores of zero images would read as 0.0
            where = f"{split_path}" if split_path is not None and split_path.is_file() else (
                f"{setting} ({getattr(config.data, part)!r})")
            raise DatasetError(
                f"the {part} split of {source.spec} is empty ({where}, {len(prepared.stems)} "
                f"images); every stage needs >= 1 {part} image: raise {setting}")
    val_stems = (
        split["val"][: config.supernet.val_images] if config.supernet.val_images else split["val"]
    )
    return TrainingData(
        prepared,
        split,
        SaliencyDataset(prepared, split["train"], hflip=config.data.hflip, seed=config.seed),
        SaliencyDataset(prepared, val_stems),
    )
