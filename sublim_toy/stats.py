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


def seed_bootstrap(
    statistic,
    *samples_PxS: Sequence,
    resamples: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> dict:
    """statistic(*samples) and its percentile CI from resampling *seeds*, not seed-points.

    Every sample is [points, seeds]: the points of a study reuse the same seeds (the same
    teachers, inits and noise), so they are not independent; what is independent is the seed.
    Each resample draws seed indices with replacement once and takes those same seeds at every
    point of every sample. A statistic that comes out nan (too few distinct seeds) is left out
    of the percentiles. The generator is seeded: the same data give the same interval.
    """
    samples = [np.array([_floats(row) for row in sample]) for sample in samples_PxS]
    seeds = {sample.shape[1] for sample in samples}
    if len(seeds) != 1:
        raise ValueError(f"samples differ in their number of seeds: {sorted(seeds)}")
    (n_seeds,) = seeds
    value = statistic(*samples)
    rng = np.random.default_rng(rng_seed)
    drawn = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    values = np.array([statistic(*(sample[:, idx] for sample in samples)) for idx in drawn])
    values = values[np.isfinite(values)]
    if not np.isfinite(value) or values.size < resamples // 2:
        return {"value": _none_if_nan(value), "ci_low": None, "ci_high": None, "seeds": n_seeds}
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high), "seeds": n_seeds}


def pearson_r(x, y) -> float:
    """Pearson r over the pairs where both are finite; nan if fewer than 3 or one is constant."""
    x, y = np.ravel(np.asarray(x, np.float64)), np.ravel(np.asarray(y, np.float64))
    both = np.isfinite(x) & np.isfinite(y)
    x, y = x[both], y[both]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


def mean_within_r(x_PxS, y_PxS) -> float:
    """The mean over points of each point's Pearson r over its seeds (points where r is
    undefined are left out; nan if none is defined)."""
    rs = np.array([pearson_r(x, y) for x, y in zip(x_PxS, y_PxS, strict=True)])
    return float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan")


def _none_if_nan(value: float):
    return float(value) if np.isfinite(value) else None


def number_text(value, spec: str) -> str:
    """A number for a table, "-" where there is none (every seed of a model diverged)."""
    return "-" if value is None else format(value, spec)


def ci_text(row: dict, spec: str) -> str:
    """'+0.434 [+0.395, +0.473]' from a `mean_ci` row ('-' without a mean, the mean alone
    without a CI)."""
    if row["mean"] is None:
        return "-"
    if row["ci_low"] is None:
        return format(row["mean"], spec)
    return (
        f"{format(row['mean'], spec)} [{format(row['ci_low'], spec)}, "
        f"{format(row['ci_high'], spec)}]"
    )
