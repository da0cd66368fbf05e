"""CAT2000 training set as shipped (Borji & Itti 2015): 20 categories of 100 images each.

Layout (the ``trainSet`` folder)::

    PATH/
      Stimuli/<Category>/<name>.jpg          1920x1080 images (``Output/`` sub-folders ignored)
      FIXATIONLOCS/<Category>/<name>.mat     binary fixation-location matrix, image-sized
      FIXATIONMAPS/<Category>/<name>.jpg     the authors' continuous fixation map

The stem of ``Stimuli/Action/001.jpg`` is ``Action_001``: one file-name component, as
predictions are saved as ``DIR/<stem>.png``.

Fixations are the nonzero entries of the matrix in each ``.mat`` file (variable
``fixLocs``; a file with another name holding exactly one variable is accepted): entry
(row, column) is the 0-based (y, x) of a fixation. The matrix must have the image's size.
This layout carries **no observer ids** and keeps **one point per fixated pixel**: every
fixation gets subject 0, so split-half inter-observer consistency cannot split
observers on CAT2000. ``FIXATIONMAPS`` is the ground-truth map
(:meth:`Cat2000Source.load_map`); the test set (no fixations) is not a dataset here.

Problems, each naming the file: an image without ``.mat``, a ``.mat`` without image, a
map without image or an image without map (once any map exists), an unreadable
``.mat`` or one whose matrix is missing, not 2-D or not the image's size.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from salnas.datasets.base import (
    IMAGE_SUFFIXES,
    ProblemError,
    SaliencySource,
    header_size,
    map_problems,
    read_gray,
    read_mat,
    read_rgb,
    register,
    scan_files,
)
from salnas.density import Fixations
from salnas.errors import DatasetError

FIXLOCS_VARIABLE = "fixLocs"


def read_fixation_locations(path: Path, size: tuple[int, int]) -> Fixations:
    """Fixations (subject 0) at the nonzero entries of a binary, image-sized matrix."""
    mat = read_mat(path)
    names = [k for k in mat if not k.startswith("__")]
    if FIXLOCS_VARIABLE in mat:
        name = FIXLOCS_VARIABLE
    elif len(names) == 1:
        name = names[0]
    else:
        raise ProblemError(
            f"{path}: no variable '{FIXLOCS_VARIABLE}' (found {', '.join(names) or 'none'})"
        )
    value = mat[name]
    if hasattr(value, "toarray"):  # saved as a MATLAB sparse matrix
        value = value.toarray()
    try:
        locs = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ProblemError(f"{path}: variable '{name}' is not a numeric matrix") from None
    if locs.ndim != 2:
        raise ProblemError(f"{path}: variable '{name}' has shape {locs.shape}, expected 2-D (H, W)")
    if locs.shape != tuple(size):
        raise ProblemError(
            f"{path}: fixation matrix '{name}' is {locs.shape[1]}x{locs.shape[0]} (WxH) but the "
            f"image is {size[1]}x{size[0]}"
        )
    rows, cols = np.nonzero(np.nan_to_num(locs) != 0)
    return Fixations.from_arrays(cols, rows)


@register
class Cat2000Source(SaliencySource):
    """CAT2000 train (Borji & Itti 2015): 2000 images, ~18 observers each (ids not shipped)."""

    kind = "cat2000"
    coordinate_note = (
        "0-based (row, column) of the nonzero entries of FIXATIONLOCS/<Category>/<name>.mat; "
        "no observer ids (all subject 0), one point per fixated pixel"
    )

    @cached_property
    def _scan(self) -> tuple[dict[str, Path], dict[str, Path], dict[str, Path], list[str]]:
        assert self.root is not None
        stimuli = self.root / "Stimuli"
        for folder in (stimuli, self.root / "FIXATIONLOCS"):
            if not folder.is_dir():
                raise DatasetError(
                    f"cat2000: {folder} is missing; expected the trainSet layout "
                    "Stimuli/<Category>/*.jpg, FIXATIONLOCS/<Category>/*.mat, FIXATIONMAPS/"
                )
        found: list[dict[str, Path]] = []
        problems: list[str] = []
        for top, suffixes in (
            ("Stimuli", IMAGE_SUFFIXES),
            ("FIXATIONLOCS", (".mat",)),
            ("FIXATIONMAPS", IMAGE_SUFFIXES),
        ):
            files: dict[str, Path] = {}
            base = self.root / top
            categories = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
            for category in categories:
                if category.name.startswith("."):
                    continue
                names, dup = scan_files(category, suffixes)
                problems += dup
                for name, path in names.items():
                    stem = f"{category.name}_{name}"
                    if stem in files:
                        problems.append(f"{path}: same stem '{stem}' as {files[stem]}")
                    else:
                        files[stem] = path
            found.append(files)
        images, locs, maps = found
        return images, locs, maps, problems

    def stems(self) -> list[str]:
        images, locs, _, _ = self._scan
        return sorted(set(images) & set(locs))

    def load_image(self, stem: str) -> np.ndarray:
        return read_rgb(self._scan[0][stem])

    def image_size(self, stem: str) -> tuple[int, int]:
        return header_size(self._scan[0][stem])

    def load_fixations(self, stem: str) -> Fixations:
        return read_fixation_locations(self._scan[1][stem], self.image_size(stem))

    def map_path(self, stem: str) -> Path | None:
        return self._scan[2].get(stem)

    def load_map(self, stem: str) -> np.ndarray | None:
        path = self.map_path(stem)
        return None if path is None else read_gray(path)

    def structural_problems(self) -> list[str]:
        images, locs, maps, problems = self._scan
        problems = list(problems)
        problems += [
            f"{path}: image has no fixation locations "
            f"FIXATIONLOCS/{path.parent.name}/{path.stem}.mat"
            for stem, path in images.items()
            if stem not in locs
        ]
        problems += [
            f"{path}: fixation locations have no image Stimuli/{path.parent.name}/{path.stem}.jpg"
            for stem, path in locs.items()
            if stem not in images
        ]
        problems += map_problems(images, maps, "FIXATIONMAPS/", self.stems())
        return problems
