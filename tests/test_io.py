"""salnas.io: atomic files (modes, orphans), strict JSON, torch files and their safe loader."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from salnas.errors import OutputError, SalnasError
from salnas.io import (
    STALE_TMP_AGE_S,
    ensure_dir,
    load_torch_safe,
    remove_stale_tmp,
    save_torch_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_round_trip_checks_the_format(tmp_path):
    path = tmp_path / "m.pt"
    save_torch_atomic(path, {"format": "fmt-a", "w": torch.arange(3)})
    payload = load_torch_safe(path, "model file", ("fmt-a", "fmt-b"))
    assert payload["format"] == "fmt-a" and torch.equal(payload["w"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind
    with pytest.raises(SalnasError, match=r"m\.pt: not a salnas model file \(format fmt-c\); "
                                          r"make one"):
        load_torch_safe(path, "model file", ("fmt-c",), missing_hint="make one")


def test_errors_name_the_file_and_what_it_should_be(tmp_path):
    with pytest.raises(SalnasError, match=r"checkpoint .*none\.pt does not exist; train one"):
        load_torch_safe(tmp_path / "none.pt", "checkpoint", missing_hint="train one")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(SalnasError, match=r"junk\.pt: not a readable checkpoint"):
        load_torch_safe(junk, "checkpoint")


def test_refuses_pickled_code(tmp_path):
    # weights_only: a payload that needs arbitrary unpickling is refused, not executed.
    path = tmp_path / "evil.pt"
    torch.save({"format": "fmt-a", "obj": SalnasError("x")}, path)
    with pytest.raises(SalnasError, match="not a readable model file"):
        load_torch_safe(path, "model file", ("fmt-a",))


# ---------------------------------------------------------------- file modes, orphans, JSON
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_get_the_umasks_mode(tmp_path, umask, mode):
    # One mode policy for a run directory: what `open` would give, not mkstemp's 0600.
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        write_json_atomic(tmp_path / "b.json", {"a": 1})
        save_torch_atomic(tmp_path / "c.pt", {"w": torch.zeros(1)})
        with open(tmp_path / "plain.txt", "w") as fh:  # what the other writers produce
            fh.write("x")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(("a.txt", "b.json", "c.pt", "plain.txt"), mode)


def test_orphaned_temporary_files_are_removed_but_not_a_write_in_flight(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # a process that has exited: its temporary file is an orphan
    host = socket.gethostname()
    orphan = tmp_path / f".supernet.pt.{pid}@{host}.0123abcd.tmp"
    in_flight = tmp_path / f".pareto.csv.{os.getpid()}@{host}.89abcdef.tmp"  # a live writer
    legacy_old = tmp_path / ".archive.json.k2j3h4g5.tmp"  # mkstemp's name, an old version
    legacy_new = tmp_path / ".search.json.a1b2c3d4.tmp"
    remote = tmp_path / f".x.csv.{pid}@another-host.0123abcd.tmp"
    nested = tmp_path / "arch" / "selfkd" / f".model.pt.{pid}@{host}.00000000.tmp"
    nested.parent.mkdir(parents=True)
    keep = tmp_path / "results.csv"
    for p in (orphan, in_flight, legacy_old, legacy_new, remote, nested, keep):
        p.write_text("x")
    hour_ago = time.time() - 2 * STALE_TMP_AGE_S
    os.utime(legacy_old, (hour_ago, hour_ago))
    removed = remove_stale_tmp(tmp_path)  # a directory shared by workers: default age
    assert set(removed) == {orphan, legacy_old}
    assert remove_stale_tmp(tmp_path, recursive=True, min_age_s=0) and not nested.exists()
    assert in_flight.exists() and keep.exists()
    assert not legacy_new.exists() and not remote.exists()  # a single-writer stage: all


def test_json_is_strict_nan_is_null_inf_is_refused(tmp_path):
    path = tmp_path / "s.json"
    write_json_atomic(path, {"hv": float("nan"), "n": np.float32("nan"), "a": np.arange(2),
                             "ok": 0.5, "p": tmp_path})
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"hv": None, "n": None, "a": [0, 1], "ok": 0.5, "p": str(tmp_path)}
    with pytest.raises(SalnasError, match=r"s\.json: summary\.cc\[1\] is inf"):
        write_json_atomic(path, {"summary": {"cc": [1.0, float("inf")]}})
    assert json.loads(path.read_text())["ok"] == 0.5  # the earlier file is intact


def test_ensure_dir_refuses_a_file_and_names_the_option(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"--out .*f is a file, not a folder"):
        ensure_dir(tmp_path / "f")
    with pytest.raises(OutputError, match=r"--out .*f/sub: cannot create the folder \(a part"):
        ensure_dir(tmp_path / "f" / "sub")
    assert ensure_dir(tmp_path / "new" / "run").is_dir()


def test_progress_is_decided_in_one_place(monkeypatch):
    class Tty:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    from salnas.io import progress_enabled, set_progress

    monkeypatch.setattr(sys, "stderr", Tty(False))
    assert progress_enabled() is False and progress_enabled(True) is True
    monkeypatch.setattr(sys, "stderr", Tty(True))
    assert progress_enabled() is True and progress_enabled(False) is False
    set_progress(False)  # salnas --no-progress
    try:
        assert progress_enabled() is False and progress_enabled(True) is True
    finally:
        set_progress(None)


def test_git_commit_is_read_once_per_process(tmp_path):
    from salnas.io import git_commit

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "f.txt").write_text("1")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    first = git("rev-parse", "HEAD")
    assert git_commit(tmp_path) == first
    (tmp_path / "f.txt").write_text("2")  # a later edit and commit while "the run" goes on
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second")
    assert git("rev-parse", "HEAD") != first
    assert git_commit(tmp_path) == first
