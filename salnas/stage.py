"""The stage-runner protocol: what ``salnas run`` needs to know of a stage, and no more.

Each stage (supernet, baselines, search, distill, report) implements :class:`StageRunner`
over one run directory; the pipeline chains runners and knows none of their internals.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["StageRunner"]


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
