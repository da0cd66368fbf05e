"""The search stage on a tiny supernet: oracle, engines, outputs, resume, errors, workers."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from spaces import NARROW_SPACE

from salnas.config import config_from_dict
from salnas.datasets import SaliencyDataset
from salnas.datasets.training import load_training_data
from salnas.errors import ConfigError, SalnasError
from salnas.search.archive import KILL_AFTER_ROWS_ENV, VOLATILE_COLUMNS, Archive
from salnas.search.engines import ENGINES
from salnas.search.oracle import FitnessOracle, LutLatency, MeasuredLatency
from salnas.search.run import SearchRun, run_search
from salnas.supernet.checkpoint import load_supernet
from salnas.supernet.evaluate import calibrated_subnet, validate
from salnas.supernet.train import train_supernet

REPO = Path(__file__).resolve().parents[1]
MAX_PARAMS = 115e3  # early-exit threshold: about 60 % of random tiny genomes pass
FLOPS_BUDGET = 4e6  # about half of random tiny genomes (those at 64x96) are over it
BASE = {
    "seed": 3,
    "data": {"spec": "synthetic:24", "resolution": [64, 96], "val": 4, "test": 4},
    "supernet": {
        "space": NARROW_SPACE,  # narrow and shallow: training and evaluations take milliseconds
        "pretrained": False,
        "epochs": 1,
        "batch_size": 4,
        "n_random": 1,
        "bn_recalib_batches": 1,
        "threads": 1,  # two threads on two busy cores are many times slower than one
    },
    "search": {
        "population": 4,
        "generations": 3,
        "val_images": 4,
        "bn_batches": 1,
        "batch_size": 4,
        "threads": 1,
        "objectives": ["CC", "flops"],
        "constraints": {"flops": FLOPS_BUDGET},
        "early_exit": {"max_params": MAX_PARAMS},
        # measured latency differs run to run: these tests compare archives exactly
        "latency": {"record": False},
    },
}


def config(**search):
    data = json.loads(json.dumps(BASE))
    data["search"].update(search)
    return config_from_dict(data)


def write_config(path: Path, **search) -> Path:
    path.write_text(yaml.safe_dump(config(**search).model_dump(mode="json")))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def strip(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in VOLATILE_COLUMNS} for r in rows]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> Path:
    return train_supernet(config(), tmp_path_factory.mktemp("tiny-supernet"), progress=False)


@pytest.fixture(scope="module")
def finished(supernet, tmp_path_factory):
    """Uninterrupted search per engine, run once and shared by the tests that compare."""
    done: dict[str, Path] = {}

    def get(engine: str) -> Path:
        if engine not in done:
            out = tmp_path_factory.mktemp(f"search-{engine}")
            run_search(config(engine=engine), supernet, out, progress=False)
            done[engine] = out
        return done[engine]

    return get


# ---------------------------------------------------------------------------- the oracle
def test_oracle_scores_like_validate_and_never_touches_the_supernet(supernet, tmp_path):
    model, cfg, _ = load_supernet(supernet)
    data = load_training_data(cfg, supernet.parent, progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    oracle = FitnessOracle(model, data, Archive(tmp_path), val_images=4, bn_batches=1,
                           batch_size=4, seed=cfg.seed)
    genome = model.space.random_genome(1)
    record, cached = oracle.evaluate(genome, engine="t", generation=0)
    assert not cached and record["scored"] and record["feasible"]
    cpu = torch.device("cpu")
    subnet = calibrated_subnet(model, genome, data.train, 1, 4, cfg.seed, cpu)
    val = SaliencyDataset(data.prepared, data.split["val"][:4])
    reference = validate(subnet, genome.resolution, val, 4, cpu)
    for name, value in reference.items():
        assert record[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    oracle.evaluate(model.space.max_genome())
    for key, value in model.state_dict().items():  # BN running stats included
        assert torch.equal(value, before[key]), key
    # the archive answers: this process, and a new oracle (a resume, another worker)
    assert oracle.evaluate(genome) == (record, True)
    again = FitnessOracle(model, data, Archive(tmp_path), val_images=4, bn_batches=1,
                          batch_size=4, seed=cfg.seed)
    assert again.evaluate(genome)[1] and again.evaluated == 0 and again.hits == 1


def test_budgets_reject_before_scoring_and_latency_models(supernet, tmp_path, monkeypatch):
    from salnas.search.latency import LatencyTable, entry_keys

    model, cfg, _ = load_supernet(supernet)
    data = load_training_data(cfg, supernet.parent, progress=False)
    oracle = FitnessOracle(model, data, Archive(tmp_path / "a"), budgets={"flops": 1.0},
                           val_images=2, bn_batches=1, batch_size=2)
    monkeypatch.setattr(oracle, "score", lambda *a: pytest.fail("an infeasible genome was scored"))
    record = oracle.compute(model.space.min_genome())
    assert not record["feasible"] and not record["scored"] and math.isnan(record["CC"])
    assert record["flops"] > 1 and record["params"] > 0
    # a LUT (here a flat one: every entry 1 ms) predicts without running anything
    space = model.space
    lut = LatencyTable(space, dict.fromkeys(entry_keys(space), 1.0), {"a": 1.0, "b": 0.5},
                       {"device": {"type": "cpu"}, "threads": 1})
    lut.save(tmp_path / "lut.json")
    table = LutLatency(str(tmp_path / "lut.json"), space)
    oracle = FitnessOracle(model, data, Archive(tmp_path / "b"), budgets={"latency_ms": 5.0},
                           latency=table, val_images=2, bn_batches=1, batch_size=2)
    monkeypatch.setattr(oracle, "score", lambda *a: pytest.fail("an infeasible genome was scored"))
    record = oracle.compute(space.max_genome())
    assert record["latency_source"] == "lut" and not record["feasible"]
    assert record["latency_ms"] == pytest.approx(table.table.predict_ms(space.max_genome()))
    with pytest.raises(ConfigError, match=r"search\.latency\.lut"):
        LutLatency(str(tmp_path / "missing.json"), space)
    # measured: batch 1, fixed threads, median
    measured = MeasuredLatency(config(latency={"warmup": 0, "repeats": 2}).search.latency)
    genome = space.min_genome()
    assert measured(genome, model.extract(genome)) > 0


# ---------------------------------------------------------------------------- engines
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_outputs(engine, finished, supernet):
    out = finished(engine)
    archive = read_csv(out / "archive.csv")
    ids = [r["id"] for r in archive]
    assert len(ids) == len(set(ids)) > 4  # one row per architecture
    assert {r["engine"] for r in archive} == {engine}
    assert {r["generation"] for r in archive} <= {"0", "1", "2"}
    # early exit: the initial population is drawn under the params threshold only
    first = [r for r in archive if r["generation"] == "0"]
    assert len(first) == 4 and all(int(r["params"]) <= MAX_PARAMS for r in first)
    # anchors: every engine starts from the min genome (the max one is over the threshold)
    space = load_supernet(supernet)[0].space
    assert space.min_genome().id in {r["id"] for r in first}
    # budgets: infeasible rows are never scored; the budget is met by every feasible one
    for r in archive:
        assert (r["feasible"] == "true") == (float(r["flops"]) <= FLOPS_BUDGET)
        assert (r["CC"] != "") == (r["feasible"] == "true")
    # the Pareto set: feasible, in the archive, mutually non-dominated, and dominated by none
    pareto = read_csv(out / "pareto.csv")
    assert pareto and all(r["feasible"] == "true" and r["id"] in ids for r in pareto)
    f = lambda r: np.array([-float(r["CC"]), float(r["flops"])])  # noqa: E731
    dominates = lambda a, b: bool(np.all(a <= b) and np.any(a < b))  # noqa: E731
    for p in pareto:
        assert not any(dominates(f(q), f(p)) for q in archive if q["feasible"] == "true")
    history = read_csv(out / "hv_history.csv")
    hv = [float(h["hypervolume"]) for h in history]
    assert [h["generation"] for h in history] == ["0", "1", "2"]
    assert all(b >= a for a, b in itertools.pairwise(hv)) and hv[-1] > 0
    meta = json.loads((out / "search.json").read_text())
    assert meta["status"] == "done" and meta["seed"] == 3 and meta["engine"] == engine
    assert meta["hypervolume"]["reference_point"] == [1.1, 1.1]
    assert meta["hypervolume"]["bounds"]["CC"] == [0.0, 1.0]
    assert meta["hypervolume"]["bounds"]["flops"][1] > FLOPS_BUDGET  # flops of the max genome
    assert meta["summary"]["hypervolume"] == pytest.approx(hv[-1])
    assert {"pymoo", "optuna", "torch"} <= set(meta["provenance"]["versions"])
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_sigkill_then_rerun_equals_an_uninterrupted_run(supernet, finished, tmp_path):
    cfg = write_config(tmp_path / "search.yaml")
    out = tmp_path / "search"
    cmd = [sys.executable, "-m", "salnas.cli", "search", "--config", str(cfg), "--supernet",
           str(supernet), "--out", str(out), "--no-progress"]
    # The archive's test hook: the worker SIGKILLs itself as it claims the genome after the
    # third row, so three rows are durable and a fourth evaluation is in flight.
    env = {**os.environ, KILL_AFTER_ROWS_ENV: "3"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=900)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    killed_rows = len(Archive(out).records())
    assert killed_rows == 3
    (claim,) = (out / ".claims").iterdir()  # the dead worker's in-flight evaluation
    assert claim.name not in {r["id"] for r in Archive(out).records()}
    run = SearchRun(config(), supernet, out, progress=False)
    run.run()
    assert run.oracle.hits >= killed_rows  # nothing evaluated twice...
    reference = read_csv(finished("nsga2") / "archive.csv")
    assert run.oracle.evaluated == len(reference) - killed_rows  # ...and nothing lost
    assert strip(read_csv(out / "archive.csv")) == strip(reference)
    assert read_csv(out / "hv_history.csv") == read_csv(finished("nsga2") / "hv_history.csv")
    assert not list((out / ".claims").iterdir())  # the killed worker's claim was taken over


def test_interrupted_optuna_replays_to_the_same_archive(supernet, finished, tmp_path):
    run = SearchRun(config(engine="optuna-tpe"), supernet, tmp_path, progress=False)
    compute = run.oracle.compute

    def dies_after_five(genome):
        if run.oracle.evaluated == 5:
            raise KeyboardInterrupt("simulated kill")
        return compute(genome)

    run.oracle.compute = dies_after_five
    with pytest.raises(KeyboardInterrupt):
        run.run()
    again = SearchRun(config(engine="optuna-tpe"), supernet, tmp_path, progress=False)
    again.run()
    assert again.oracle.hits >= 5
    reference = read_csv(finished("optuna-tpe") / "archive.csv")
    assert strip(read_csv(tmp_path / "archive.csv")) == strip(reference)


# ---------------------------------------------------------------------------- errors
def test_errors_name_the_setting_and_never_touch_the_archive(supernet, finished, tmp_path):
    missing = tmp_path / "nope" / "supernet.pt"
    with pytest.raises(SalnasError, match=f"{re.escape(str(missing))}.*does not exist"):
        run_search(config(), missing, tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match=r"search.objectives: unknown objective.*'CCC'"):
        run_search(config(objectives=["CCC", "flops"]), supernet, tmp_path / "x")
    with pytest.raises(SalnasError, match=r"search\.storage .*optuna engines"):
        run_search(config(storage=str(tmp_path / "j.log")), supernet, tmp_path / "x")
    with pytest.raises(SalnasError, match=r"postgresql://salnas:\*\*\*@127.0.0.1:1/x.*cannot"):
        run_search(config(engine="optuna-tpe", storage="postgresql://salnas:pw@127.0.0.1:1/x"),
                   supernet, tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match=r"search\.latency\.mode is 'lut' but"):
        run_search(config(objectives=["CC", "latency_ms"], latency={"mode": "lut"}), supernet,
                   tmp_path / "x")
    assert not (tmp_path / "x").exists()  # none of these wrote anything
    # another config into a finished directory: refused before anything is written
    out = finished("nsga2")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(SalnasError, match=r"another config \(search.population: 4 -> 6\)"):
        run_search(config(population=6), supernet, out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # through the CLI command: the setting is named
    from typer.testing import CliRunner

    from salnas.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  population: 1\n")
    result = CliRunner().invoke(app, ["search", "--config", str(bad), "--supernet",
                                      str(supernet), "--out", str(tmp_path / "y")])
    assert result.exit_code != 0 and "'search.population'" in str(result.exception)


# ---------------------------------------------------------------------------- workers
def _two_workers(supernet: Path, tmp_path: Path, storage: str, study: str) -> Path:
    cfg = write_config(tmp_path / "search.yaml", engine="optuna-nsga2", trials=10,
                       study_name=study)
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "salnas.cli", "search", "--config", str(cfg), "--supernet",
           str(supernet), "--out", str(out), "--storage", storage, "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr[-3000:]
    evaluated = [int(re.search(r"this process: (\d+) evaluated", s).group(1))
                 for s, _ in results]
    ids = [r["id"] for r in read_csv(out / "archive.csv")]
    assert len(ids) == len(set(ids))
    assert sum(evaluated) == len(ids)  # no architecture evaluated by both workers
    return out


def _check_study(storage: str, study: str) -> None:
    import optuna

    from salnas.search.engines.optuna_engine import open_storage

    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).get_trials(
        states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    assert len(trials) >= 10  # duplicates are pruned, and count in the budget
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took part


def test_two_workers_share_a_journal_study(supernet, tmp_path):
    journal = str(tmp_path / "study.journal")
    _two_workers(supernet, tmp_path, journal, "journal-test")
    _check_study(journal, "journal-test")


def test_a_worker_killed_holding_the_journal_lock_does_not_hang_the_others(supernet, tmp_path):
    """A worker SIGKILLed inside the journal's lock leaves the lock symlink behind; with the
    documented relative path (a folder in it) that symlink used to point nowhere, Optuna's
    stale-lock check never fired and every other worker spun forever. Now the lock is released
    after its grace period and another worker finishes the study (bounded by a deadline)."""
    import optuna

    from salnas.search.engines.optuna_engine import JOURNAL_LOCK_GRACE_S, open_storage

    cfg = write_config(tmp_path / "search.yaml", engine="optuna-nsga2", trials=6,
                       study_name="lock-test")
    journal = "ck/study.journal"  # relative, with a folder, as in docs/search.md
    # A worker's storage; the process dies (SIGKILL) inside its first journal write, after
    # taking the lock and before releasing it.
    holder = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys, optuna\n"
         "from salnas.search.engines.optuna_engine import open_storage\n"
         "storage = open_storage(sys.argv[1])\n"
         "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
         "optuna.create_study(storage=storage, study_name='killed-in-the-lock')\n",
         journal], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert holder.returncode == -signal.SIGKILL, holder.stderr[-2000:]
    lock = tmp_path / "ck" / "study.journal.lock"
    assert lock.is_symlink() and Path(os.readlink(lock)).is_absolute()  # left behind
    deadline = JOURNAL_LOCK_GRACE_S + 240
    cmd = [sys.executable, "-m", "salnas.cli", "search", "--config", str(cfg), "--supernet",
           str(supernet), "--out", "out", "--storage", journal, "--no-progress"]
    try:
        worker = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                                timeout=deadline)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the worker did not finish within {deadline} s: it hangs on the dead "
                    f"worker's lock ({str(e.stderr)[-1000:]})")
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert not lock.exists()
    study = optuna.load_study(study_name="lock-test", storage=open_storage(
        str(tmp_path / journal)))
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                        optuna.trial.TrialState.PRUNED))
    assert len(finished) == 6


def test_trials_of_dead_workers_of_this_host_are_failed():
    import optuna
    from optuna.trial import TrialState

    from salnas.search.archive import worker_id
    from salnas.search.engines.optuna_engine import OptunaEngine

    host = worker_id().rpartition(":")[0]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)  # exited: no such process any more
    study = optuna.create_study(directions=["maximize", "minimize"])
    workers = [f"{host}:{dead}", worker_id(), f"other-host:{dead}", f"{host}:{dead}"]
    trials = [study.ask() for _ in workers]
    for t, w in zip(trials, workers, strict=True):
        t.set_user_attr("worker", w)
    trials[0].suggest_categorical("gene", [3, 5])
    study.tell(trials[3], [0.5, 1.0])  # finished before the dead worker's host looked
    OptunaEngine._fail_dead_trials(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    # the dead worker's trial is failed and retried: a WAITING copy with its params
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING,
                      TrialState.COMPLETE, TrialState.WAITING]
    retry = study.get_trials(deepcopy=False)[4]
    assert retry.params == study.get_trials(deepcopy=False)[0].params
    assert retry.system_attrs["failed_trial"] == 0 and "worker" not in retry.user_attrs
    OptunaEngine._fail_dead_trials(study)  # again: nothing left to fail, no error
    assert [t.state for t in study.get_trials(deepcopy=False)] == states
    assert study.ask().params == retry.params  # the next ask takes the retry


POSTGRES = os.environ.get("SALNAS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_or_skip() -> str:
    import sqlalchemy

    from salnas.search.engines.optuna_engine import database_url

    try:
        engine = sqlalchemy.create_engine(database_url(POSTGRES),
                                          connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:
        message = (f"no PostgreSQL at {POSTGRES} ({type(e).__name__}: {e}); "
                   "set SALNAS_TEST_POSTGRES_URL")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI needs it")
        pytest.skip(message)
    return POSTGRES


def test_a_killed_postgres_worker_trial_is_failed_and_retried(supernet, tmp_path, monkeypatch):
    """Optuna's heartbeat on PostgreSQL: a worker SIGKILLed mid-evaluation leaves its trial
    RUNNING; once its heartbeat is older than the grace period another worker fails it and
    runs a retry (same params, ``failed_trial``), so the proposal is not lost."""
    import time

    import optuna
    from optuna.trial import TrialState

    from salnas.search.engines import optuna_engine

    url = _postgres_or_skip()
    study_name = f"salnas-test-{uuid.uuid4().hex[:12]}"
    cfg = write_config(tmp_path / "search.yaml", engine="optuna-nsga2", trials=8,
                       study_name=study_name)
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "salnas.cli", "search", "--config", str(cfg), "--supernet",
           str(supernet), "--out", str(out), "--storage", url, "--no-progress"]
    try:
        # The archive's kill hook: the worker SIGKILLs itself as it claims its fourth genome,
        # inside a RUNNING trial whose heartbeat it had started.
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, KILL_AFTER_ROWS_ENV: "3"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        killed_at = time.monotonic()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
        storage = optuna_engine.open_storage(url)
        (dead,) = optuna.load_study(study_name=study_name, storage=storage).get_trials(
            states=(TrialState.RUNNING,))
        # A survivor in this process, with a short grace period (default 60 s); it joins once
        # the dead worker's heartbeat is older than that (a deadline, not a speed check).
        monkeypatch.setattr(optuna_engine, "HEARTBEAT_INTERVAL_S", 1)
        monkeypatch.setattr(optuna_engine, "HEARTBEAT_GRACE_S", 2)
        time.sleep(max(0.0, killed_at + 3 - time.monotonic()))
        run = SearchRun(config(engine="optuna-nsga2", trials=8, study_name=study_name,
                               storage=url), supernet, out, progress=False)
        run.run()
        trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
        assert trials[dead.number].state == TrialState.FAIL
        (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
        assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert retry.params == dead.params and retry.user_attrs["worker"] != dead.user_attrs[
            "worker"]
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        ids = [r["id"] for r in read_csv(out / "archive.csv")]
        assert retry.user_attrs["genome_id"] in ids and len(ids) == len(set(ids))
        assert len([t for t in trials if t.state in (TrialState.COMPLETE,
                                                      TrialState.PRUNED)]) == 8
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=study_name,
                                storage=optuna_engine.open_storage(url))


def test_two_workers_share_a_postgres_study(supernet, tmp_path):
    import optuna

    from salnas.search.engines.optuna_engine import open_storage

    url = _postgres_or_skip()
    study = f"salnas-test-{uuid.uuid4().hex[:12]}"
    try:
        _two_workers(supernet, tmp_path, url, study)
        _check_study(url, study)
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=study, storage=open_storage(url))
