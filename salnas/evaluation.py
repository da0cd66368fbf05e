"""Scoring saliency maps against a dataset at the original image size, and the two
reference models every report shows: the centre bias (floor) and split-half
inter-observer consistency (ceiling).

Protocol (the MIT benchmark's): predictions are resized (bilinear) to the original
image size; CC, KLD and SIM compare against the ground-truth density; NSS and the AUCs
against the fixated pixels; sAUC's negatives are the fixations of the other images of
the evaluated set; IG is measured against the centre-bias map of the training split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from salnas import metrics
from salnas.datasets.base import SaliencySource
from salnas.datasets.prepare import ground_truth, resize_map, resolve_sigma
from salnas.density import Fixations, density_from_fixations, fixation_count_map

PredictFn = Callable[[str, tuple[int, int]], np.ndarray]


@dataclass
class Target:
    """What a prediction of one image is scored against, at the original size."""

    stem: str
    size: tuple[int, int]
    density: np.ndarray
    fixmap: np.ndarray
    fixations: Fixations


def load_targets(
    source: SaliencySource,
    stems: Sequence[str],
    sigma_px: float | None = None,
    progress: bool = True,
) -> list[Target]:
    out = []
    for stem in tqdm(stems, desc="ground truth", disable=not progress, leave=False):
        density, fixmap, fix = ground_truth(source, stem, None, sigma_px)
        out.append(Target(stem, density.shape, density, fixmap, fix))  # type: ignore[arg-type]
    return out


def centre_bias_map(
    source: SaliencySource,
    train_stems: Sequence[str],
    sigma_px: float | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Mean ground-truth density of the training images, at their most common size."""
    sizes = Counter(source.image_size(s) for s in train_stems)
    size = sizes.most_common(1)[0][0]
    acc = np.zeros(size, np.float64)
    for stem in tqdm(train_stems, desc="centre bias", disable=not progress, leave=False):
        density, _, _ = ground_truth(source, stem, size, sigma_px)
        acc += density
    return (acc / max(acc.sum(), 1e-300)).astype(np.float32)


def _other_fixmaps(targets: Sequence[Target]) -> list[np.ndarray]:
    """For each image, the fixations of every *other* image of the set, in its own frame."""
    normalised = [
        ((t.fixations.x + 0.5) / t.size[1], (t.fixations.y + 0.5) / t.size[0]) for t in targets
    ]
    all_x = np.concatenate([n[0] for n in normalised])
    all_y = np.concatenate([n[1] for n in normalised])
    # Owned by stem, not position: split-half sets hold two targets per image.
    stem_ids = {stem: k for k, stem in enumerate(dict.fromkeys(t.stem for t in targets))}
    owner = np.concatenate(
        [np.full(n[0].size, stem_ids[t.stem]) for n, t in zip(normalised, targets, strict=True)]
    )
    out = []
    for t in targets:
        keep = owner != stem_ids[t.stem]
        fix = Fixations.from_arrays(all_x[keep] * t.size[1] - 0.5, all_y[keep] * t.size[0] - 0.5)
        out.append(fixation_count_map(fix, t.size))
    return out


def score_maps(
    predictions: Sequence[np.ndarray],
    targets: Sequence[Target],
    baseline: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Per-image metrics of ``predictions`` (any size; resized) against ``targets``.

    sAUC is computed when the set has more than one image, IG when ``baseline`` is given.
    Images of equal size are scored in batches.
    """
    names = list(names or metrics.METRIC_NAMES)
    if len(targets) < 2:
        names = [n for n in names if n != "sAUC"]
    if baseline is None:
        names = [n for n in names if n != "IG"]
    others = _other_fixmaps(targets) if "sAUC" in names else None
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, object] | None] = [None] * len(targets)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(targets):
        by_size.setdefault(t.size, []).append(i)
    for size, idx in by_size.items():
        base = torch.from_numpy(resize_map(baseline, size)) if baseline is not None else None
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            pred = torch.stack(
                [
                    metrics.resize_to(
                        torch.from_numpy(np.asarray(predictions[i], np.float32)), size
                    )
                    for i in chunk
                ]
            )
            scores = metrics.compute_metrics(
                pred,
                torch.stack([torch.from_numpy(targets[i].density) for i in chunk]),
                torch.stack([torch.from_numpy(targets[i].fixmap) for i in chunk]),
                baseline=None if base is None else base.expand(len(chunk), *size),
                other_fixmap=None
                if others is None
                else torch.stack([torch.from_numpy(others[i]) for i in chunk]),
                names=names,
                generator=generator,
            )
            for k, i in enumerate(chunk):
                rows[i] = {"stem": targets[i].stem, **{n: float(scores[n][k]) for n in names}}
    return pd.DataFrame(rows)


def split_half_predictions(
    targets: Sequence[Target], source: SaliencySource, sigma_px: float | None, seed: int = 0
) -> tuple[list[np.ndarray], list[Target]] | None:
    """Inter-observer consistency: half the observers predict the other half, both ways.

    Returns (predictions, targets) with two entries per image (A->B and B->A), or None
    when the dataset records no observer ids.
    """
    preds: list[np.ndarray] = []
    halves: list[Target] = []
    for i, t in enumerate(targets):
        subjects = t.fixations.subjects
        if subjects.size < 2:
            return None
        rng = np.random.default_rng([seed, i])
        perm = rng.permutation(subjects)
        groups = (perm[: subjects.size // 2], perm[subjects.size // 2 :])
        sigma = resolve_sigma(source, t.size, sigma_px)
        parts = []
        for g in groups:
            fix = t.fixations.select(np.isin(t.fixations.subject, g))
            parts.append(
                (density_from_fixations(fix, t.size, sigma), fixation_count_map(fix, t.size), fix)
            )
        for a, b in ((0, 1), (1, 0)):
            preds.append(parts[a][0])
            halves.append(Target(t.stem, t.size, parts[b][0], parts[b][1], parts[b][2]))
    return preds, halves


def summarise(per_image: pd.DataFrame) -> dict[str, float]:
    return {c: float(per_image[c].mean()) for c in per_image.columns if c != "stem"}


def evaluate_predictions(
    predict: PredictFn,
    targets: Sequence[Target],
    baseline: np.ndarray | None,
    progress: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Ask ``predict(stem, size)`` for every target and score the maps."""
    maps = [
        predict(t.stem, t.size)
        for t in tqdm(targets, desc="predictions", disable=not progress, leave=False)
    ]
    return score_maps(maps, targets, baseline, seed=seed)


def compute_baselines(
    source: SaliencySource,
    train: Sequence[str],
    test: Sequence[str],
    sigma_px: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, object]:
    """The floor (centre bias) and ceiling (split-half observers) on ``test``, all metrics.

    On synthetic data the generating map, the true ceiling there, is scored too. Returns
    the JSON document `salnas baselines` writes.
    """
    targets = load_targets(source, test, sigma_px, progress)
    bias = centre_bias_map(source, train, sigma_px, progress)
    report: dict[str, object] = {
        "centre_bias": summarise(score_maps([bias] * len(targets), targets, bias, seed=seed)),
    }
    if hasattr(source, "generating_map"):
        truth = [source.generating_map(t.stem) for t in targets]
        report["generating_map"] = summarise(score_maps(truth, targets, bias, seed=seed))
    halves = split_half_predictions(targets, source, sigma_px, seed=seed)
    if halves is not None:
        report["inter_observer"] = summarise(score_maps(halves[0], halves[1], bias, seed=seed))
    report.update(
        {
            "data": source.spec,
            "split": "test",
            "n_images": len(test),
            "n_train": len(train),
            "notes": {
                "centre_bias": "mean training ground-truth density, scored on the test split",
                "inter_observer": (
                    "half the observers' density predicts the other half, both ways, averaged; "
                    "KLD and IG of this ceiling suffer from the sparse halves"
                ),
                "generating_map": "synthetic only: the map the fixations were sampled from",
            },
        }
    )
    return report
