"""Deterministic, seeded train/val/test splits, written to and read back from split.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from salnas.errors import DatasetError
from salnas.io import write_json_atomic

SPLITS = ("train", "val", "test")
SPLIT_CHOICES = ("all", *SPLITS)


def _count(share: float | int, n: int, name: str) -> int:
    if isinstance(share, bool) or share < 0:
        raise DatasetError(
            f"split setting '{name}' must be a count >= 0 or a fraction in [0, 1), got {share}"
        )
    if isinstance(share, float) and share < 1:
        return round(share * n)
    return int(share)


def make_split(
    stems: list[str], seed: int, val: float | int, test: float | int
) -> dict[str, list[str]]:
    """Shuffle ``stems`` with ``seed`` and cut val and test (counts, or fractions < 1) off it."""
    n = len(stems)
    n_val, n_test = _count(val, n, "val"), _count(test, n, "test")
    if n_val + n_test >= n:
        raise DatasetError(
            f"split leaves no training images: {n} images, val={n_val}, test={n_test}; "
            "lower data.val / data.test"
        )
    order = np.random.default_rng(seed).permutation(n)
    ordered = [sorted(stems)[i] for i in order]
    return {
        "test": sorted(ordered[:n_test]),
        "val": sorted(ordered[n_test : n_test + n_val]),
        "train": sorted(ordered[n_test + n_val :]),
    }


def save_split(path: Path, split: dict[str, list[str]], **meta: object) -> None:
    write_json_atomic(path, {**meta, "sizes": {k: len(split[k]) for k in SPLITS}, **split})


def load_split(path: Path, known_stems: list[str]) -> dict[str, list[str]]:
    """Read a split file and check that every stem in it still exists in the dataset."""
    try:
        data = json.loads(Path(path).read_text())
        split = {k: list(data[k]) for k in SPLITS}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(
            f"{path}: not a valid split file ({e}); delete it to make a new split"
        ) from e
    known = set(known_stems)
    missing = [s for k in SPLITS for s in split[k] if s not in known]
    if missing:
        raise DatasetError(
            f"{path}: {len(missing)} images of this split are not in the dataset "
            f"(e.g. {missing[:3]}); the dataset changed since the split was made"
        )
    return split


def resolve_split(
    stems: list[str],
    default: tuple[float | int, float | int],
    split_file: Path | None = None,
    seed: int = 0,
    val: float | int | None = None,
    test: float | int | None = None,
) -> dict[str, list[str]]:
    """A run's split: read from ``split_file`` when given, else cut with ``seed``.

    ``val``/``test`` of None take the dataset's ``default`` (its ``default_split``).
    """
    if split_file is not None:
        return load_split(split_file, stems)
    return make_split(
        stems, seed, default[0] if val is None else val, default[1] if test is None else test
    )


def split_stems(parts: dict[str, list[str]], stems: list[str], name: str) -> list[str]:
    """The stems of split ``name`` (``all``, ``train``, ``val`` or ``test``)."""
    if name not in SPLIT_CHOICES:
        raise DatasetError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got '{name}'")
    return list(stems) if name == "all" else parts[name]
