"""Quality statistics of synthetic (augmented) windows against real ones.

A synthetic set is only useful if it looks like the market it imitates. moola measures this
with a two-sample Kolmogorov-Smirnov test (scipy) on within-window close-to-close log
returns; the p-value is stored with the set and gates its use.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def window_log_returns(windows: np.ndarray, close_column: int) -> np.ndarray:
    """Flattened bar-to-bar log returns of the close inside each (n, T, D) window."""
    closes = np.asarray(windows[:, :, close_column], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(closes), axis=1).ravel()
    return returns[np.isfinite(returns)]


def returns_ks_pvalue(synthetic: np.ndarray, real: np.ndarray) -> float:
    """Two-sample KS p-value that ``synthetic`` and ``real`` returns share a distribution."""
    return returns_ks_test(synthetic, real)[1]


def returns_ks_test(synthetic: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic (largest gap between the two empirical CDFs, 0..1) and
    p-value; (1.0, 0.0) when either side has no returns."""
    if len(synthetic) == 0 or len(real) == 0:
        return 1.0, 0.0
    result = stats.ks_2samp(synthetic, real)
    return float(result.statistic), float(result.pvalue)
