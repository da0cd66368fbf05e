"""Optuna multi-objective search (``NSGAIISampler`` or ``TPESampler``) by ask/tell.

**What a trial holds** (what ``optuna-dashboard`` shows):

* *Params*: one categorical per gene, suggested **by value** (``s1.b0.kernel`` is 3 or 5, a
  resolution is ``"64x96"``), so params, plots and importances read as genes, not as choice
  indices. NSGA-II treats categorical and integer params alike (uniform crossover takes each
  gene from a parent, mutation redraws it); TPE models each gene's choices by frequency. The
  genome is ``space.repair(...)`` of the suggested choices: genes of blocks beyond a stage's
  depth do not change the network and are canonicalised.
* *User attributes*: ``genome`` (JSON) and ``genome_id``; ``genes``, the **repaired** genome's
  gene values (inactive genes at their canonical value) with ``inactive`` naming the genes that
  do not change the network; ``params`` (parameter count), ``flops``, ``latency_ms`` and every
  metric of the archive record (CC, KLD, NSS, SIM, AUC_Judd; null when not computed),
  ``feasible``, ``constraints`` (``{budget: (value - budget) / budget}``) and ``worker``.
* *Objective names*: ``study.set_metric_names`` with ``search.objectives``.
* *Constraints*: the sampler's ``constraints_func`` reads the trial's ``constraints`` user
  attr, and Optuna stores its values in ``trial.system_attrs["constraints"]``, which both
  samplers read (infeasible trials rank behind feasible ones) and the dashboard reads to mark
  infeasible trials (an over-budget genome is not a feasible point at CC 0). Optuna 5
  deprecates ``constraints_func`` for ``Trial.set_constraint``, whose ``constraints:<name>``
  keys optuna-dashboard 0.21 does not read; the FutureWarning is silenced.

**Duplicates are pruned, not repeated.** Different suggestions can repair to one genome, and
samplers re-propose good genomes. Such a proposal is answered from the archive (no work) and
told ``PRUNED`` with ``duplicate_of`` = the number of the COMPLETE trial that holds the genome,
so the study keeps one COMPLETE trial per architecture and its best trials (the dashboard's
Pareto front) list no architecture twice. Telling it as "the same trial" is impossible (a
finished trial cannot be told again) and an asked trial cannot be skipped, so PRUNED is the
state that says "not a new result": NSGA-II builds its populations from COMPLETE trials only
(unchanged) and TPE counts pruned trials among its worse ones (a nudge away from repeats).
Pruned duplicates count toward ``search.trials`` (the budget counts proposals, as for every
engine), so a sampler that keeps repeating itself cannot loop forever. Two workers proposing
the same new genome at the same moment may still both complete it (the archive evaluates it
once).

Without ``search.storage`` the study lives in memory and a rerun *replays* it: same seed, same
proposals, answers from the archive. With a storage (RDB URL or a journal file) the study
persists and N workers share it: each worker asks and tells its own trials until the study
holds ``search.trials`` finished (complete or pruned) ones (up to N-1 more may finish).

**Dead workers.** A trial left RUNNING by a killed worker is failed and **retried**: a WAITING
copy with the same params (``system_attrs["failed_trial"]`` and ``"retry_history"``, Optuna's
``RetryHeartbeatStaleTrialCallback`` convention; at most :data:`MAX_RETRY` times) that the
next ``ask`` of any worker takes.

* RDB storages (PostgreSQL, MySQL, SQLite) get Optuna's heartbeat: each worker records one for
  its running trial every :data:`HEARTBEAT_INTERVAL_S` seconds, and before each ``ask`` fails
  the trials of any host whose heartbeat is older than :data:`HEARTBEAT_GRACE_S`.
* Journal files have no heartbeat: before each ``ask`` a worker fails the RUNNING trials of
  dead processes of its own host. The journal path is made absolute before it reaches
  ``JournalFileBackend``: Optuna's lock is a symlink to the journal, and with a relative path
  that symlink points nowhere, so a lock left by a killed worker was never recognised as
  stale and the other workers spun forever. Now a lock unchanged for
  :data:`JOURNAL_LOCK_GRACE_S` seconds is released.

The archive keeps every finished evaluation, so none is repeated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from salnas.errors import SalnasError
from salnas.io import pid_alive
from salnas.search.archive import worker_id
from salnas.search.engines.base import Engine, initial_population
from salnas.supernet.space import Genome

__all__ = [
    "HEARTBEAT_GRACE_S", "HEARTBEAT_INTERVAL_S", "JOURNAL_LOCK_GRACE_S", "MAX_RETRY",
    "OptunaEngine", "database_url", "gene_param", "journal_lock", "open_storage", "retry_trial",
]

_ATTR = "salnas"  # study user attr: the search fingerprint, set once the study is ready
# Part of the fingerprint: studies whose params are choice indices (older salnas) are refused.
_PARAMS_KIND = "gene-values"

HEARTBEAT_INTERVAL_S = 10  # RDB storages: a running trial's heartbeat period
HEARTBEAT_GRACE_S = 60  # ... and the silence after which its worker is taken for dead
JOURNAL_LOCK_GRACE_S = 30  # a journal lock unchanged this long is released (Optuna's default)
MAX_RETRY = 3  # retries of a trial whose worker died


def _mask(url: str) -> str:
    """The URL without its password (error messages are printed and logged)."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def database_url(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) with the psycopg2 driver when psycopg 3, which
    SQLAlchemy 2.1 picks by default, is not installed; other URLs unchanged."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


_SCHEMA_RETRIES = 4


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's experimental/deprecation notices for the features used on purpose
    (heartbeat, retry callback, ``constraints_func``) and its ask/tell heartbeat hint."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", ".*constraints_func", FutureWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
        yield


def retry_trial(study: optuna.Study, failed: FrozenTrial) -> None:
    """Enqueue a WAITING copy of a trial whose worker died: same params and distributions,
    ``failed_trial`` / ``retry_history`` system attrs (as Optuna's
    ``RetryHeartbeatStaleTrialCallback``), no user attrs (the dead worker's ``worker`` would
    mark the retry dead again); nothing after :data:`MAX_RETRY` retries."""
    history = [*failed.system_attrs.get("retry_history", []), failed.number]
    if len(history) > MAX_RETRY:
        return
    system_attrs = {**failed.system_attrs, "failed_trial": history[0], "retry_history": history}
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
        system_attrs=system_attrs))


def _rdb_storage(url: str, kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    import inspect

    callback = ("heartbeat_stale_trial_callback"  # Optuna >= 4.9
                if "heartbeat_stale_trial_callback" in
                inspect.signature(optuna.storages.RDBStorage).parameters
                else "failed_trial_callback")
    with _quiet_optuna():
        return optuna.storages.RDBStorage(
            database_url(url), engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=HEARTBEAT_GRACE_S, **{callback: retry_trial},  # type: ignore[arg-type]
        )


def journal_lock(path: str | os.PathLike[str]) -> Any:
    """The lock of a journal file as every worker takes it: a symlink next to the file to the
    file's **absolute** path, released by the others when unchanged for
    :data:`JOURNAL_LOCK_GRACE_S` seconds."""
    from optuna.storages.journal import JournalFileSymlinkLock

    return JournalFileSymlinkLock(str(Path(path).expanduser().resolve()),
                                  grace_period=JOURNAL_LOCK_GRACE_S)


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """An Optuna storage from ``--storage``: an RDB URL (``sqlite:///``, ``postgresql://``,
    ``mysql://``; with Optuna's heartbeat) or a journal file path (its folder is made); None
    means in memory. Fails with one clear message when it cannot be reached."""
    if url is None:
        return None
    if "://" in url:
        kwargs: dict[str, Any] = {}
        if url.startswith(("postgres", "mysql")):
            kwargs["connect_args"] = {"connect_timeout": 10}
        for attempt in range(_SCHEMA_RETRIES + 1):
            try:
                return _rdb_storage(url, kwargs)
            except Exception as e:  # sqlalchemy/driver errors vary; one message for all
                # Workers starting together on an empty database race to create Optuna's
                # tables; the loser gets a duplicate-key error and finds them made on a retry.
                text = str(e)
                if attempt < _SCHEMA_RETRIES and ("duplicate key" in text
                                                  or "already exists" in text):
                    time.sleep(0.5 * (attempt + 1))
                    continue
                reason = text.strip().splitlines()[0] if text.strip() else type(e).__name__
                raise SalnasError(
                    f"search.storage / --storage {_mask(url)}: cannot open the Optuna storage "
                    f"({reason})"
                ) from None
    # Absolute: the lock symlink must point at the journal from wherever it lies (see above).
    path = Path(url).expanduser().resolve()
    if path.is_dir():
        raise SalnasError(f"search.storage / --storage {url}: {path} is a folder; give the "
                          "journal file (e.g. RUN/search/study.journal)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # RUN/search/ on a fresh run
    except OSError as e:
        raise SalnasError(f"search.storage / --storage {url}: cannot make folder {path.parent} "
                          f"({e.strerror or e})") from None
    from optuna.storages.journal import JournalFileBackend

    try:
        return optuna.storages.JournalStorage(
            JournalFileBackend(str(path), lock_obj=journal_lock(path)))
    except Exception as e:
        raise SalnasError(f"search.storage / --storage {url}: not a usable Optuna journal "
                          f"file ({e})") from None


def gene_param(value: Any) -> Any:
    """A gene value as an Optuna categorical choice: a resolution ``(64, 96)`` is ``"64x96"``;
    bools, ints and strings as they are."""
    if isinstance(value, tuple | list):
        return "x".join(str(v) for v in value)
    return value


def _attr(value: Any) -> Any:
    """A record value as a JSON user attr: numpy scalars as Python numbers, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Record columns that are trial user attrs (metrics, costs, feasibility, timing).
_SKIP_RECORD = {"id", "genome", "engine", "generation", "worker", "finished_at"}


class _Heartbeat:
    """A running trial's heartbeat, recorded by a thread every ``interval`` seconds (what
    ``Study.optimize`` does; ask/tell must do it itself)."""

    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"heartbeat-{trial_id}")

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a lost beat is retried next interval
                self.storage.record_heartbeat(self.trial_id)

    def __enter__(self) -> _Heartbeat:
        self.storage.record_heartbeat(self.trial_id)  # at once: a trial without one is never
        self._thread.start()  # stale
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class OptunaEngine(Engine):
    """Optuna NSGA-II or TPE on the genome's genes (categorical, by value)."""

    def __init__(self, problem: Any, context: Any, sampler: str) -> None:
        super().__init__(problem, context)
        self.sampler_name = sampler
        self.name = f"optuna-{sampler}"
        # gene name -> its choices as Optuna categorical values (index = choice index)
        self._choices = {g.name: [gene_param(c) for c in g.choices] for g in self.space.genes}
        self.storage: Any = None
        self._study_id: int | None = None

    # ------------------------------------------------------------------ set-up
    def _sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        cfg = self.context.config
        constraints = self._constraints if self.problem.n_constr else None
        with _quiet_optuna():
            if self.sampler_name == "nsga2":
                return optuna.samplers.NSGAIISampler(
                    population_size=cfg.population, crossover_prob=cfg.crossover_prob,
                    seed=seed, constraints_func=constraints,
                )
            return optuna.samplers.TPESampler(
                n_startup_trials=cfg.population, seed=seed, constraints_func=constraints
            )

    def _constraints(self, trial: FrozenTrial) -> list[float]:
        """``constraints_func``: the violations in budget order (<= 0 feasible)."""
        values = trial.user_attrs.get("constraints") or {}
        return [float(values.get(name, 0.0)) for name in self.problem.objectives.budget_names]

    def _fingerprint(self) -> str:
        base = self.context.extra.get("fingerprint", {})
        return json.dumps({**(base if isinstance(base, dict) else {}),
                           "optuna_params": _PARAMS_KIND}, sort_keys=True)

    def _study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says enough
        ctx = self.context
        storage = open_storage(ctx.storage) if isinstance(ctx.storage, str) else ctx.storage
        self.storage = storage
        # One seed replays an in-memory study exactly; workers sharing a storage need
        # different streams, or they would propose the same genomes in lock-step.
        seed = ctx.seed if storage is None else int.from_bytes(
            hashlib.sha1(f"{ctx.seed}:{worker_id()}".encode()).digest()[:4], "little")
        sampler = self._sampler(seed)
        name = ctx.config.study_name
        directions = [StudyDirection[d.upper()] for d in self.problem.objectives.directions]
        fingerprint = self._fingerprint()
        # The early-exit population is drawn before the study is created, so that creating,
        # enqueueing and marking it ready take milliseconds (a kill in between is unlikely).
        exists = storage is not None and name in optuna.get_all_study_names(storage)
        population = None if exists else initial_population(
            self.space, ctx, np.random.default_rng([ctx.seed, 17]))
        try:
            study = optuna.create_study(storage=storage, sampler=sampler, study_name=name,
                                        directions=directions)
        except optuna.exceptions.DuplicatedStudyError:
            if storage is None:  # an in-memory study is always new
                raise
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
            self._join(study, fingerprint)
            return study
        with _quiet_optuna():
            study.set_metric_names(list(self.problem.objectives.names))
        for genome in population or []:
            study.enqueue_trial(self._params(genome))
        study.set_user_attr(_ATTR, fingerprint)  # ready: other workers may join
        return study

    def _join(self, study: optuna.Study, fingerprint: str, wait_s: float = 120.0) -> None:
        deadline = time.monotonic() + wait_s
        while _ATTR not in study.user_attrs:
            if time.monotonic() > deadline:
                raise SalnasError(f"study {study.study_name!r} exists but was not made (or not "
                                  "finished being set up) by salnas search: no 'salnas' user "
                                  "attr; choose another search.study_name or delete the study")
            time.sleep(0.5)
        if study.user_attrs[_ATTR] != fingerprint:
            raise SalnasError(
                f"study {study.study_name!r} in this storage was made with another search "
                f"config or supernet (or by an older salnas); use the same --config and "
                f"--supernet, or another search.study_name"
            )
        if [d.name.lower() for d in study.directions] != self.problem.objectives.directions:
            raise SalnasError(f"study {study.study_name!r} has other objective directions")

    @staticmethod
    def _heartbeat_interval(storage: Any) -> int | None:
        if isinstance(storage, optuna.storages.RDBStorage):
            return storage.get_heartbeat_interval()
        return None

    def _fail_stale(self, study: optuna.Study) -> None:
        """Fail (and retry) the trials of dead workers: by heartbeat on RDB storages, else
        those of dead processes on this host."""
        if self._heartbeat_interval(self.storage):
            with _quiet_optuna():
                optuna.storages.fail_stale_trials(study)  # runs retry_trial on each
        elif self.storage is not None:
            self._fail_dead_trials(study)

    @staticmethod
    def _fail_dead_trials(study: optuna.Study) -> None:
        """Trials left RUNNING by a killed worker on this host will never be told: fail them,
        and enqueue a retry (:func:`retry_trial`).

        Another worker may fail the same trial first (or it finishes between the check and the
        write): then this worker's tell raises and nothing is retried twice.
        """
        host = worker_id().rpartition(":")[0]
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            w_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
            if w_host == host and pid.isdigit() and not pid_alive(int(pid)):
                try:
                    failed = study.tell(t.number, state=TrialState.FAIL)
                except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                    continue  # told by another worker ("Cannot tell a FAIL trial")
                retry_trial(study, failed)

    def _params(self, genome: Genome) -> dict[str, Any]:
        """A genome as trial params: gene values of its canonical vector."""
        return {g.name: self._choices[g.name][int(i)]
                for g, i in zip(self.space.genes, self.space.encode(genome), strict=True)}

    def _trial_id(self, study: optuna.Study, number: int) -> int:
        if self._study_id is None:
            self._study_id = self.storage.get_study_id_from_name(study.study_name)
        return int(self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number))

    # ------------------------------------------------------------------ one trial
    def _genome_attrs(self, trial: optuna.Trial, genome: Genome) -> None:
        params = self._params(genome)
        active = genome.values()
        trial.set_user_attr("genome_id", genome.id)
        trial.set_user_attr("genome", genome.to_json())
        trial.set_user_attr("genes", params)
        trial.set_user_attr("inactive", [n for n in params if n not in active])

    def _record_attrs(self, trial: optuna.Trial, ev: Any) -> None:
        for key, value in ev.record.items():
            if key not in _SKIP_RECORD:
                trial.set_user_attr(key, _attr(value))
        names = self.problem.objectives.budget_names
        trial.set_user_attr("constraints", {n: float(v) for n, v in
                                            zip(names, ev.constraints, strict=True)})

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        ctx = self.context
        study = self._study()
        heartbeat = self._heartbeat_interval(self.storage)
        pop, budget = ctx.population, ctx.trials
        objectives = self.problem.objectives
        last_gen = -1
        while True:
            self._fail_stale(study)
            finished = study.get_trials(deepcopy=False,
                                        states=(TrialState.COMPLETE, TrialState.PRUNED))
            if len(finished) >= budget:
                break
            known = {t.user_attrs.get("genome_id"): t.number for t in finished
                     if t.state == TrialState.COMPLETE}
            with _quiet_optuna():
                trial = study.ask()
            trial.set_user_attr("worker", worker_id())
            beat = (_Heartbeat(self.storage, self._trial_id(study, trial.number), heartbeat)
                    if heartbeat else contextlib.nullcontext())
            with beat:
                values = [trial.suggest_categorical(n, c) for n, c in self._choices.items()]
                genome = self.space.repair([self._choices[n].index(v)
                                            for n, v in zip(self._choices, values, strict=True)])
                self._genome_attrs(trial, genome)
                generation = trial.number // pop
                ev = self.problem.evaluate(genome, engine=self.name, generation=generation)
                self._record_attrs(trial, ev)
                first = known.get(genome.id)
                if first is not None and first != trial.number:
                    trial.set_user_attr("duplicate_of", first)
                    study.tell(trial, state=TrialState.PRUNED)
                else:
                    study.tell(trial, objectives.optuna_values(ev.record))
            last_gen = max(last_gen, generation)
            if (trial.number + 1) % pop == 0:  # this trial closes its generation's block
                ctx.on_generation(generation)
        ctx.on_generation(max(last_gen, 0))
