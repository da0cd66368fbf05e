"""The search archive: exact round trip, torn tails, concurrent writers, in-flight claims."""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from salnas.errors import SalnasError
from salnas.search.archive import COLUMNS, Archive, worker_id


def record(i: int, **kw) -> dict:
    return {
        "id": f"g{i:04d}", "genome": '{"x": [1, 2], "s": "a,b"}', "CC": 0.1 + i / 3,
        "KLD": math.nan, "NSS": 1 / 3, "SIM": 0.5, "AUC_Judd": 0.75, "params": 1000 + i,
        "flops": 10**9 + i, "latency_ms": math.nan, "latency_source": "", "feasible": i % 2 == 0,
        "scored": True, "engine": "nsga2", "generation": i // 4, "worker": worker_id(),
        "wall_s": 0.25, "finished_at": "2026-01-01T00:00:00+00:00", **kw,
    }


def test_round_trip_is_exact_and_ids_unique(tmp_path):
    a = Archive(tmp_path)
    for i in range(5):
        a.add(record(i))
    a.add(record(0, CC=99.0))  # a second row for an id is never written
    b = Archive(tmp_path)  # a new process / a resume reads the same rows
    assert [r["id"] for r in b.records()] == [f"g{i:04d}" for i in range(5)]
    for i, row in enumerate(b.records()):
        want = record(i)
        for col in COLUMNS:
            if isinstance(want[col], float) and math.isnan(want[col]):
                assert math.isnan(row[col]), col
            else:
                assert row[col] == want[col], col  # floats bit-identical, ints, bools
    assert b.get("g0000")["CC"] == record(0)["CC"]
    assert (tmp_path / "archive.csv").read_text().count("\n") == 6  # header + 5 rows


def test_torn_tail_is_ignored_then_cut(tmp_path):
    a = Archive(tmp_path)
    a.add(record(0))
    with open(tmp_path / "archive.csv", "a") as fh:
        fh.write("g0001,\"{tor")  # a crash in the middle of a row
    b = Archive(tmp_path)
    assert len(b) == 1 and b.get("g0001") is None
    b.add(record(2))
    c = Archive(tmp_path)
    assert [r["id"] for r in c.records()] == ["g0000", "g0002"]
    torn_header = tmp_path / "other"
    torn_header.mkdir()
    (torn_header / "archive.csv").write_text("id,genome,C")  # killed while writing row one
    Archive(torn_header).add(record(3))
    assert [r["id"] for r in Archive(torn_header).records()] == ["g0003"]


def test_foreign_archive_is_refused_untouched(tmp_path):
    path = tmp_path / "archive.csv"
    path.write_text("id,genome,score\nx,y,1\n")
    with pytest.raises(SalnasError, match="columns"):
        Archive(tmp_path)
    assert path.read_text() == "id,genome,score\nx,y,1\n"


def _worker(directory: str, ids: list[str], out: str) -> None:
    archive = Archive(directory)
    evaluated = []
    for gid in ids:
        if archive.acquire(gid, poll_s=0.01) is None:  # we hold the claim: "evaluate"
            time.sleep(0.02)
            evaluated.append(gid)
            archive.add({**record(0), "id": gid})
    Path(out).write_text("\n".join(evaluated))


def test_two_processes_never_evaluate_the_same_genome(tmp_path):
    ids = [f"g{i:03d}" for i in range(30)]
    ctx = mp.get_context("fork")  # the children only touch files: no re-import needed
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), order, str(tmp_path / f"w{k}")))
             for k, order in enumerate((ids, ids))]  # same order: a race on every id
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    done = [(tmp_path / f"w{k}").read_text().split() for k in range(2)]
    assert sorted(done[0] + done[1]) == ids  # each id evaluated exactly once, by one worker
    assert sorted(r["id"] for r in Archive(tmp_path).records()) == ids
    assert not list((tmp_path / ".claims").iterdir())


def test_claims_of_dead_processes_are_taken_over(tmp_path):
    a = Archive(tmp_path)
    host = worker_id().rpartition(":")[0]
    dead = 2**22 + 12345  # above pid_max defaults: no such process
    (tmp_path / ".claims" / "g0007").write_text(f'{{"worker": "{host}:{dead}", "time": 0}}')
    assert a.acquire("g0007") is None  # taken over instead of waiting forever
    (tmp_path / ".claims" / "g0008").write_text(
        f'{{"worker": "elsewhere:1", "time": {time.time() - 7200}}}')
    assert a.acquire("g0008") is None  # a remote claim older than claim_timeout_s
    a.release("g0007")
    assert not (tmp_path / ".claims" / "g0007").exists()
