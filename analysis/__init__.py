"""Reports of a run directory: tables (:mod:`analysis.load`), Plotly figures
(:mod:`analysis.figures`) and one self-contained HTML file (:mod:`analysis.report`)."""

from salnas.analysis.load import Run, load_run

__all__ = ["Run", "load_run"]
