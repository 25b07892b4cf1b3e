"""The display rule of every report (issue 14, item 7): how a number is written where a person reads it.

Result files keep full precision: CSV and JSON write each float as its ``repr`` (the shortest text that reads back
as the same float), so 99.995 stays 99.995. Text a person reads (Markdown, LaTeX, figure text, notebooks) is
rounded, and a percentage bounded by 100 (clean accuracy, CRA, tightness) is rounded *down*: a measured 99.995 %
shows as "99.99", never as "100.00"; only a true 100 shows as 100. Every other number (K(f), K(h∘f), differences,
standard deviations, relative gains) is rounded to nearest. Rounding works on the float's repr as a decimal, so a
value such as 12.3 (stored as 12.2999...) floors to "12.30", not "12.29"; an accuracy is first cut to 12
significant digits, so 100 * 255/400 (stored as 63.74999999999999) shows as "63.75".

One definition: renderers call :func:`display_number` / :func:`display_metric`, or :func:`display_accuracy` for
a percentage; nothing else formats a reported number.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

__all__ = ["ACCURACY_METRICS", "MISSING", "csv_float", "display_accuracy", "display_metric", "display_number",
           "display_significant", "is_accuracy", "is_missing"]

MISSING = "–"
"""Shown for a value that is absent (None or NaN)."""

ACCURACY_METRICS = ("clean", "cra", "train_cra", "tightness", "pgd")
"""Percentages bounded by 100, shown rounded down: a metric named so, or starting with ``cra_``, ``train_cra_``,
``pgd_`` (the accuracy under PGD-100) or ``clean_`` (a
column's ``gloro_`` / ``cll_`` prefix and ``_ours`` / ``_paper`` suffix aside; ``_std`` / ``_diff`` / ``_n``
columns are not percentages of this kind)."""


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_accuracy(metric: str) -> bool:
    """Whether ``metric`` (a column or metric name) is a percentage bounded by 100 (floored when shown)."""
    name = metric.removeprefix("gloro_").removeprefix("cll_")
    if name.endswith(("_std", "_diff", "_n")):  # a spread, a difference or a count is not a bounded percentage
        return False
    for suffix in ("_ours", "_paper", "_mean"):
        name = name.removesuffix(suffix)
    return name in ACCURACY_METRICS or name.startswith(("cra_", "clean_", "train_cra_", "pgd_"))


_ACCURACY_DIGITS = 12
"""Significant digits an accuracy keeps before it is floored: a count ratio times 100 carries float noise (255/400
is stored as 63.74999999999999) that must not floor to 63.74; 12 digits leave any real count ratio of up to 10^10
samples intact."""


def _quantized(value: float, decimals: int, rounding: str) -> str:
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    text = f"{float(value):.{_ACCURACY_DIGITS}g}" if rounding == ROUND_FLOOR else repr(float(value))
    text = str(Decimal(text).quantize(Decimal(1).scaleb(-decimals), rounding=rounding))
    return "0" + text[2:] if text.startswith("-0") and not any(c in "123456789" for c in text) else text


def display_number(value: Any, decimals: int = 1) -> str:
    """``value`` with ``decimals`` places, rounded to nearest (ties to even); :data:`MISSING` when absent."""
    if is_missing(value):
        return MISSING
    if not math.isfinite(float(value)):
        return "inf" if float(value) > 0 else "-inf"
    return _quantized(value, decimals, ROUND_HALF_EVEN)


def display_accuracy(value: Any, decimals: int = 1) -> str:
    """A percentage bounded by 100 with ``decimals`` places, rounded down: 99.995 → "99.99" (2 places),
    100.0 → "100.00"; :data:`MISSING` when absent."""
    if is_missing(value):
        return MISSING
    return _quantized(value, decimals, ROUND_FLOOR)


def display_metric(metric: str, value: Any, decimals: int = 1) -> str:
    """:func:`display_accuracy` for an accuracy metric (:func:`is_accuracy`), else :func:`display_number`."""
    return (display_accuracy if is_accuracy(metric) else display_number)(value, decimals)


def display_significant(value: Any, digits: int = 3) -> str:
    """A scale-free number (a Lipschitz constant, a swept parameter) with ``digits`` significant digits, rounded to
    nearest: 288.31 → "288", 1234.5 → "1234" (no exponent below 1e7), 2.5e-05 → "2.5e-05"."""
    if is_missing(value):
        return MISSING
    value = float(value)
    if not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    if 10 ** digits <= abs(value) < 1e7:
        return display_number(value, 0)
    return f"{value:.{digits}g}"


def csv_float(value: Any) -> str:
    """A float as result files write it: its repr (exact round trip); "" when absent."""
    if is_missing(value):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)
