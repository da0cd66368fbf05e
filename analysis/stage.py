"""The report stage of a run directory (``RUN/report.html``): always rewritten, so it shows
every stage's latest outputs."""

from __future__ import annotations

from typing import Any

from salnas.analysis.report import write_report
from salnas.config import Config
from salnas.layout import RunLayout

__all__ = ["ReportStage"]


class ReportStage:
    """Write the run's HTML report."""

    name = "report"

    def __init__(self, config: Config, layout: RunLayout, progress: bool = True) -> None:
        self.config, self.layout, self.progress = config, layout, progress

    def fingerprint(self) -> dict[str, Any]:
        return {}  # the report reads the run directory and has no settings of its own

    def is_done(self) -> bool:
        return False

    def run(self) -> None:
        write_report(self.layout.root)

    def status(self) -> dict[str, Any]:
        return {"path": str(self.layout.report)}
