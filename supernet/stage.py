"""The supernet stage of a run directory (``RUN/supernet/``)."""

from __future__ import annotations

from typing import Any

from salnas.stage import Stage
from salnas.supernet.checkpoint import load_checkpoint
from salnas.supernet.train import resume_fingerprint, train_supernet

__all__ = ["SupernetStage"]


class SupernetStage(Stage):
    """Train or resume the supernet until ``supernet.epochs``."""

    name = "supernet"

    def fingerprint(self) -> dict[str, Any]:
        return resume_fingerprint(self.config.model_dump(mode="json"))

    def epochs_done(self) -> int:
        path = self.layout.checkpoint
        return int(load_checkpoint(path)["epoch"]) if path.is_file() else 0

    def is_done(self) -> bool:
        return self.epochs_done() >= self.config.supernet.epochs

    def run(self) -> None:
        train_supernet(self.config, self.layout.supernet_dir, resume=True, progress=self.progress)

    def status(self) -> dict[str, Any]:
        return {"epochs": self.epochs_done()}
