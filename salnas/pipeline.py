"""``salnas run``: every stage end to end in one run directory, resumable stage by stage.

    RUN/supernet/   salnas supernet train   (checkpoint per epoch, --resume semantics)
    RUN/baselines.json                      (centre bias, split-half observers, on the run's split)
    RUN/search/     salnas search           (archive-backed, resumes)
    RUN/distill/    salnas distill          (per architecture and arm, resumes)
    RUN/report.html salnas report
    RUN/run.json    provenance and, per stage, status and wall time
    RUN/run.log     the pipeline's log lines, timestamped, appended by every run

The pipeline is the application layer: it chains :class:`~salnas.stage.StageRunner`
objects and knows none of their internals. Each stage skips what its outputs show as done,
so a killed run continues where it stopped when the same command is given again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from salnas.analysis.stage import ReportStage
from salnas.baselines import BaselinesStage
from salnas.config import Config, dump_config, load_config
from salnas.distill.stage import DistillStage
from salnas.errors import ConfigError
from salnas.io import (
    provenance,
    read_json,
    remove_stale_tmp,
    write_error,
    write_json_atomic,
    write_text_atomic,
)
from salnas.layout import RUN_LOG, RunLayout, Status, check_fingerprint
from salnas.search.stage import SearchStage
from salnas.stage import StageRunner
from salnas.supernet.stage import SupernetStage

__all__ = ["STAGES", "check_finished_stages", "run_pipeline", "stage_runners"]

STAGES = ("supernet", "baselines", "search", "distill", "report")


def file_log(path: Path, echo: Callable[[str], None]) -> Callable[[str], None]:
    """A log that calls ``echo`` and appends each line, timestamped, to ``path``."""

    def log(message: str) -> None:
        echo(message)
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{datetime.now().astimezone().isoformat(timespec='seconds')} "
                         f"{message}\n")
        except OSError as e:
            raise write_error(path, e) from e

    return log


def stage_runners(config: Config, layout: RunLayout, progress: bool = True) -> list[StageRunner]:
    """The stages of ``salnas run``, in order."""
    return [cls(config, layout, progress) for cls in
            (SupernetStage, BaselinesStage, SearchStage, DistillStage, ReportStage)]


def check_finished_stages(saved: Config, current: Config, layout: RunLayout,
                          stages: dict[str, Any]) -> None:
    """Refuse ``current`` when it changes a setting a finished stage depends on.

    Settings of stages that have not finished may change, so a run stopped with ``--until
    search`` can go on with another ``distill`` section; a stage that started keeps its own
    check. Compared as resolved configs, so a setting added (with its default) by a newer
    salnas does not block resuming a run started before it.
    """
    pairs = zip(stage_runners(saved, layout, False), stage_runners(current, layout, False),
                strict=True)
    for old, new in pairs:
        if Status.of(stages.get(new.name)) is Status.DONE:
            check_fingerprint(layout.root, old.fingerprint(), new.fingerprint(),
                              what=f"a finished {new.name} stage")


def run_pipeline(
    config: Config, run_dir: Path, progress: bool = True, log: Callable[[str], None] = print,
    until: str | None = None,
) -> dict[str, Any]:
    """Run or resume every stage (or those up to and including ``until``); returns the
    ``stages`` record written to RUN/run.json.

    Every ``log`` line also goes to RUN/run.log (with the reason when a stage fails). A run
    stopped by ``until`` continues with the next stage when it is given again without it.
    """
    layout = RunLayout(Path(run_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(layout.root, min_age_s=0)  # orphans of a kill mid-write (one writer)
    log = file_log(layout.root / RUN_LOG, log)
    record = read_json(layout.run_json)
    stages: dict[str, Any] = record.get("stages", {}) if isinstance(record, dict) else {}
    if layout.config.is_file():
        check_finished_stages(load_config(layout.config), config, layout, stages)
    write_text_atomic(layout.config, dump_config(config))

    def save(status: Status) -> None:
        write_json_atomic(layout.run_json, {
            **provenance(seed=config.seed, stage="run", status=status.value), "stages": stages})

    runners = stage_runners(config, layout, progress)
    names = [r.name for r in runners]
    if until is not None and until not in names:
        raise ConfigError(f"--until {until!r}: not a stage; use one of {', '.join(names)}")
    last = names.index(until) if until is not None else len(names) - 1
    for runner in runners[:last + 1]:
        name = runner.name
        if runner.is_done() and Status.of(stages.get(name)) is Status.DONE:
            log(f"[{name}] done earlier ({stages[name].get('wall_s', float('nan')):.0f} s), "
                "skipped")
            continue
        log(f"[{name}] running")
        stages[name] = {"status": Status.RUNNING.value}
        save(Status.RUNNING)
        start = time.perf_counter()
        try:
            runner.run()
        except BaseException as e:
            log(f"[{name}] failed: {' '.join(str(e).split()) or type(e).__name__}")
            raise
        digest = hashlib.sha1(json.dumps(runner.fingerprint(), sort_keys=True,
                                         default=str).encode()).hexdigest()[:12]
        stages[name] = {"status": Status.DONE.value, "wall_s": time.perf_counter() - start,
                        "fingerprint": digest, **runner.status()}
        save(Status.RUNNING)
        log(f"[{name}] done in {stages[name]['wall_s']:.0f} s")
    if last < len(names) - 1:
        log(f"stopped after [{names[last]}] (--until); rerun without it for "
            f"{', '.join(names[last + 1:])}")
    save(Status.DONE if last == len(names) - 1 else Status.RUNNING)
    return stages
