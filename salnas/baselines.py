"""The baselines stage of a run directory: the dataset's floor and ceiling on the run's split
(``RUN/baselines.json``)."""

from __future__ import annotations

from typing import Any

from salnas.datasets import open_source
from salnas.datasets.training import load_training_data
from salnas.evaluation import compute_baselines
from salnas.io import provenance, write_json_atomic
from salnas.stage import Stage

__all__ = ["BaselinesStage"]


class BaselinesStage(Stage):
    """Centre bias and split-half observers on the test split of the supernet's split.json."""

    name = "baselines"

    def fingerprint(self) -> dict[str, Any]:
        return {"data": self.config.data.model_dump(mode="json", exclude={"cache_dir"}),
                "seed": self.config.seed}

    def is_done(self) -> bool:
        return self.layout.baselines.is_file()

    def run(self) -> None:
        config = self.config
        data = load_training_data(config, self.layout.supernet_dir, progress=False)
        report = compute_baselines(
            open_source(config.data.spec),
            data.split["train"],
            data.split["test"],
            config.data.sigma_px,
            config.seed,
            self.progress,
        )
        report["provenance"] = provenance(seed=config.seed, split="RUN/supernet/split.json")
        write_json_atomic(self.layout.baselines, report)
