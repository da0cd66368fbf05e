"""Atomic file output and run provenance (config, seed, versions, git commit)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

from salnas.errors import SalnasError

_PROVENANCE_PACKAGES = (
    "salnas",
    "torch",
    "numpy",
    "scipy",
    "pillow",
    "pandas",
    "pydantic",
    "pymoo",
    "optuna",
    "fvcore",
    "plotly",
    "codecarbon",
)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash while writing leaves the previous file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_text_atomic(
        path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def save_torch_atomic(path: str | os.PathLike[str], payload: Any) -> None:
    """``torch.save`` that never leaves a half-written file (serialise, then rename)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_torch_safe(
    path: str | os.PathLike[str],
    what: str,
    formats: Collection[str] = (),
    missing_hint: str = "",
) -> Any:
    """The counterpart of :func:`save_torch_atomic`: ``torch.load(weights_only=True)`` on the
    CPU, with errors that name the file and say what ``what`` (e.g. "model file") should be.

    With ``formats``, the payload must be a dict whose ``"format"`` is one of them.
    """
    import torch

    path = Path(path)
    hint = f"; {missing_hint}" if missing_hint else ""
    if not path.is_file():
        raise SalnasError(f"{what} {path} does not exist{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SalnasError(f"{path}: not a readable {what} ({e})") from e
    if formats and not (isinstance(payload, dict) and payload.get("format") in formats):
        raise SalnasError(
            f"{path}: not a salnas {what} (format {', '.join(sorted(formats))}){hint}"
        )
    return payload


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PROVENANCE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(start: str | os.PathLike[str] | None = None) -> str | None:
    """The commit of the checkout that holds this package (``-dirty`` if modified), or None."""
    where = Path(start) if start else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def provenance(**extra: Any) -> dict[str, Any]:
    """What every output directory records about how it was made."""
    return {
        "command": " ".join(sys.argv),
        "versions": package_versions(),
        "git_commit": git_commit(),
        **extra,
    }


def file_sha1(path: Path) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB chunks (fingerprints of checkpoints)."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: Path, *, missing_ok: bool = True) -> Any:
    """A JSON file's content; ``None`` when it does not exist and ``missing_ok``.

    An unreadable or invalid file is an error naming it (never silently taken as empty).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise SalnasError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SalnasError(f"{path}: cannot be read ({e})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise SalnasError(f"{path}: not valid JSON ({e})") from None
