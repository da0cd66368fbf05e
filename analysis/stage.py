"""The report stage of a run directory (``RUN/report.html``): always rewritten, so it shows
every stage's latest outputs."""

from __future__ import annotations

from typing import Any

from salnas.analysis.report import write_report
from salnas.stage import Stage

__all__ = ["ReportStage"]


class ReportStage(Stage):
    """Write the run's HTML report."""

    name = "report"

    def run(self) -> None:
        write_report(self.layout.root)

    def status(self) -> dict[str, Any]:
        return {"path": str(self.layout.report)}
