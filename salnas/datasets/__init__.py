"""Saliency datasets: published layouts behind one interface, splits, checks and caching."""

from salnas.datasets import cat2000, folder, mit1003, osie, salicon, synthetic  # noqa: F401
from salnas.datasets.base import ProblemError, SaliencySource, open_source, registered_kinds
from salnas.datasets.check import CheckReport, check_source
from salnas.datasets.prepare import (
    PreparedDataset,
    SaliencyDataset,
    ground_truth,
    prepare,
    resolve_sigma,
)
from salnas.datasets.split import (
    SPLIT_CHOICES,
    load_split,
    make_split,
    resolve_split,
    save_split,
    split_stems,
)

__all__ = [
    "SPLIT_CHOICES",
    "CheckReport",
    "PreparedDataset",
    "ProblemError",
    "SaliencyDataset",
    "SaliencySource",
    "check_source",
    "ground_truth",
    "load_split",
    "make_split",
    "open_source",
    "prepare",
    "registered_kinds",
    "resolve_sigma",
    "resolve_split",
    "save_split",
    "split_stems",
]
