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
