"""How numbers and counts read wherever a person reads them: the email, the report, the reasons.

One module so that the email, the report and a point's reason never print the same value two ways
("56.8" in the digest but "56.79" in the reason next to it). Plain Python on purpose: the notifier
ships without pandas or numpy, and the detection core formats inside tight loops.
"""

from __future__ import annotations

import math
from numbers import Real


def is_missing(v: object) -> bool:
    """None, NaN (float or numpy) and pandas' NA/NaT all count as "no value", without importing pandas."""
    if v is None:
        return True
    if isinstance(v, Real):
        return math.isnan(float(v))
    try:
        return bool(v != v)  # NaT is not equal to itself
    except TypeError:  # pandas.NA refuses a truth value: it is missing
        return True


def fmt_value(v: object) -> str:
    """A metric value for humans: thousands separators from 100 up, 3 significant digits below, "n/a" if none."""
    if is_missing(v) or not isinstance(v, Real):
        return "n/a"
    x = float(v)
    if math.isinf(x):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    return f"{x:,.3g}"


def plural(n: int, one: str, many: str) -> str:
    """``n`` with the word that agrees with it: "1 anomaly", "3 anomalies"."""
    return f"{n} {one if n == 1 else many}"


def about(v: object, unit: str = "") -> str:
    """A rough size in words, for a summary line: "3.1 million", "48 thousand", "250"; "n/a" if none."""
    if is_missing(v) or not isinstance(v, Real) or math.isinf(float(v)):
        return "n/a"
    x = float(v)
    for factor, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if abs(x) >= factor:
            text = f"{x / factor:.2g}" if abs(x) / factor < 10 else f"{x / factor:,.0f}"
            return f"{text} {word}" + (f" {unit}" if unit else "")
    return fmt_value(x) + (f" {unit}" if unit else "")


#: What each metric role is called where a person reads it (roles: :data:`dqad.incidents.ROLES`).
ROLE_WORDS = {
    "row_count": "rows loaded",
    "null_pct": "share of empty values",
    "distinct": "distinct values",
    "sum": "total",
    "duration": "load duration",
}


def metric_words(metric: str, role: str = "") -> str:
    """A metric in words: "rows loaded", "share of empty values in customer_id", "late fees".

    ``metric`` is the series name without its table ("row_count", "customer_id/null_pct"); ``role``
    what the dataset's name patterns recognised it as. Keys before the metric's own name (a column)
    are kept, after "in"; an unrecognised name is spelled with spaces instead of underscores.
    """
    *where, name = metric.split("/")
    words = ROLE_WORDS.get(role) or name.replace("_", " ")
    return f"{words} in {'/'.join(where)}" if where else words
