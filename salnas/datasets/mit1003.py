"""MIT1003 as shipped: ``ALLSTIMULI/`` and ``ALLFIXATIONMAPS/`` (Judd et al., ICCV 2009).

Layout::

    PATH/
      ALLSTIMULI/<stem>.jpeg                  1003 images (a few are .jpg), longer side 1024
      ALLFIXATIONMAPS/<stem>_fixPts.jpg       binary image: white where someone fixated
      ALLFIXATIONMAPS/<stem>_fixMap.jpg       the authors' continuous fixation map

Fixations are the white pixels of ``<stem>_fixPts.jpg``: because it is a JPEG, a pixel
counts as fixated when its grey value is > 127; its (row, column) is the 0-based
(y, x) of the fixation, which must be in the image's frame (the points image has the
image's size, otherwise it is a problem). This layout carries **no observer ids** and
keeps **one point per fixated pixel** (several observers fixating one pixel count once):
every fixation gets subject 0, so split-half inter-observer consistency cannot split
observers on MIT1003 (the per-observer data is only in the raw ``DATA/`` eye-tracking
files, which this layout does not read). ``<stem>_fixMap.jpg`` is the ground-truth map
(:meth:`Mit1003Source.load_map`).

Problems, each naming the file: an image without ``_fixPts`` file, a ``_fixPts`` file
without image, a ``_fixMap`` without image or an image without ``_fixMap`` (once any
exists), two images with one stem, a points image of another size than its image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from salnas.datasets.base import (
    IMAGE_SUFFIXES,
    FileLayoutSource,
    ProblemError,
    Scan,
    register,
    scan_files,
)
from salnas.density import Fixations
from salnas.errors import DatasetError

#: a pixel of a ``_fixPts`` JPEG is a fixation when its grey value exceeds this
POINT_THRESHOLD = 127


def read_points_image(path: Path, size: tuple[int, int]) -> Fixations:
    """Fixations (subject 0) at the pixels of a binary points image brighter than 127."""
    try:
        with Image.open(path) as img:
            img.load()
            grey = np.asarray(img.convert("L"))
    except FileNotFoundError as e:
        raise ProblemError(f"{path}: fixation-points image is missing") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ProblemError(f"{path}: unreadable or truncated fixation-points image ({e})") from e
    if grey.shape != tuple(size):
        raise ProblemError(
            f"{path}: fixation-points image is {grey.shape[1]}x{grey.shape[0]} (WxH) but its "
            f"image is {size[1]}x{size[0]}"
        )
    rows, cols = np.nonzero(grey > POINT_THRESHOLD)
    return Fixations.from_arrays(cols, rows)


@register
class Mit1003Source(FileLayoutSource):
    """MIT1003 (Judd et al. 2009): 1003 images, 15 observers (ids not in this layout)."""

    kind = "mit1003"
    coordinate_note = (
        "0-based (row, column) of the white pixels of ALLFIXATIONMAPS/<stem>_fixPts.jpg; "
        "no observer ids (all subject 0), one point per fixated pixel"
    )

    def scan(self) -> Scan:
        assert self.root is not None
        stimuli, maps_dir = self.root / "ALLSTIMULI", self.root / "ALLFIXATIONMAPS"
        for folder in (stimuli, maps_dir):
            if not folder.is_dir():
                raise DatasetError(
                    f"mit1003: {folder} is missing; expected ALLSTIMULI/*.jpeg and "
                    "ALLFIXATIONMAPS/<stem>_fixPts.jpg, <stem>_fixMap.jpg"
                )
        images, p1 = scan_files(stimuli, IMAGE_SUFFIXES)
        points, p2 = scan_files(maps_dir, IMAGE_SUFFIXES, strip="_fixPts")
        maps, p3 = scan_files(maps_dir, IMAGE_SUFFIXES, strip="_fixMap")
        return images, points, maps, p1 + p2 + p3

    maps_where = "ALLFIXATIONMAPS/ (<stem>_fixMap.jpg)"

    def read_fixations(self, path: Path, stem: str) -> Fixations:
        return read_points_image(path, self.image_size(stem))

    def no_fixations(self, stem: str, image: Path) -> str:
        return f"{image}: image has no fixation points ALLFIXATIONMAPS/{stem}_fixPts.jpg"

    def no_image(self, stem: str, fixations: Path) -> str:
        return f"{fixations}: fixation points have no image ALLSTIMULI/{stem}.jpeg"
