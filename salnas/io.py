"""Atomic file output and run provenance (config, seed, versions, git commit)."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

from salnas.errors import OutputError, SalnasError

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


# Temporary files of atomic writes: ``.<name>.<pid>@<host>.<8 hex>.tmp`` beside the target, so a
# later start can tell an orphan (its writer is dead) from a write in flight.
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[^/]+)\.[0-9a-f]{8}\.tmp$")
# Files of older versions (mkstemp's ``.<name>.<random>.tmp``) and of writers on other hosts
# are orphans once they are this old.
STALE_TMP_AGE_S = 3600.0


def _describe_os_error(e: OSError) -> str:
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way",
        errno.EISDIR: "it is a folder",
    }
    return reasons.get(e.errno or -1, e.strerror or str(e))


def os_error_message(e: OSError) -> str:
    """One line for an OSError: the path it concerns and the reason in words."""
    where = e.filename if e.filename is not None else ""
    return f"{where}: {_describe_os_error(e)}" if where else _describe_os_error(e)


def write_error(path: str | os.PathLike[str], e: OSError) -> OutputError:
    """The one-line error of a failed write of ``path`` (earlier files are left as they were)."""
    return OutputError(f"cannot write {path}: {_describe_os_error(e)} (earlier files are intact)",
                       e.errno)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash while writing leaves the previous file untouched (and a temporary file that
    :func:`remove_stale_tmp` removes on the next start). The file gets the mode of the umask
    (0644 under the usual 022), like any file ``open`` creates. A failed write (disk full, no
    permission) raises :class:`~salnas.errors.OutputError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = path.parent / (f".{path.name}.{os.getpid()}@{socket.gethostname()}."
                                 f"{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
    except OSError as e:
        raise write_error(path, e) from e
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, SalnasError):
            raise write_error(path, e) from e
        raise


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is alive (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(
    directory: str | os.PathLike[str],
    *,
    recursive: bool = False,
    min_age_s: float = STALE_TMP_AGE_S,
) -> list[Path]:
    """Remove the temporary files of atomic writes that a killed process left in ``directory``.

    A temporary file is removed when its writer, a process of this host, is dead, or when it
    is older than ``min_age_s`` (other hosts' and older versions' files). A stage that is the
    only writer of its directory passes ``min_age_s=0``; a directory that several workers share
    keeps the default, so a write in flight is never removed. Returns the removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    host, now, removed = socket.gethostname(), time.time(), []
    for path in directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp"):
        try:
            if not path.is_file() or path.is_symlink():
                continue
            m = _TMP_RE.match(path.name)
            if m and m["host"] == host:
                stale = int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"]))
            else:
                stale = now - path.stat().st_mtime >= min_age_s
            if stale:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer finished (or another start removed it)
            continue
    return removed


def ensure_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Create the output folder ``path`` (named by ``option`` in errors); refuse a file or an
    unwritable place with one line, before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path} is a file, not a folder; choose a folder", errno.EEXIST)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot create the folder "
                          f"({_describe_os_error(e)})", e.errno) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: the folder is not writable", errno.EACCES)
    return path


# ---------------------------------------------------------------- progress bars
_progress: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Force progress bars on or off for this process (None: decide by the terminal)."""
    global _progress
    _progress = enabled


def progress_enabled(flag: bool | None = None) -> bool:
    """The one decision whether to draw progress bars: an explicit ``flag`` (a command's
    ``--progress/--no-progress``), else :func:`set_progress`'s, else whether stderr is a
    terminal (piped logs carry no carriage-return chains)."""
    if flag is not None:
        return flag
    if _progress is not None:
        return _progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Strict JSON (``allow_nan=False``): a NaN, the missing-value marker of our tables, is
    written as ``null``; an infinite value is an error naming its key (never ``Infinity``)."""
    text = json.dumps(_strict(data, path, ""), indent=2, sort_keys=False, allow_nan=False,
                      default=_json_default)
    write_text_atomic(path, text + "\n")


def _strict(obj: Any, path: str | os.PathLike[str], where: str) -> Any:
    """``obj`` as plain JSON types: numpy/torch values unwrapped, NaN -> None, inf refused."""
    if isinstance(obj, dict):
        return {k: _strict(v, path, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v, path, f"{where}[{i}]") for i, v in enumerate(obj)]
    if not isinstance(obj, str | int | float | bool) and obj is not None:
        if hasattr(obj, "tolist") or hasattr(obj, "item"):
            plain = obj.tolist() if hasattr(obj, "tolist") else obj.item()
            return _strict(plain, path, where)
        return obj  # Path and friends: json's default hook
    if isinstance(obj, float) and not math.isfinite(obj):
        if math.isnan(obj):
            return None
        raise SalnasError(f"{path}: {where or 'the value'} is {obj}, which JSON cannot hold")
    return obj


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
    """The commit of the checkout that holds this package (``-dirty`` if modified), or None.

    Read once per process and directory: a long run executes the code it imported at its
    start, so a commit made while it runs must not relabel the outputs it writes later.
    """
    where = Path(start) if start else Path(__file__).resolve().parent
    return _commit_of(str(where.resolve()))


@functools.cache
def _commit_of(where: str) -> str | None:
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
