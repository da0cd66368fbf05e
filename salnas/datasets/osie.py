"""OSIE as shipped: ``stimuli/*.jpg`` and ``fixations.mat`` (1-based pixel coordinates)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.io

from salnas.datasets.base import (
    ProblemError,
    SaliencySource,
    find_images,
    header_size,
    outside_problem,
    read_rgb,
    register,
    resolves_outside,
)
from salnas.density import Fixations
from salnas.errors import DatasetError


@register
class OsieSource(SaliencySource):
    """OSIE (Xu et al., JoV 2014): 700 images 800x600, 15 observers, sigma 24 px (1 degree)."""

    kind = "osie"
    default_sigma_px = 24.0
    default_split = (100, 100)  # 500 / 100 / 100, the split used in the literature
    coordinate_note = "1-based pixels in fixations.mat, converted to 0-based"

    @property
    def mat_path(self) -> Path:
        assert self.root is not None
        return self.root / "fixations.mat"

    @cached_property
    def _image_scan(self) -> tuple[dict[str, Path], list[str]]:
        """(stimuli, problems): a stimulus that links outside the dataset is refused."""
        assert self.root is not None
        found = find_images(self.root / "stimuli")
        outside = {s for s, p in found.items() if resolves_outside(p, self.root)}
        problems = [outside_problem(found[s], self.root) for s in sorted(outside)]
        return {s: p for s, p in found.items() if s not in outside}, problems

    @cached_property
    def _images(self) -> dict[str, Path]:
        assert self.root is not None
        images = self._image_scan[0]
        if not images:
            raise DatasetError(
                f"osie: no images in {self.root / 'stimuli'} (expected stimuli/*.jpg)"
            )
        return images

    @cached_property
    def _fixations(self) -> dict[str, Fixations]:
        if not self.mat_path.is_file():
            raise DatasetError(f"osie: {self.mat_path} is missing (it holds every fixation)")
        try:
            mat = scipy.io.loadmat(self.mat_path, squeeze_me=True, struct_as_record=False)
            records = np.atleast_1d(mat["fixations"])
        except (OSError, ValueError, KeyError, NotImplementedError) as e:
            raise DatasetError(
                f"osie: cannot read {self.mat_path} ({e}); expected a struct array 'fixations' "
                "with fields img and subjects(k).fix_x/fix_y"
            ) from e
        out: dict[str, Fixations] = {}
        for rec in records:
            xs, ys, ids = [], [], []
            for k, subj in enumerate(np.atleast_1d(rec.subjects)):
                fx = np.atleast_1d(np.asarray(subj.fix_x, np.float64))
                fy = np.atleast_1d(np.asarray(subj.fix_y, np.float64))
                xs.append(fx - 1.0)
                ys.append(fy - 1.0)
                ids.append(np.full(fx.size, k, np.int64))
            out[Path(str(rec.img)).stem] = Fixations.from_arrays(
                np.concatenate(xs), np.concatenate(ys), np.concatenate(ids)
            )
        return out

    def stems(self) -> list[str]:
        return sorted(set(self._images) & set(self._fixations))
    def load_image(self, stem: str) -> np.ndarray:
        return read_rgb(self._images[stem])

    def image_size(self, stem: str) -> tuple[int, int]:
        return header_size(self._images[stem])

    def load_fixations(self, stem: str) -> Fixations:
        try:
            return self._fixations[stem]
        except KeyError:
            raise ProblemError(f"{self.mat_path}: no fixations for image {stem}") from None

    def structural_problems(self) -> list[str]:
        problems = list(self._image_scan[1])
        problems += [
            f"{path}: image has no fixations in {self.mat_path.name}"
            for stem, path in self._images.items()
            if stem not in self._fixations
        ]
        problems += [
            f"{self.mat_path}: fixations for '{stem}' but no image stimuli/{stem}.jpg"
            for stem in self._fixations
            if stem not in self._images
        ]
        return problems
