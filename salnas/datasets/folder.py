"""``folder:PATH`` — the generic layout, for bringing your own data.

Layout
------
::

    PATH/
      images/<stem>.jpg      the stimulus (.jpg, .jpeg, .png or .bmp; grey, palette or
                             RGBA images are converted to RGB)
      fixations/<stem>.csv   the fixations of every observer on that image
      maps/<stem>.png        optional: your own ground-truth density map of that image

An image and its fixations pair by *stem*, the file name without its extension
(``images/beach_01.jpg`` <-> ``fixations/beach_01.csv``). Stems are used as item names
and to save predictions as ``DIR/<stem>.png``, so each stem must be unique within
``images/`` (``a.jpg`` next to ``a.png`` is a problem). Files whose name starts with a
dot, sub-folders, non-image files in ``images/`` and ``maps/`` and non-``.csv`` files in
``fixations/`` are ignored.

Fixation files (``fixations/<stem>.csv``)
-----------------------------------------
* UTF-8 text (a byte-order mark is allowed), **comma**-separated, quoting as in
  Python's :mod:`csv`. One fixation per row; blank lines are skipped.
* The **first line is a header** naming the columns, in any order; names are matched
  case-insensitively after stripping spaces:

  - ``x`` and ``y`` (required): the fixation in **0-based pixel coordinates of the
    image's own frame** (the file in ``images/``, not a resized copy): ``x`` is the
    column, ``y`` the row, pixel centres lie at integers, so ``0,0`` is the centre of
    the top-left pixel and a point belongs to pixel ``(round(y), round(x))``. Decimals
    are allowed. Points outside the image are kept by the loader; the shared policy of
    :mod:`salnas.density` drops them when making densities and ``salnas data check``
    counts them.
  - ``subject`` (optional): which observer made the fixation. When every value is an
    integer, the integers are the observer ids; otherwise (``s01``, ``anna``, ...) the
    distinct labels are numbered 0, 1, ... in sorted order. Without this column all
    fixations count as one observer (id 0), and split-half inter-observer consistency
    cannot be computed for that image.
  - any other column (``duration``, ``timestamp``, ...) is ignored.

* Each row has exactly as many fields as the header. At least one fixation row.

Example::

    x,y,subject
    120.5,80,0
    300,210,0
    118,95,1

Each of these is a problem reported with the file's path (and line number where it
applies): an empty file; a header without an ``x`` or ``y`` column (e.g. no header
line, or another delimiter); a column named twice; a row with too few or too many
fields; a non-numeric or non-finite ``x``/``y``; an empty ``subject``; a header
without any fixation row.

Ground-truth maps (``maps/<stem>.png``, optional)
-------------------------------------------------
A grayscale image (8- or 16-bit PNG recommended; JPEG/BMP accepted, colour is converted
to grey) with exactly the image's width and height; any scale, it is renormalised to sum
to 1. When shipped, a map is the ground-truth density of its image (unless a
``--sigma-px`` override asks for densities blurred from the fixations); without maps,
densities are blurred from the fixations with sigma = 3% of the image's longer side.
Maps are all-or-none: once ``maps/`` holds any map, every image needs one, and a map
without an image is a problem.

"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

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


def _field(value: str) -> str:
    return value.strip().lstrip("\ufeff").strip().lower()


def _quote(text: str, limit: int = 24) -> str:
    """A field for a message: quoted, and cut short (a message never dumps a file's lines)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_fixation_csv(path: Path) -> Fixations:
    """Read one ``fixations/<stem>.csv`` file (format in the module docstring)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError as e:
        raise ProblemError(f"{path}: fixation file is missing") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ProblemError(f"{path}: unreadable fixation file ({e})") from e
    numbered = [(i, row) for i, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if not numbered:
        raise ProblemError(f"{path}: empty fixation file; expected a header 'x,y[,subject]'")
    header_line, header = numbered[0]
    names = [_field(c) for c in header]
    for name in ("x", "y", "subject"):
        if names.count(name) > 1:
            raise ProblemError(f"{path}: line {header_line}: column '{name}' is named twice")
    if "x" not in names or "y" not in names:
        # The header's text is not echoed: a message never carries a file's content.
        other_delimiter = any(d in ",".join(header) for d in ";\t")
        hint = " (the file must be comma-separated)" if other_delimiter else ""
        raise ProblemError(
            f"{path}: line {header_line}: the header ({len(header)} column(s)) lacks an 'x' "
            f"and a 'y' column{hint}; the first line must name the columns, e.g. 'x,y,subject'"
        )
    ix, iy = names.index("x"), names.index("y")
    isub = names.index("subject") if "subject" in names else None
    xs: list[float] = []
    ys: list[float] = []
    labels: list[str] = []
    for line, row in numbered[1:]:
        if len(row) != len(names):
            raise ProblemError(
                f"{path}: line {line} has {len(row)} fields but the header has {len(names)}"
            )
        for col, out in ((ix, xs), (iy, ys)):
            text = row[col].strip()
            try:
                value = float(text)
            except ValueError:
                raise ProblemError(
                    f"{path}: line {line}: {names[col]} value {_quote(text)} is not a number"
                ) from None
            if not math.isfinite(value):
                raise ProblemError(
                    f"{path}: line {line}: {names[col]} value {_quote(text)} is not finite"
                )
            out.append(value)
        if isub is not None:
            label = row[isub].strip()
            if not label:
                raise ProblemError(f"{path}: line {line}: empty subject")
            labels.append(label)
    if not xs:
        raise ProblemError(f"{path}: header but no fixation rows")
    return Fixations.from_arrays(xs, ys, _subject_ids(labels) if isub is not None else None)


def _subject_ids(labels: list[str]) -> np.ndarray:
    try:
        return np.asarray([int(s) for s in labels], np.int64)
    except (ValueError, OverflowError):
        order = {label: i for i, label in enumerate(sorted(set(labels)))}
        return np.asarray([order[s] for s in labels], np.int64)


@register
class FolderSource(FileLayoutSource):
    """``folder:PATH``: images/, fixations/*.csv (0-based x, y, optional subject), maps/."""

    kind = "folder"
    coordinate_note = "0-based pixels (x column, y row) in fixations/<stem>.csv"

    def _dir(self, name: str) -> Path:
        assert self.root is not None
        return self.root / name

    def scan(self) -> Scan:
        for name, what in (("images", "images/<stem>.jpg"), ("fixations", "fixations/<stem>.csv")):
            if not self._dir(name).is_dir():
                raise DatasetError(
                    f"folder: {self._dir(name)} is missing; the folder layout needs {what} "
                    "(see `salnas.datasets.folder` for the format)"
                )
        images, p1 = scan_files(self._dir("images"), IMAGE_SUFFIXES)
        fixations, p2 = scan_files(self._dir("fixations"), (".csv",))
        maps, p3 = scan_files(self._dir("maps"), IMAGE_SUFFIXES)
        return images, fixations, maps, p1 + p2 + p3

    maps_where = "maps/"

    def read_fixations(self, path: Path, stem: str) -> Fixations:
        return parse_fixation_csv(path)

    def no_fixations(self, stem: str, image: Path) -> str:
        return f"{image}: image has no fixation file fixations/{stem}.csv"

    def no_image(self, stem: str, fixations: Path) -> str:
        return f"{fixations}: fixation file has no image images/{stem}.jpg|.png"
