"""Writers of tiny synthetic datasets in each published layout, with known contents.

Every ``make_*`` function writes into ``root`` and returns a :class:`LayoutFixture`
holding what a loader must give back: stems, image sizes, the fixations in 0-based
coordinates (after any 1-based conversion), the maps when shipped, and the path of
every file, so tests can break one file and check that the problem names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

SIZE = (24, 32)  # (H, W) of most fixture images
ALT_SIZE = (20, 28)  # (H, W) of every third image, so sizes differ


@dataclass
class LayoutFixture:
    kind: str
    root: Path
    stems: list[str]
    sizes: dict[str, tuple[int, int]]
    #: stem -> (x, y, subject), 0-based, in the order the loader returns them
    fixations: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    images: dict[str, Path]
    fixation_files: dict[str, Path]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    map_files: dict[str, Path] = field(default_factory=dict)
    n_outside: int = 0  # fixations outside their image, over the whole dataset
    images_with_outside: int = 0

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.root}"


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([20240901, *key])


def _size(i: int, size: tuple[int, int]) -> tuple[int, int]:
    return ALT_SIZE if i % 3 == 2 else size


def write_image(path: Path, size: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth random RGB image (JPEG or PNG by suffix); returns the pixels written."""
    h, w = size
    coarse = _rng(seed).integers(0, 256, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))
    _save(Image.fromarray(pixels), path, quality=95)
    return pixels


def _save(img: Image.Image, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=quality)
    else:
        img.save(path)


def write_gray(path: Path, values: np.ndarray, bits: int = 8) -> np.ndarray:
    """A grayscale map: 8-bit JPEG/PNG or 16-bit PNG; returns the values as stored."""
    if bits == 16:
        arr = np.asarray(values, np.uint16)
        _save(Image.fromarray(arr), path, quality=100)  # mode I;16
    else:
        arr = np.asarray(values, np.uint8)
        _save(Image.fromarray(arr), path, quality=100)
    return arr.astype(np.float32)


def _blob_map(size: tuple[int, int], seed: int, peak: int) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = _rng(seed, 1).uniform(0.3, 0.7, 2) * (h, w)
    return np.round(peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2)))


def _points(size: tuple[int, int], n: int, seed: int, spacing: int = 3) -> list[tuple[int, int]]:
    """``n`` distinct integer pixels (x, y) at least ``spacing`` apart and off the border."""
    h, w = size
    rng = _rng(seed, 2)
    chosen: list[tuple[int, int]] = []
    while len(chosen) < n:
        x, y = int(rng.integers(2, w - 2)), int(rng.integers(2, h - 2))
        if all(max(abs(x - a), abs(y - b)) >= spacing for a, b in chosen):
            chosen.append((x, y))
    return chosen


# --------------------------------------------------------------------------- folder


def make_folder_dataset(
    root: Path,
    n: int = 6,
    size: tuple[int, int] = SIZE,
    with_maps: bool = False,
    map_bits: int = 8,
    subjects: str | None = "int",
    n_outside: int = 0,
    image_suffix: str = ".png",
) -> LayoutFixture:
    """``images/<stem>.png``, ``fixations/<stem>.csv`` (0-based x, y[, subject]), ``maps/``.

    ``subjects``: ``"int"`` writes integer ids 0..2, ``"labels"`` writes ``obs-a`` ..
    ``obs-c`` (loaded as 0..2), ``None`` writes no subject column (all 0). The CSV
    columns are in the order ``subject,duration,y,x`` to exercise column lookup.
    ``n_outside`` extra fixations outside the image are added to the first image.
    """
    root = Path(root)
    fx = LayoutFixture("folder", root, [], {}, {}, {}, {})
    labels = ["obs-a", "obs-b", "obs-c"]
    for i in range(n):
        stem = f"img_{i:02d}"
        hw = _size(i, size)
        h, w = hw
        img_path = root / "images" / f"{stem}{image_suffix}"
        write_image(img_path, hw, i)
        rng = _rng(i, 3)
        k = 4 + i % 3
        xs = np.round(rng.uniform(0, w - 1, k), 2)
        ys = np.round(rng.uniform(0, h - 1, k), 2)
        subj = np.arange(k) % 3
        if i == 0 and n_outside:
            # left of, right of, above and below the image (n_outside <= 4)
            out_x = np.asarray([-3.0, w - 0.5, 5.0, 2.0][:n_outside])
            out_y = np.asarray([4.0, 3.0, -0.75, h + 0.0][:n_outside])
            xs, ys = np.concatenate([xs, out_x]), np.concatenate([ys, out_y])
            subj = np.concatenate([subj, np.arange(n_outside) % 3])
            fx.n_outside += n_outside
            fx.images_with_outside += 1
        csv_path = root / "fixations" / f"{stem}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        if subjects is None:
            lines = ["duration,y,x"] + [f"200,{y},{x}" for x, y in zip(xs, ys, strict=True)]
            subj = np.zeros(len(xs), np.int64)
        else:
            lines = ["subject,duration,y,x"]
            for x, y, s in zip(xs, ys, subj, strict=True):
                label = str(s) if subjects == "int" else labels[s]
                lines.append(f"{label},200,{y},{x}")
        csv_path.write_text("\n".join(lines) + "\n")
        fx.stems.append(stem)
        fx.sizes[stem] = hw
        fx.fixations[stem] = (xs, ys, np.asarray(subj, np.int64))
        fx.images[stem] = img_path
        fx.fixation_files[stem] = csv_path
        if with_maps:
            peak = 60000 if map_bits == 16 else 250
            map_path = root / "maps" / f"{stem}.png"
            fx.maps[stem] = write_gray(map_path, _blob_map(hw, i, peak), bits=map_bits)
            fx.map_files[stem] = map_path
    return fx


# --------------------------------------------------------------------------- SALICON


def _salicon_gaze(observers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    gaze = np.zeros((len(observers), 1), dtype=[("location", "O"), ("timestamp", "O"),
                                                ("fixations", "O")])
    for k, fix in enumerate(observers):
        n_raw = 5 + len(fix)
        gaze[k, 0]["location"] = rng.integers(1, 30, (n_raw, 2)).astype(np.float64)
        gaze[k, 0]["timestamp"] = np.arange(n_raw, dtype=np.float64)[:, None] * 10
        gaze[k, 0]["fixations"] = fix
    return gaze


def make_salicon(
    root: Path,
    n_train: int = 3,
    n_val: int = 2,
    n_test: int = 2,
    size: tuple[int, int] = SIZE,
    with_maps: bool = True,
    n_outside: int = 0,
) -> LayoutFixture:
    """SALICON 2017: ``images/{train,val,test}``, ``fixations/{train,val}/*.mat`` holding
    ``gaze(k).fixations`` as 1-based [x y]; ``maps/{train,val}/*.png``.

    Observer 0 has 3 fixations, observer 1 exactly one (a 1 x 2 array, squeezed by
    loadmat), observer 2 none (0 x 2); the test split has no fixations. ``n_outside``
    (<= 2) fixations of observer 0 of the first image are put outside the image.
    """
    root = Path(root)
    fx = LayoutFixture("salicon", root, [], {}, {}, {}, {})
    index = 0
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        for j in range(count):
            stem = f"COCO_{split}2014_{index:012d}"
            hw = _size(index, size)
            h, w = hw
            img_path = root / "images" / split / f"{stem}.jpg"
            write_image(img_path, hw, 100 + index)
            index += 1
            if split == "test":
                continue
            rng = _rng(index, 4)
            one_based = [
                np.column_stack([rng.integers(1, w + 1, 3), rng.integers(1, h + 1, 3)]) * 1.0,
                np.asarray([[10.0, 5.0]]),  # 1-based (10, 5) loads as (9, 4)
                np.zeros((0, 2)),
            ]
            if j == 0 and split == "train" and n_outside:
                outside = np.asarray([[0.0, 3.0], [w + 1.0, 2.0]])[:n_outside]  # x=-1, x=w
                one_based[0][:n_outside] = outside
                fx.n_outside += n_outside
                fx.images_with_outside += 1
            mat_path = root / "fixations" / split / f"{stem}.mat"
            mat_path.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(mat_path, {
                "image": stem,
                "resolution": np.asarray([[h, w]], np.float64),
                "gaze": _salicon_gaze(one_based, rng),
            })
            pts = np.concatenate(one_based)
            subj = np.concatenate([np.full(len(p), k) for k, p in enumerate(one_based)])
            fx.stems.append(stem)
            fx.sizes[stem] = hw
            fx.fixations[stem] = (pts[:, 0] - 1, pts[:, 1] - 1, subj.astype(np.int64))
            fx.images[stem] = img_path
            fx.fixation_files[stem] = mat_path
            if with_maps:
                map_path = root / "maps" / split / f"{stem}.png"
                fx.maps[stem] = write_gray(map_path, _blob_map(hw, index, 255))
                fx.map_files[stem] = map_path
    fx.stems.sort()
    return fx


# --------------------------------------------------------------------------- MIT1003


def make_mit1003(root: Path, n: int = 4, size: tuple[int, int] = SIZE,
                 with_maps: bool = True) -> LayoutFixture:
    """MIT1003: ``ALLSTIMULI/<stem>.jpeg`` (the last one ``.jpg``) and
    ``ALLFIXATIONMAPS/<stem>_fixPts.jpg`` (white points on black, JPEG) and
    ``<stem>_fixMap.jpg``. Expected fixations are in row-major order, subject 0."""
    root = Path(root)
    fx = LayoutFixture("mit1003", root, [], {}, {}, {}, {})
    for i in range(n):
        stem = f"i{1000 + i}_scene"
        hw = _size(i, size)
        suffix = ".jpg" if i == n - 1 else ".jpeg"
        img_path = root / "ALLSTIMULI" / f"{stem}{suffix}"
        write_image(img_path, hw, 200 + i)
        pts = sorted(_points(hw, 5 + i, 200 + i), key=lambda p: (p[1], p[0]))
        grid = np.zeros(hw, np.uint8)
        for x, y in pts:
            grid[y, x] = 255
        pts_path = root / "ALLFIXATIONMAPS" / f"{stem}_fixPts.jpg"
        write_gray(pts_path, grid)
        fx.stems.append(stem)
        fx.sizes[stem] = hw
        xs = np.asarray([p[0] for p in pts], np.float64)
        ys = np.asarray([p[1] for p in pts], np.float64)
        fx.fixations[stem] = (xs, ys, np.zeros(len(pts), np.int64))
        fx.images[stem] = img_path
        fx.fixation_files[stem] = pts_path
        if with_maps:
            map_path = root / "ALLFIXATIONMAPS" / f"{stem}_fixMap.jpg"
            fx.maps[stem] = write_gray(map_path, _blob_map(hw, 200 + i, 255))
            fx.map_files[stem] = map_path
    fx.stems.sort()
    return fx


# --------------------------------------------------------------------------- CAT2000


def make_cat2000(root: Path, categories: tuple[str, ...] = ("Action", "Art"), per_category: int = 2,
                 size: tuple[int, int] = SIZE, with_maps: bool = True,
                 variable: str = "fixLocs") -> LayoutFixture:
    """CAT2000 train: ``Stimuli/<Cat>/<name>.jpg`` (plus an ignored ``Output/`` folder),
    ``FIXATIONLOCS/<Cat>/<name>.mat`` (binary matrix ``variable``) and
    ``FIXATIONMAPS/<Cat>/<name>.jpg``. Stems are ``<Cat>_<name>``; row-major, subject 0."""
    root = Path(root)
    fx = LayoutFixture("cat2000", root, [], {}, {}, {}, {})
    i = 0
    for category in categories:
        output = root / "Stimuli" / category / "Output"
        output.mkdir(parents=True, exist_ok=True)
        write_image(output / "001_out.jpg", size, 999)
        for j in range(per_category):
            name = f"{j + 1:03d}"
            stem = f"{category}_{name}"
            hw = _size(i, size)
            img_path = root / "Stimuli" / category / f"{name}.jpg"
            write_image(img_path, hw, 300 + i)
            pts = sorted(_points(hw, 4 + i, 300 + i, spacing=1), key=lambda p: (p[1], p[0]))
            locs = np.zeros(hw, np.uint8)
            for x, y in pts:
                locs[y, x] = 1
            mat_path = root / "FIXATIONLOCS" / category / f"{name}.mat"
            mat_path.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(mat_path, {variable: locs})
            fx.stems.append(stem)
            fx.sizes[stem] = hw
            xs = np.asarray([p[0] for p in pts], np.float64)
            ys = np.asarray([p[1] for p in pts], np.float64)
            fx.fixations[stem] = (xs, ys, np.zeros(len(pts), np.int64))
            fx.images[stem] = img_path
            fx.fixation_files[stem] = mat_path
            if with_maps:
                map_path = root / "FIXATIONMAPS" / category / f"{name}.jpg"
                fx.maps[stem] = write_gray(map_path, _blob_map(hw, 300 + i, 255))
                fx.map_files[stem] = map_path
            i += 1
    fx.stems.sort()
    return fx


# --------------------------------------------------------------------------- breaking


def write_garbage(path: Path) -> None:
    """Replace a file by bytes that no decoder accepts."""
    path.write_bytes(b"this is not an image \x00\x01\x02" * 8)


def truncate(path: Path, fraction: float = 0.5) -> None:
    """Cut a file to ``fraction`` of its bytes (a JPEG cut in half)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
