"""Optuna multi-objective search (``NSGAIISampler`` or ``TPESampler``) by ask/tell.

Each trial suggests one integer per gene (index into the gene's choices), the genome is
``space.repair(vector)`` and :meth:`SearchProblem.evaluate` answers it (from the archive when
known). Budgets reach the samplers as constraint values (``Trial.set_constraint`` on
Optuna >= 5, which deprecated ``constraints_func``; ``constraints_func`` reading the trial's
user attrs before that), so infeasible trials rank behind feasible ones.

Without ``search.storage`` the study lives in memory and a rerun *replays* it: same seed, same
proposals, answers from the archive. With a storage (RDB URL or a journal file) the study
persists and N workers share it: each worker asks and tells its own trials until the study
holds ``search.trials`` complete ones (up to N-1 more may finish). Trials left RUNNING by a
dead worker of this host are marked FAIL on start; the archive keeps every finished
evaluation, so none is repeated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from salnas.errors import SalnasError
from salnas.search.archive import worker_id
from salnas.search.engines.base import Engine, initial_population
from salnas.supernet.space import Genome

__all__ = ["OptunaEngine", "database_url", "open_storage"]

_ATTR = "salnas"  # study user attr: the search fingerprint, set once the study is ready
_SET_CONSTRAINT = hasattr(optuna.trial.Trial, "set_constraint")  # Optuna >= 5


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


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """An Optuna storage from ``--storage``: an RDB URL (``sqlite:///``, ``postgresql://``,
    ``mysql://``) or a journal file path; None means in memory. Fails with one clear message
    when it cannot be reached."""
    if url is None:
        return None
    if "://" in url:
        kwargs: dict[str, Any] = {}
        if url.startswith(("postgres", "mysql")):
            kwargs["connect_args"] = {"connect_timeout": 10}
        for attempt in range(_SCHEMA_RETRIES + 1):
            try:
                return optuna.storages.RDBStorage(database_url(url), engine_kwargs=kwargs)
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
    path = Path(url)
    if not path.parent.is_dir():
        raise SalnasError(f"search.storage / --storage {url}: folder {path.parent} does not exist")
    from optuna.storages.journal import JournalFileBackend

    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as e:
        raise SalnasError(f"search.storage / --storage {url}: not a usable Optuna journal "
                          f"file ({e})") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OptunaEngine(Engine):
    """Optuna NSGA-II or TPE on the genome's integer genes."""

    def __init__(self, problem: Any, context: Any, sampler: str) -> None:
        super().__init__(problem, context)
        self.sampler_name = sampler
        self.name = f"optuna-{sampler}"

    # ------------------------------------------------------------------ set-up
    def _sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        cfg = self.context.config
        constraints = (self._constraints if self.problem.n_constr and not _SET_CONSTRAINT
                       else None)
        if self.sampler_name == "nsga2":
            return optuna.samplers.NSGAIISampler(
                population_size=cfg.population, crossover_prob=cfg.crossover_prob, seed=seed,
                constraints_func=constraints,
            )
        return optuna.samplers.TPESampler(
            n_startup_trials=cfg.population, seed=seed, constraints_func=constraints
        )

    @staticmethod
    def _constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return list(trial.user_attrs.get("constraints", []))

    def _study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says enough
        ctx = self.context
        storage = open_storage(ctx.storage) if isinstance(ctx.storage, str) else ctx.storage
        # One seed replays an in-memory study exactly; workers sharing a storage need
        # different streams, or they would propose the same genomes in lock-step.
        seed = ctx.seed if storage is None else int.from_bytes(
            hashlib.sha1(f"{ctx.seed}:{worker_id()}".encode()).digest()[:4], "little")
        sampler = self._sampler(seed)
        name = ctx.config.study_name
        directions = [StudyDirection[d.upper()] for d in self.problem.objectives.directions]
        fingerprint = json.dumps(ctx.extra.get("fingerprint", {}), sort_keys=True)
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
                f"config or supernet; use the same --config and --supernet, or another "
                f"search.study_name"
            )
        if [d.name.lower() for d in study.directions] != self.problem.objectives.directions:
            raise SalnasError(f"study {study.study_name!r} has other objective directions")
        self._fail_dead_trials(study)

    @staticmethod
    def _fail_dead_trials(study: optuna.Study) -> None:
        """Trials left RUNNING by a killed worker on this host will never be told: fail them.

        Another worker starting at the same time may fail the same trial first: a trial
        finished meanwhile is skipped (``skip_if_finished``), also when it finishes between
        Optuna's check and its write.
        """
        host = worker_id().rpartition(":")[0]
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            w_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
            if w_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)

    def _params(self, genome: Genome) -> dict[str, int]:
        return {n: int(v) for n, v in zip(self.space.gene_names(), self.space.encode(genome),
                                          strict=True)}

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        ctx = self.context
        study = self._study()
        names = self.space.gene_names()
        _, hi = self.space.bounds()
        pop, budget = ctx.population, ctx.trials
        objectives = self.problem.objectives
        last_gen = -1
        while len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < budget:
            trial = study.ask()
            trial.set_user_attr("worker", worker_id())
            vector = [trial.suggest_int(n, 0, int(h)) for n, h in zip(names, hi, strict=True)]
            genome = self.space.repair(vector)
            trial.set_user_attr("genome_id", genome.id)
            generation = trial.number // pop
            ev = self.problem.evaluate(genome, engine=self.name, generation=generation)
            trial.set_user_attr("constraints", ev.constraints.tolist())
            if _SET_CONSTRAINT:
                for key, value in zip(objectives.budget_names, ev.constraints, strict=True):
                    trial.set_constraint(key, float(value))
            study.tell(trial, objectives.optuna_values(ev.record))
            last_gen = max(last_gen, generation)
            if (trial.number + 1) % pop == 0:  # this trial closes its generation's block
                ctx.on_generation(generation)
        ctx.on_generation(max(last_gen, 0))
