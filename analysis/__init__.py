"""Reports of a run directory: tables (:mod:`analysis.load`), Plotly figures
(:mod:`analysis.figures`), one number format (:mod:`analysis.format`) and one
self-contained HTML file (:mod:`analysis.report`). The run directory's schema is
:mod:`salnas.layout`'s."""

from salnas.analysis.load import Run, load_run

__all__ = ["Run", "load_run"]
