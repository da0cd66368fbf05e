"""Energy and carbon of a training, measured by codecarbon's offline tracker.

``OfflineEmissionsTracker`` never calls a web service: the carbon intensity comes from
codecarbon's bundled per-country table (``country_iso_code``), nothing is written anywhere
(``output_methods=[]``; ``save_to_file=False`` on releases before 3.1), and its logger is
kept at ``error``. ``tracking_mode="process"`` counts this process's share of the CPU and
memory rather than the whole machine's (the machines here are shared with other jobs). CPU
power comes from RAPL where the kernel exposes it, else from the CPU model's TDP
(codecarbon's table) scaled by load; GPU energy through NVML when present. These are
estimates; compare arms measured on the same machine.

If codecarbon is missing or fails, the values are NaN with a warning; training never stops
because of its energy accounting.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Energy", "track_energy"]


@dataclass
class Energy:
    """What one tracked block cost: kWh, kg CO2-eq and seconds (NaN when not measured)."""

    kwh: float = math.nan
    co2_kg: float = math.nan
    duration_s: float = math.nan
    tracker: str = "none"


@contextmanager
def track_energy(country_iso_code: str = "USA", enabled: bool = True,
                 measure_power_secs: float = 15.0) -> Iterator[Energy]:
    """Measure the enclosed block; the yielded :class:`Energy` is filled in on exit."""
    result = Energy()
    tracker = None
    t0 = time.perf_counter()
    if enabled:
        try:
            from codecarbon import OfflineEmissionsTracker

            # Its INFO/WARNING lines would interleave with the progress bars.
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            kwargs: dict[str, Any] = {"country_iso_code": country_iso_code, "log_level": "error",
                      "tracking_mode": "process", "measure_power_secs": measure_power_secs}
            try:  # codecarbon >= 3.1: no output method at all (no file, API, logger, ...)
                tracker = OfflineEmissionsTracker(output_methods=[], **kwargs)
            except TypeError:  # older releases
                tracker = OfflineEmissionsTracker(save_to_file=False, **kwargs)
            tracker.start()
        except Exception as e:  # ImportError, unknown country, hardware probing failures
            warnings.warn(f"energy not measured (codecarbon unavailable or failed: {e}); "
                          "recording NaN", stacklevel=3)
            tracker = None
    try:
        yield result
    finally:
        result.duration_s = time.perf_counter() - t0
        if tracker is not None:
            try:
                tracker.stop()
                data = tracker.final_emissions_data
                result.kwh = float(data.energy_consumed)
                result.co2_kg = float(data.emissions)
                result.duration_s = float(data.duration)
                result.tracker = "codecarbon-offline"
            except Exception as e:
                warnings.warn(f"energy not measured (codecarbon failed on stop: {e}); "
                              "recording NaN", stacklevel=3)
