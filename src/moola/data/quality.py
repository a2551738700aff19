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
    if len(synthetic) == 0 or len(real) == 0:
        return 0.0
    return float(stats.ks_2samp(synthetic, real).pvalue)
