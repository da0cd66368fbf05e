"""``salnas run``: every stage end to end in one run directory, resumable stage by stage.

    RUN/supernet/   salnas supernet train   (checkpoint per epoch, --resume semantics)
    RUN/baselines.json                      (centre bias, split-half observers, on the run's split)
    RUN/search/     salnas search           (archive-backed, resumes)
    RUN/distill/    salnas distill          (per architecture and arm, resumes)
    RUN/report.html salnas report
    RUN/run.json    provenance and, per stage, status and wall time

Each stage skips what its outputs show as done, so a killed run continues where it
stopped when the same command is given again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from salnas.config import Config, dump_config, load_config
from salnas.errors import SalnasError
from salnas.io import provenance, write_json_atomic, write_text_atomic

STAGES = ("supernet", "baselines", "search", "distill", "report")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _supernet_done(run_dir: Path, config: Config) -> bool:
    from salnas.supernet.train import load_checkpoint

    ckpt = run_dir / "supernet" / "supernet.pt"
    return ckpt.is_file() and int(load_checkpoint(ckpt)["epoch"]) >= config.supernet.epochs


def run_pipeline(
    config: Config, run_dir: Path, progress: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run or resume every stage; returns the ``stages`` record written to RUN/run.json."""
    from salnas.analysis.report import write_report
    from salnas.datasets import open_source
    from salnas.distill.run import run_distill
    from salnas.evaluation import compute_baselines
    from salnas.search.cli import run_search
    from salnas.supernet.train import load_training_data, train_supernet

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved_config = run_dir / "config.yaml"
    # Compared as resolved configs, so a setting added (with its default) by a newer salnas
    # does not block resuming a run started before it.
    if saved_config.is_file() and (load_config(saved_config).model_dump(mode="json")
                                   != config.model_dump(mode="json")):
        raise SalnasError(
            f"{run_dir} was started with another config ({saved_config}); rerun "
            "with the same --config to resume, or choose a new --out"
        )
    write_text_atomic(saved_config, dump_config(config))
    record = _read_json(run_dir / "run.json")
    stages: dict[str, Any] = record.get("stages", {})

    def save(status: str) -> None:
        write_json_atomic(
            run_dir / "run.json",
            {**provenance(seed=config.seed, stage="run", status=status), "stages": stages},
        )

    def stage(name: str, done: bool, work: Callable[[], None]) -> None:
        if done and stages.get(name, {}).get("status") == "done":
            log(
                f"[{name}] done earlier ({stages[name].get('wall_s', float('nan')):.0f} s), skipped"
            )
            return
        log(f"[{name}] running")
        stages[name] = {"status": "running"}
        save("running")
        start = time.perf_counter()
        work()
        stages[name] = {"status": "done", "wall_s": time.perf_counter() - start}
        save("running")
        log(f"[{name}] done in {stages[name]['wall_s']:.0f} s")

    supernet_dir, search_dir = run_dir / "supernet", run_dir / "search"
    stage(
        "supernet",
        _supernet_done(run_dir, config),
        lambda: train_supernet(config, supernet_dir, resume=True, progress=progress),
    )

    def baselines() -> None:
        data = load_training_data(config, supernet_dir, progress=False)
        report = compute_baselines(
            open_source(config.data.spec),
            data.split["train"],
            data.split["test"],
            config.data.sigma_px,
            config.seed,
            progress,
        )
        report["provenance"] = provenance(seed=config.seed, split="RUN/supernet/split.json")
        write_json_atomic(run_dir / "baselines.json", report)

    stage("baselines", (run_dir / "baselines.json").is_file(), baselines)
    stage(
        "search",
        _read_json(search_dir / "search.json").get("status") == "finished",
        lambda: run_search(config, supernet_dir / "supernet.pt", search_dir, progress=progress),
    )
    stage(
        "distill",
        _read_json(run_dir / "distill" / "distill.json").get("status") == "done",
        lambda: run_distill(config, search_dir, run_dir / "distill", progress=progress),
    )
    stage("report", False, lambda: write_report(run_dir))
    save("done")
    return stages
