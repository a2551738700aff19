"""Features: causal computations over canonical bars, and the sets that bundle them.

Importing this package registers every shipped feature (TA-Lib indicators, sessions,
range and volume, volatility regime, relative bars, multi-timeframe trend, directional
change), so ``create_feature(name, **params)`` and ``FEATURES`` see them all. Feature sets
(``load_feature_set("intraday31")``) compute the same rows in batch and at run time; the
window-level price-action features are ``price_action_features`` (not a feature set).
Per-column normalisation fitted on training rows only is ``fit_scaler`` (``scaling``).
"""

from __future__ import annotations

# Imported for their @register_feature side effect (and their public names).
from moola.features import (  # noqa: F401
    dc,
    indicators,
    multitimeframe,
    price,
    regime,
    relative,
    sessions,
    window,
)
from moola.features.base import (
    FEATURES,
    Feature,
    FeatureParams,
    create_feature,
    register_feature,
)
from moola.features.featureset import (
    FeatureSet,
    FeatureSetSpec,
    FeatureSpecEntry,
    IncrementalFeatures,
    feature_table,
    list_feature_sets,
    load_feature_set,
)
from moola.features.scaling import SCALE_METHODS, Scaler, fit_scaler, window_rows
from moola.features.window import price_action_features, relative_windows

__all__ = [
    "FEATURES",
    "SCALE_METHODS",
    "Feature",
    "FeatureParams",
    "FeatureSet",
    "FeatureSetSpec",
    "FeatureSpecEntry",
    "IncrementalFeatures",
    "Scaler",
    "create_feature",
    "feature_table",
    "fit_scaler",
    "list_feature_sets",
    "load_feature_set",
    "price_action_features",
    "register_feature",
    "relative_windows",
    "window_rows",
]
