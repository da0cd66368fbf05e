"""The distill stage of a run directory (``RUN/distill/``)."""

from __future__ import annotations

from typing import Any

from salnas.distill.run import run_distill
from salnas.layout import DISTILL_JSON, Status
from salnas.stage import Stage

__all__ = ["DistillStage"]


class DistillStage(Stage):
    """Retrain the selected Pareto architectures and the peers, both arms (resumes per arm)."""

    name = "distill"

    def fingerprint(self) -> dict[str, Any]:
        return {"distill": self.config.distill.model_dump(mode="json")}

    def _record(self) -> dict[str, Any]:
        return self.record(DISTILL_JSON, self.layout.distill_dir)

    def is_done(self) -> bool:
        return Status.of(self._record()) is Status.DONE

    def run(self) -> None:
        run_distill(self.config, self.layout.search_dir, self.layout.distill_dir,
                    progress=self.progress)

    def status(self) -> dict[str, Any]:
        record = self._record()
        return {"selected": len(record.get("selected") or [])} if record else {}
