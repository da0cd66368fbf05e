"""The persistent archive of evaluated architectures: ``archive.csv`` in the search directory.

One row per genome id, never two: the oracle asks the archive before evaluating anything, so
no architecture is scored twice, within a run, after a resume, or across workers.

Durability and concurrency (several ``salnas search`` processes may share one directory):

* ``archive.csv`` is append-only. A row is appended with one ``write`` under an exclusive
  ``fcntl.flock`` on ``.archive.lock``, then flushed and fsynced, so a ``kill -9`` at any moment
  leaves every acknowledged row intact. A torn last line (power loss mid-write) is ignored when
  reading and cut off by the next writer; its evaluation simply runs again.
* Readers parse only complete lines and keep a byte offset, so refreshing is incremental.
* In-flight evaluations are *claimed*: ``.claims/<id>`` is created with ``O_EXCL`` while the lock
  is held. A worker that meets another's claim waits for that row instead of evaluating the
  genome itself. Claims of dead processes on this host, or older than ``claim_timeout_s``
  (a remote worker that died), are taken over.

Across machines the directory must live on a shared filesystem with working POSIX locks
(NFSv4, GPFS, Lustre mounted with ``-o flock``); see docs/search.md.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from salnas.errors import SalnasError
from salnas.io import pid_alive, write_error
from salnas.layout import ARCHIVE_COLUMNS, ARCHIVE_CSV, ORACLE_METRICS, VOLATILE_COLUMNS

__all__ = [
    "COLUMNS", "METRICS", "VOLATILE_COLUMNS", "Archive", "format_value", "parse_value", "worker_id",
]

METRICS: tuple[str, ...] = ORACLE_METRICS
COLUMNS: tuple[str, ...] = ARCHIVE_COLUMNS

_FLOAT = {*METRICS, "latency_ms", "wall_s"}
_INT = {"params", "flops", "generation"}
_BOOL = {"feasible", "scored"}


# Test hook of the kill-and-resume test (tests/test_search_engines.py): with
# SALNAS_TEST_KILL_AFTER_ROWS=k in its environment, a process that claims a genome to evaluate
# while the archive holds exactly k rows SIGKILLs itself right after taking the claim, as a
# ``kill -9`` mid-run would: k rows are durable and one evaluation is in flight, claimed by a
# dead worker. Unset (everywhere else) it costs one environment lookup per evaluation.
KILL_AFTER_ROWS_ENV = "SALNAS_TEST_KILL_AFTER_ROWS"


def _kill_point(rows: int) -> None:
    k = os.environ.get(KILL_AFTER_ROWS_ENV)
    if k is not None and rows == int(k):
        os.kill(os.getpid(), signal.SIGKILL)


def worker_id() -> str:
    """``host:pid`` of this process (claims and archive rows name their worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def format_value(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in _FLOAT:
        return repr(float(value))  # shortest repr: reads back bit-identical
    if column in _BOOL:
        return "true" if value else "false"
    return str(value)


def parse_value(column: str, text: str) -> Any:
    """One field of ``archive.csv``; an empty number is missing (NaN / None). A non-finite
    number (``nan``, ``inf``, which no writer produces) or a malformed one is a ``ValueError``."""
    if column in _FLOAT:
        if not text:
            return math.nan
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        return value
    if column in _INT:
        return int(text) if text else None
    if column in _BOOL:
        if text not in ("true", "false", ""):  # empty: a record without the flag
            raise ValueError(f"{text!r} is neither true nor false")
        return text == "true"
    return text


class Archive:
    """Append-only, lock-protected ``archive.csv`` with an in-memory index by genome id."""

    def __init__(self, directory: str | os.PathLike[str], claim_timeout_s: float = 3600.0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / ARCHIVE_CSV
        self.claims = self.directory / ".claims"
        self.claim_timeout_s = claim_timeout_s
        self._lock_path = self.directory / ".archive.lock"
        self._rows: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._offset = 0
        self._lines = 0  # complete lines read so far (the header is line 1)
        self._header = ",".join(COLUMNS) + "\n"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.claims.mkdir(exist_ok=True)
        self.refresh()

    # ------------------------------------------------------------------ reading
    def refresh(self) -> None:
        """Read rows appended since the last call (by this or any other process)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # complete lines only; a torn tail is not a row
        if end == 0:
            return
        try:
            text = data[:end].decode("utf-8")
        except UnicodeDecodeError:
            raise SalnasError(f"{self.path}: not UTF-8 text; the archive was damaged or "
                              "replaced") from None
        if b"\r\n" in data[:end]:
            raise SalnasError(
                f"{self.path} has Windows (CRLF) line endings, so salnas cannot append to it; "
                "convert it back to LF endings (e.g. `dos2unix`) or search into a new --out")
        if self._offset == 0:
            header, _, text = text.partition("\n")
            self._lines = 1
            if header + "\n" != self._header:
                raise SalnasError(
                    f"{self.path} has the columns {header.strip()!r}, not those of this salnas "
                    f"version ({','.join(COLUMNS)}); search into a new --out directory"
                )
        for values in csv.reader(io.StringIO(text)):
            self._lines += 1
            if len(values) != len(COLUMNS):
                raise SalnasError(f"{self.path}: line {self._lines} has {len(values)} fields, "
                                  f"not {len(COLUMNS)}; the archive was edited by hand?")
            row = {}
            for column, value in zip(COLUMNS, values, strict=True):
                try:
                    row[column] = parse_value(column, value)
                except ValueError as e:
                    raise SalnasError(
                        f"{self.path}: line {self._lines}, column {column}: {e}; the archive "
                        "was edited by hand? Fix or delete that row to resume") from None
            if row["id"] not in self._rows:
                self._order.append(row["id"])
            self._rows.setdefault(row["id"], row)
        self._offset += end

    def get(self, genome_id: str) -> dict[str, Any] | None:
        """The record of ``genome_id``, re-reading the file once if it is not known yet."""
        row = self._rows.get(genome_id)
        if row is None:
            self.refresh()
            row = self._rows.get(genome_id)
        return row

    def records(self) -> list[dict[str, Any]]:
        """Every record, in the order they were first written."""
        self.refresh()
        return [self._rows[i] for i in self._order]

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, genome_id: object) -> bool:
        return isinstance(genome_id, str) and self.get(genome_id) is not None

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock across processes (released by the kernel if the holder dies)."""
        with open(self._lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` (durably) unless its id is already there; returns the stored row
        and releases this process's claim on it."""
        with self.locked():
            self.refresh()
            existing = self._rows.get(record["id"])
            if existing is None:
                self._append(record)
                self.refresh()
                existing = self._rows[record["id"]]
            self._unclaim(record["id"])
        return existing

    def _append(self, record: dict[str, Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [format_value(c, record.get(c)) for c in COLUMNS]
        )
        line = buf.getvalue()
        try:
            self._write_line(line)
        except OSError as e:  # disk full: the acknowledged rows stay, a torn tail is cut later
            raise write_error(self.path, e) from e

    def _write_line(self, line: str) -> None:
        with open(self.path, "ab+") as fh:  # append mode: writes go to the end
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":  # torn tail of a crashed writer: cut it off
                    fh.seek(0)
                    size = fh.read().rfind(b"\n") + 1
                    fh.truncate(size)
            if size == 0:
                line = self._header + line
            fh.write(line.encode("utf-8"))  # one write: a whole row or (power loss) a torn tail
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ claims
    def acquire(self, genome_id: str, poll_s: float = 0.1) -> dict[str, Any] | None:
        """The record of ``genome_id`` if it exists (waiting while another worker evaluates
        it), else None: the caller now holds the claim and must :meth:`add` or :meth:`release`.
        """
        while True:
            row = self._rows.get(genome_id)
            if row is not None:
                return row
            with self.locked():
                self.refresh()
                row = self._rows.get(genome_id)
                if row is not None:
                    return row
                claim = self.claims / genome_id
                holder = self._read_claim(claim)
                if holder is None or self._stale(holder):
                    tmp = claim.with_name(f".{genome_id}.{os.getpid()}")
                    tmp.write_text(json.dumps({"worker": worker_id(), "time": time.time()}))
                    os.replace(tmp, claim)
                    _kill_point(len(self._order))
                    return None
            time.sleep(poll_s)  # another live worker is evaluating it: wait for its row

    def release(self, genome_id: str) -> None:
        """Give up a claim without a record (the evaluation failed)."""
        with self.locked():
            self._unclaim(genome_id)

    def _unclaim(self, genome_id: str) -> None:
        claim = self.claims / genome_id
        holder = self._read_claim(claim)
        if holder is not None and holder.get("worker") == worker_id():
            claim.unlink(missing_ok=True)

    @staticmethod
    def _read_claim(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"worker": "?:0", "time": 0.0}  # unreadable: treat as stale

    def _stale(self, holder: dict[str, Any]) -> bool:
        host, _, pid = str(holder.get("worker", "?:0")).rpartition(":")
        if holder.get("worker") == worker_id():
            return True  # our own leftover (cannot be in flight: evaluation is sequential)
        if host == socket.gethostname() and not (pid.isdigit() and pid_alive(int(pid))):
            return True  # a dead process of this host
        return time.time() - float(holder.get("time", 0.0)) > self.claim_timeout_s
