"""The stage-runner protocol: what ``salnas run`` needs to know of a stage, and no more.

Each stage (supernet, baselines, search, distill, report) implements :class:`StageRunner`
over one run directory; the pipeline chains runners and knows none of their internals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from salnas.config import Config
from salnas.io import read_json
from salnas.layout import RunLayout

__all__ = ["Stage", "StageRunner"]


@runtime_checkable
class StageRunner(Protocol):
    """One stage of a run directory."""

    name: str

    def fingerprint(self) -> dict[str, Any]:
        """The settings its outputs depend on (a resume with others is refused)."""
        ...

    def is_done(self) -> bool:
        """Whether its outputs show it finished (then ``salnas run`` skips it)."""
        ...

    def run(self) -> None:
        """Run or resume it (idempotent: a finished stage's outputs are kept)."""
        ...

    def status(self) -> dict[str, Any]:
        """A small summary for ``run.json`` (epochs done, archive size, ...)."""
        ...


class Stage:
    """Base of the stage runners: the run's config, its directory layout, progress bars.

    Subclasses set :attr:`name` and implement :meth:`run`; the defaults say "never done",
    "no settings" and "nothing to report".
    """

    name: str = ""

    def __init__(self, config: Config, layout: RunLayout, progress: bool = True) -> None:
        self.config, self.layout, self.progress = config, layout, progress

    def fingerprint(self) -> dict[str, Any]:
        return {}

    def is_done(self) -> bool:
        return False

    def run(self) -> None:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {}

    def record(self, filename: str, directory: Path) -> dict[str, Any]:
        """A stage JSON record in ``directory`` (empty when absent)."""
        data = read_json(directory / filename)
        return data if isinstance(data, dict) else {}
