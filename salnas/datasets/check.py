"""``salnas data check``: every file-level problem of a dataset, and what it holds."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from salnas.datasets.base import ProblemError, SaliencySource
from salnas.errors import DatasetError


@dataclass
class CheckReport:
    spec: str
    n_images: int = 0
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    fixations_per_image: list[int] = field(default_factory=list)
    observers_per_image: list[int] = field(default_factory=list)
    fixations_outside: int = 0
    images_with_outside: int = 0
    has_maps: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, object]:
        fpi = np.asarray(self.fixations_per_image or [0])
        opi = np.asarray(self.observers_per_image or [0])
        return {
            "dataset": self.spec,
            "images": self.n_images,
            "sizes (HxW: count)": {f"{h}x{w}": c for (h, w), c in self.sizes.most_common()},
            "fixations per image (min/mean/max)": f"{fpi.min()} / {fpi.mean():.1f} / {fpi.max()}",
            "observers per image (min/mean/max)": f"{opi.min()} / {opi.mean():.1f} / {opi.max()}",
            "fixations outside the image (dropped)": (
                f"{self.fixations_outside} in {self.images_with_outside} images"
            ),
            "ground-truth maps shipped": self.has_maps,
            "problems": len(self.problems),
        }

    def raise_if_problems(self) -> None:
        if self.problems:
            raise DatasetError(
                f"dataset {self.spec} has {len(self.problems)} problem(s); fix them or remove the "
                "files named (run `salnas data check` for the full report)",
                self.problems,
            )


def check_source(source: SaliencySource, progress: bool = True) -> CheckReport:
    """Decode every image and fixation file fully and collect every problem, naming files."""
    report = CheckReport(spec=source.spec)
    report.problems.extend(source.structural_problems())
    stems = source.stems()
    if not stems:
        report.problems.append(f"{source.spec}: no image with fixations found")
    for stem in tqdm(stems, desc=f"checking {source.kind}", disable=not progress, leave=False):
        try:
            image = source.load_image(stem)
            fix = source.load_fixations(stem)
            gt_map = source.load_map(stem)
        except ProblemError as e:
            report.problems.append(str(e))
            continue
        size = image.shape[:2]
        report.n_images += 1
        report.sizes[(int(size[0]), int(size[1]))] += 1
        inside = fix.inside(size)
        n_out = int((~inside).sum())
        report.fixations_outside += n_out
        report.images_with_outside += int(n_out > 0)
        report.fixations_per_image.append(int(inside.sum()))
        report.observers_per_image.append(len(fix.subjects))
        if inside.sum() == 0:
            report.problems.append(
                f"{source.describe()}: image '{stem}' has no fixation on the image"
            )
        if gt_map is not None:
            report.has_maps = True
            if gt_map.shape[:2] != size:
                report.problems.append(
                    f"{source.map_path(stem) or stem}: ground-truth map is "
                    f"{gt_map.shape[1]}x{gt_map.shape[0]} (WxH), the image {size[1]}x{size[0]}"
                )
            elif not np.isfinite(gt_map).all() or not (gt_map > 0).any():
                report.problems.append(
                    f"{source.map_path(stem) or stem}: ground-truth map is all zero (or not "
                    "finite): no density to learn or score; fix or remove the map"
                )
    return report
