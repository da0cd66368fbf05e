"""The search stage of a run directory (``RUN/search/``)."""

from __future__ import annotations

from typing import Any

from salnas.io import file_sha1
from salnas.layout import SEARCH_JSON, Status
from salnas.search.run import fingerprint, run_search
from salnas.stage import Stage

__all__ = ["SearchStage"]


class SearchStage(Stage):
    """Search the trained supernet (resumes from the archive)."""

    name = "search"

    def fingerprint(self) -> dict[str, Any]:
        ckpt = self.layout.checkpoint
        return fingerprint(self.config, file_sha1(ckpt) if ckpt.is_file() else "")

    def _record(self) -> dict[str, Any]:
        return self.record(SEARCH_JSON, self.layout.search_dir)

    def is_done(self) -> bool:
        return Status.of(self._record()) is Status.DONE

    def run(self) -> None:
        run_search(self.config, self.layout.checkpoint, self.layout.search_dir,
                   progress=self.progress)

    def status(self) -> dict[str, Any]:
        summary = self._record().get("summary") or {}
        return {k: summary[k] for k in ("archive_size", "pareto_size", "hypervolume")
                if k in summary}
