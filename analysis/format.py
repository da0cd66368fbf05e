"""How the report writes a number: one rule set for tables, cards, captions and hover text.

:func:`format_number` by magnitude, the same for a metric, a cost or a count:

========================  ====================================  =====================
value                     written as                            examples
========================  ====================================  =====================
None, NaN, +-inf          an en dash                            ``–``
bool (also numpy's)       yes / no                              ``yes``
0                         0                                     ``0``
0 < abs(v) < 0.001        3 significant digits, exponent        ``1.23e-04``
integral, abs(v) < 1e4    every digit                           ``7``, ``9999``
other, abs(v) < 1e4       4 significant digits                  ``0.7123``, ``12.35``
abs(v) >= 1e4             3 significant digits, SI suffix       ``12.3k``, ``18M``,
                          (k, M, G, T; beyond 999T: exponent)   ``1.23G``
anything else             ``str(value)``                        ``abc``
========================  ====================================  =====================

So costs (parameters, FLOPs) read as ``312k`` and ``26.1M``, accuracy metrics keep four
significant digits, and energy in kWh (1e-4 and below) stays legible. The result is plain
text: escape it (:func:`html.escape`) before it goes into HTML, like any other string.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["format_number"]

_SI = ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"))
_SI_FROM = 1e4  # below this a number is written out (a count of 9 999 stays exact)
_SMALL = 1e-3  # below this, an exponent
_DIGITS = 4  # significant digits between _SMALL and _SI_FROM


def format_number(value: Any) -> str:
    """``value`` as short, readable text, by the rules of this module's table."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if not isinstance(value, numbers.Real):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    size = abs(v)
    if size < _SMALL:
        return f"{v:.2e}"
    if size < _SI_FROM:
        text = str(int(v)) if v.is_integer() else f"{v:.{_DIGITS}g}"
        if "e" not in text:  # 9999.7 rounds to 1e+04: written as 10k below
            return text
    for div, unit in _SI:
        text = f"{v / div:.3g}"
        if abs(float(text)) < 1000:  # 999.6k rounds to 1e+03: take the next unit
            return text + unit
    return f"{v:.2e}"  # beyond 999T
