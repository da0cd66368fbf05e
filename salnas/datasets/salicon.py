"""SALICON, 2017 release (Jiang et al., CVPR 2015; LSUN 2017 challenge files).

Layout::

    PATH/
      images/{train,val,test}/COCO_*.jpg     640x480 MS-COCO images
      fixations/{train,val}/COCO_*.mat       one file per image (the test set has none)
      maps/{train,val}/COCO_*.png            optional: the authors' fixation maps

Each ``.mat`` file holds ``image`` (the image name), ``resolution`` ([H W]) and ``gaze``,
a struct array with one element per observer with fields ``location`` (raw mouse
samples), ``timestamp`` and ``fixations``. Only ``fixations`` is used: an M x 2 array
of **1-based** [x y] pixel coordinates, converted here to 0-based by subtracting 1. The
observer's index in ``gaze`` is its subject id. The 2015 release (COCO-style JSON
annotations) is not supported.

Only the split folders present under ``fixations/`` are read: images of a split
without a ``fixations/<split>`` folder (the test set) are not part of the dataset and
are not a problem. Within those splits an image pairs with the ``.mat`` file of the
same stem, the file stem (``COCO_val2014_000000000042``, unique across splits); an
image without ``.mat`` file, a ``.mat`` file without image, a stem in two split
folders, and a ``resolution`` or ``image`` entry that disagrees with the image file
are problems.

SALICON's own maps are blurred with sigma 19 px (``buildFixMap`` of the SALICON API),
which is this layout's default; 3% of 640 px would be 19.2 px. The published
train/val folders are not used as the split (``make_split`` draws its own).
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


def read_salicon_mat(path: Path, stem: str, size: tuple[int, int]) -> Fixations:
    """All observers' ``gaze(k).fixations`` of one SALICON 2017 file, made 0-based."""
    mat = read_mat(path)
    if "gaze" not in mat:
        raise ProblemError(
            f"{path}: no 'gaze' variable; expected a SALICON 2017 fixation file with "
            "image, resolution and gaze(k).fixations"
        )
    name = mat.get("image")
    if isinstance(name, str) and name and Path(name).stem != stem:
        raise ProblemError(f"{path}: holds the fixations of image '{name}', not of '{stem}'")
    if "resolution" in mat:
        try:
            res = np.asarray(mat["resolution"], dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ProblemError(f"{path}: 'resolution' is not numeric") from None
        if res.size != 2 or not np.isfinite(res).all():
            raise ProblemError(f"{path}: 'resolution' is {res.tolist()}, expected [H W]")
        if (int(res[0]), int(res[1])) != tuple(size):
            raise ProblemError(
                f"{path}: resolution [H W] = [{int(res[0])} {int(res[1])}] but the image is "
                f"{size[0]}x{size[1]} (HxW)"
            )
    xs, ys, ids = [], [], []
    for k, observer in enumerate(np.atleast_1d(np.asarray(mat["gaze"], dtype=object))):
        if not hasattr(observer, "fixations"):
            raise ProblemError(f"{path}: gaze({k + 1}) has no field 'fixations'")
        try:
            pts = np.asarray(observer.fixations, dtype=np.float64)
        except (TypeError, ValueError):
            raise ProblemError(f"{path}: gaze({k + 1}).fixations is not numeric") from None
        if pts.size == 0:
            continue
        if pts.ndim == 1 and pts.size == 2:  # one fixation, squeezed from 1 x 2
            pts = pts.reshape(1, 2)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ProblemError(
                f"{path}: gaze({k + 1}).fixations has shape {pts.shape}, expected M x 2 [x y]"
            )
        xs.append(pts[:, 0] - 1.0)
        ys.append(pts[:, 1] - 1.0)
        ids.append(np.full(len(pts), k, np.int64))
    if not xs:
        return Fixations.from_arrays([], [], [])
    return Fixations.from_arrays(np.concatenate(xs), np.concatenate(ys), np.concatenate(ids))


@register
class SaliconSource(FileLayoutSource):
    """SALICON 2017: 10000 train + 5000 val images with fixations, 640x480."""

    kind = "salicon"
    default_sigma_px = 19.0
    coordinate_note = "1-based [x y] in gaze(k).fixations of fixations/<split>/*.mat, made 0-based"

    def scan(self) -> Scan:
        assert self.root is not None
        fix_root = self.root / "fixations"
        if not fix_root.is_dir() or not (self.root / "images").is_dir():
            raise DatasetError(
                f"salicon: {self.root} needs images/<split>/*.jpg and fixations/<split>/*.mat "
                "(the SALICON 2017 release)"
            )
        images: dict[str, Path] = {}
        mats: dict[str, Path] = {}
        maps: dict[str, Path] = {}
        problems: list[str] = []
        splits = sorted(
            p.name for p in fix_root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        for split in splits:
            for top, suffixes, out in (
                ("images", IMAGE_SUFFIXES, images),
                ("fixations", (".mat",), mats),
                ("maps", IMAGE_SUFFIXES, maps),
            ):
                files, dup = scan_files(self.root / top / split, suffixes)
                problems += dup
                for stem, path in files.items():
                    if stem in out:
                        problems.append(f"{path}: same stem '{stem}' as {out[stem]}")
                    else:
                        out[stem] = path
        return images, mats, maps, problems

    maps_where = "maps/<split>/"

    def read_fixations(self, path: Path, stem: str) -> Fixations:
        return read_salicon_mat(path, stem, self.image_size(stem))

    def no_fixations(self, stem: str, image: Path) -> str:
        return f"{image}: image has no fixation file fixations/{image.parent.name}/{stem}.mat"

    def no_image(self, stem: str, fixations: Path) -> str:
        return f"{fixations}: fixation file has no image images/{fixations.parent.name}/{stem}.jpg"
