"""The dataset interface: one class per published layout, all yielding the same items.

A :class:`SaliencySource` knows a dataset's files: its image stems, how to decode an
image, where its fixations are (0-based pixels in the image's own frame, with observer
ids) and, optionally, its own ground-truth maps. Everything else (resizing, density
maps, caching, splits, checks) is shared and lives in the sibling modules.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from salnas.density import Fixations
from salnas.errors import DatasetError, SalnasError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ProblemError(ValueError, SalnasError):
    """One file-level problem; the message names the file and what is wrong with it."""


class SaliencySource(ABC):
    """A saliency dataset in its published layout.

    Subclasses set ``kind`` (the spec prefix), may set ``default_sigma_px`` (the blur the
    dataset's authors used for their maps) and ``default_split`` (val, test) as counts or
    fractions, and implement :meth:`stems`, :meth:`load_image` and :meth:`load_fixations`.
    """

    kind: ClassVar[str]
    default_sigma_px: ClassVar[float | None] = None
    default_split: ClassVar[tuple[float | int, float | int]] = (0.15, 0.15)
    #: how observers' coordinates were recorded, for `data check` ("1-based", "0-based", ...)
    coordinate_note: ClassVar[str] = "0-based pixels"

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise DatasetError(
                f"{self.kind}: dataset folder {self.root} does not exist or is not a folder; "
                f"give the path in the spec, e.g. '{self.kind}:/data/{self.kind}'"
            )

    @property
    def spec(self) -> str:
        return self.kind if self.root is None else f"{self.kind}:{self.root}"

    @abstractmethod
    def stems(self) -> list[str]:
        """Sorted identifiers of the images that have both an image and fixations."""

    @abstractmethod
    def load_image(self, stem: str) -> np.ndarray:
        """The RGB image, uint8 array (H, W, 3). Raises ProblemError naming the file."""

    @abstractmethod
    def load_fixations(self, stem: str) -> Fixations:
        """All observers' fixations, 0-based, in the image's frame. Raises ProblemError."""

    def load_map(self, stem: str) -> np.ndarray | None:
        """The dataset's own ground-truth density map at image size, if it ships one."""
        return None

    def map_path(self, stem: str) -> Path | None:
        """The file of :meth:`load_map`, named in error messages."""
        return None

    def image_size(self, stem: str) -> tuple[int, int]:
        """(H, W) of the original image; subclasses with files read only the header."""
        h, w = self.load_image(stem).shape[:2]
        return int(h), int(w)

    def structural_problems(self) -> list[str]:
        """Problems visible from file names alone: images without fixations and vice versa."""
        return []

    def fingerprint(self) -> str:
        """Changes whenever the dataset's files change (names, sizes, modification times)."""
        h = hashlib.sha256(self.spec.encode())
        if self.root is not None:
            for path in sorted(self.root.rglob("*")):
                if path.is_file():
                    st = path.stat()
                    h.update(
                        f"{path.relative_to(self.root)}|{st.st_size}|{st.st_mtime_ns}".encode()
                    )
        return h.hexdigest()[:16]

    def describe(self) -> str:
        return self.spec


Scan = tuple[dict[str, Path], dict[str, Path], dict[str, Path], list[str]]


class FileLayoutSource(SaliencySource):
    """A layout with one image file, one fixation file and optionally one map per stem.

    Subclasses implement :meth:`scan` (stem -> image, fixation file, map; plus problems
    seen while listing), :meth:`read_fixations`, and the two messages that name a file
    without its partner; everything else is shared.
    """

    #: where the layout keeps its maps, for the all-or-none maps message
    maps_where: ClassVar[str] = "maps/"

    @abstractmethod
    def scan(self) -> Scan:
        """(images, fixation files, maps, problems) found on disk."""

    @abstractmethod
    def read_fixations(self, path: Path, stem: str) -> Fixations:
        """Parse one fixation file (raise ProblemError naming it)."""

    @abstractmethod
    def no_fixations(self, stem: str, image: Path) -> str:
        """Problem message for an image without fixation file."""

    @abstractmethod
    def no_image(self, stem: str, fixations: Path) -> str:
        """Problem message for a fixation file without image."""

    @cached_property
    def _scan(self) -> Scan:
        images, fixations, maps, problems = self.scan()
        if self.root is not None:  # files that resolve outside the dataset are never read
            for found in (images, fixations, maps):
                for stem, path in list(found.items()):
                    if resolves_outside(path, self.root):
                        problems.append(outside_problem(path, self.root))
                        del found[stem]
        return images, fixations, maps, problems

    def stems(self) -> list[str]:
        images, fixations, _, _ = self._scan
        return sorted(set(images) & set(fixations))

    def load_image(self, stem: str) -> np.ndarray:
        return read_rgb(self._scan[0][stem])

    def image_size(self, stem: str) -> tuple[int, int]:
        return header_size(self._scan[0][stem])

    def load_fixations(self, stem: str) -> Fixations:
        return self.read_fixations(self._scan[1][stem], stem)

    def map_path(self, stem: str) -> Path | None:
        return self._scan[2].get(stem)

    def load_map(self, stem: str) -> np.ndarray | None:
        path = self.map_path(stem)
        return None if path is None else read_gray(path)

    def structural_problems(self) -> list[str]:
        images, fixations, maps, problems = self._scan
        return [
            *problems,
            *(self.no_fixations(s, p) for s, p in images.items() if s not in fixations),
            *(self.no_image(s, p) for s, p in fixations.items() if s not in images),
            *map_problems(images, maps, self.maps_where, self.stems()),
        ]


def resolves_outside(path: Path, root: Path) -> bool:
    """Whether ``path`` (a symlink, or a file in a linked folder) resolves outside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return True
    return False


def outside_problem(path: Path, root: Path) -> str:
    return (f"{path}: links to a file outside the dataset folder {root}; refused (copy the "
            "file into the dataset folder)")


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file fully (truncation is an error) into uint8 RGB (H, W, 3)."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as e:
        raise ProblemError(f"{path}: image file is missing") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ProblemError(f"{path}: unreadable or truncated image ({e})") from e


def read_gray(path: Path) -> np.ndarray:
    """Decode a grayscale map (8/16-bit PNG, JPEG) into float32 (H, W)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(img, dtype=np.float32)
            return np.asarray(img.convert("L"), dtype=np.float32)
    except FileNotFoundError as e:
        raise ProblemError(f"{path}: map file is missing") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ProblemError(f"{path}: unreadable or truncated map ({e})") from e


def header_size(path: Path) -> tuple[int, int]:
    """(H, W) from an image header without decoding pixels."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            return int(h), int(w)
    except (FileNotFoundError, UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ProblemError(f"{path}: unreadable image ({e})") from e


def find_images(folder: Path) -> dict[str, Path]:
    """Map stem -> image path for the image files directly inside ``folder``."""
    return scan_files(folder, IMAGE_SUFFIXES)[0]


def scan_files(
    folder: Path, suffixes: Iterable[str], strip: str = ""
) -> tuple[dict[str, Path], list[str]]:
    """Map stem -> file for the files directly inside ``folder`` with one of ``suffixes``.

    ``strip`` removes a suffix of the stem (``"_fixPts"``); files whose stem lacks it are
    skipped. Returns the mapping and a problem per stem claimed by two files.
    """
    suffixes = tuple(s.lower() for s in suffixes)
    found: dict[str, Path] = {}
    problems: list[str] = []
    if not folder.is_dir():
        return found, problems
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        stem = path.stem
        if strip:
            if not stem.endswith(strip) or stem == strip:
                continue
            stem = stem[: -len(strip)]
        if stem in found:
            problems.append(f"{path}: same stem '{stem}' as {found[stem].name}; keep only one")
            continue
        found[stem] = path
    return found, problems


def read_mat(path: Path) -> dict[str, object]:
    """Load a MATLAB (v4-v7.2) file with squeezed arrays and structs as attribute objects."""
    try:
        return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except FileNotFoundError as e:
        raise ProblemError(f"{path}: file is missing") from e
    except NotImplementedError as e:
        raise ProblemError(
            f"{path}: MATLAB v7.3 (HDF5) files cannot be read; re-save it with save(..., '-v7')"
        ) from e
    except Exception as e:  # scipy's reader fails in many ways on damaged files
        raise ProblemError(
            f"{path}: unreadable or truncated MATLAB file ({type(e).__name__}: {e})"
        ) from e


def map_problems(
    images: dict[str, Path], maps: dict[str, Path], where: str, needed: Iterable[str] | None = None
) -> list[str]:
    """All-or-none maps: a map without image, or (once any map exists) an image without map.

    ``needed`` are the stems that must have a map (default: every image).
    """
    problems = [
        f"{path}: ground-truth map has no image" for s, path in maps.items() if s not in images
    ]
    if maps:
        problems += [
            f"{images[s]}: image has no ground-truth map in {where} (other images have one; "
            "maps are all-or-none)"
            for s in sorted(images if needed is None else needed)
            if s not in maps
        ]
    return problems


_REGISTRY: dict[str, type[SaliencySource]] = {}


def register(cls: type[SaliencySource]) -> type[SaliencySource]:
    """Class decorator: make a layout available under its ``kind`` spec prefix."""
    _REGISTRY[cls.kind] = cls
    return cls


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)


def _factory(kind: str) -> Callable[..., SaliencySource]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise DatasetError(
            f"unknown dataset kind '{kind}'; use one of: {', '.join(registered_kinds())} "
            "(e.g. 'synthetic:200', 'osie:../shared/data/osie', 'folder:/data/mine')"
        ) from None


def open_source(spec: str) -> SaliencySource:
    """Parse a dataset spec (``synthetic[:N]``, ``osie:PATH``, ``folder:PATH``, ...)."""
    import salnas.datasets  # noqa: F401  (registers the built-in layouts)

    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    cls = _factory(kind)
    if kind == "synthetic":
        return cls(arg or None)  # type: ignore[arg-type]
    if not arg:
        raise DatasetError(f"dataset spec '{spec}' needs a path: '{kind}:PATH'")
    return cls(arg)
