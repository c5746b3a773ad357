"""Summaries over seeds: means with Student-t CIs and paired differences.

Not the normal approximation with ddof = 0, and paired where samples share a teacher
(docs/pitfalls.md, pitfall 6). A value that is None or not finite (a diverged seed) is left
out, and n counts only the values used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, sample sd (ddof=1) and the two-sided Student-t CI of the mean.

    With one value the sd and the CI are undefined and come back as None; with none, the
    mean too.
    """
    values = _finite(values)
    n = values.size
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci_low": None, "ci_high": None}
    mean = float(values.mean())
    if n < 2:
        return {"n": int(n), "mean": mean, "sd": None, "ci_low": None, "ci_high": None}
    sd = float(values.std(ddof=1))
    half_width = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * sd / math.sqrt(n)
    return {
        "n": int(n),
        "mean": mean,
        "sd": sd,
        "ci_low": mean - half_width,
        "ci_high": mean + half_width,
    }


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """mean_ci of a - b seed by seed: the right test when both share a teacher and its noise."""
    a, b = _floats(a), _floats(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    return mean_ci(a - b, level)  # a pair with a diverged side is nan, so left out


def correlation(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> dict:
    """Pearson r with its Fisher-z CI (None where undefined: n < 4 or a constant sample)."""
    x, y = _floats(x), _floats(y)
    if x.shape != y.shape:
        raise ValueError(f"correlated samples differ in shape: {x.shape} vs {y.shape}")
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both], y[both]
    n = x.size
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"n": int(n), "r": None, "ci_low": None, "ci_high": None}
    result = stats.pearsonr(x, y)
    interval = result.confidence_interval(confidence_level=level)
    return {
        "n": int(n),
        "r": float(result.statistic),
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
    }


def _floats(values: Sequence[float | None]) -> np.ndarray:
    """As float64, None as nan."""
    return np.array([np.nan if v is None else v for v in np.ravel(values)], np.float64)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    values = _floats(values)
    return values[np.isfinite(values)]
