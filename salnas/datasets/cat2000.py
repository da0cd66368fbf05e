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

from pathlib import Path

import numpy as np

from salnas.datasets.base import (
    IMAGE_SUFFIXES,
    FileLayoutSource,
    ProblemError,
    Scan,
    read_mat,
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
class Cat2000Source(FileLayoutSource):
    """CAT2000 train (Borji & Itti 2015): 2000 images, ~18 observers each (ids not shipped)."""

    kind = "cat2000"
    coordinate_note = (
        "0-based (row, column) of the nonzero entries of FIXATIONLOCS/<Category>/<name>.mat; "
        "no observer ids (all subject 0), one point per fixated pixel"
    )

    def scan(self) -> Scan:
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

    maps_where = "FIXATIONMAPS/"

    def read_fixations(self, path: Path, stem: str) -> Fixations:
        return read_fixation_locations(path, self.image_size(stem))

    def no_fixations(self, stem: str, image: Path) -> str:
        where = f"FIXATIONLOCS/{image.parent.name}/{image.stem}.mat"
        return f"{image}: image has no fixation locations {where}"

    def no_image(self, stem: str, fixations: Path) -> str:
        where = f"Stimuli/{fixations.parent.name}/{fixations.stem}.jpg"
        return f"{fixations}: fixation locations have no image {where}"
