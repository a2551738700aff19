"""What the trading environment shows its agent: causal feature windows and the portfolio.

An observation at decision bar ``t`` has two parts (the time contract of ``moola.rl.env``):

* ``window``: feature rows ``t - window + 1 .. t`` of one symbol's bars, each row computed
  from bars ``<= t`` only (the features' own no-lookahead proof, ``check_feature``), scaled
  with statistics fitted on the training rows only, float32 ``(window, F)``;
* ``portfolio``: seven numbers about the account after bar ``t``'s close was marked
  (``PORTFOLIO_FIELDS``), float32 ``(7,)``, from :func:`portfolio_state`.

:class:`ObservationSource` computes the whole feature table once, at construction (a
feature set by name, path or object through ``moola.features.load_feature_set``; or, with
``features=None``, :data:`BUILTIN_COLUMNS`: the ``relative`` feature's log returns of
open, high, low and close against the previous close and its log volume change, a
scale-free causal set that needs one bar of warm-up). Scaling is one
``moola.features.scaling.Scaler``: the one given (an evaluation env takes the training
env's), or one fitted by ``fit_scaler`` on ``train_rows`` only, with each column's method
from the set's ``scaling``. Rows the caller leaves out of ``train_rows`` (validation and
test periods) never reach the fit. The table is read-only after construction; each
window handed out is a fresh copy of its rows (``window * F`` floats), since users keep
observations (rollout buffers) and Gymnasium's checker refuses data shared between calls.

The portfolio fields, all scale-free so that one policy fits any account size:

==================  ============================================================
``position``        the target fraction of equity held, in [-1, 1] (as given)
``cash_fraction``   cash / equity (0 when equity <= 0)
``unrealised``      unrealised PnL / initial cash
``time_in_position`` log1p(bars the current non-zero position has been held)
``drawdown``        (peak equity - equity) / peak equity, >= 0
``daily_headroom``  loss still allowed today / the daily limit amount, in [0, 1]
``total_headroom``  loss still allowed in total / the total limit amount, in [0, 1]
==================  ============================================================

The daily limit amount is ``daily_limit * day_start_equity`` (a prop-firm
``DailyLossLimit`` on its start-of-day basis) and the total one ``total_limit *
initial_cash`` (``TotalLossLimit``); the loss still allowed is equity minus the equity
at which the limit breaches. A limit given as NaN (no such rule) gives headroom 1.

Coarser timescales (:class:`CoarserWindows`): the same feature set over the bars
aggregated to a longer timeframe (e.g. 1-minute bars seen as 5-minute and hourly ones),
each base bar seeing only the coarse bars that had closed by its own close; the
environment adds one ``window_<timeframe>`` key per timescale for a multi-timescale policy
(``moola.rl.extractors.MultiTimescaleExtractor``).

Bar by bar (:class:`StepObservations`, for a policy acting live): the same feature set
computed by ``moola.features.IncrementalFeatures`` (equal to the batch rows), the same
scaler and the same window; the window handed out at bar ``t`` is the one
:class:`ObservationSource` hands out for bar ``t`` of the same bars. Coarser timescales bar
by bar (:class:`StepCoarserWindows`): each base bar joins its coarse bar, which reaches
the coarse feature rows only once complete (by :class:`CoarserWindows`' rule), so the
window at bar ``t`` is :class:`CoarserWindows`' window of bar ``t`` of the same bars.

Pure numpy (plus the features layer): no I/O.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.core.timeframes import parse_timeframe
from moola.features.featureset import (
    FeatureSet,
    FeatureSetSpec,
    FeatureSpecEntry,
    IncrementalFeatures,
    load_feature_set,
)
from moola.features.scaling import Scaler, fit_scaler

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "BUILTIN_COLUMNS",
    "PORTFOLIO_FIELDS",
    "CoarserWindows",
    "ObservationSource",
    "StepCoarserWindows",
    "StepObservations",
    "builtin_feature_set",
    "portfolio_state",
]

#: The portfolio part of an observation, in order (see the module docstring).
PORTFOLIO_FIELDS: tuple[str, ...] = (
    "position",
    "cash_fraction",
    "unrealised",
    "time_in_position",
    "drawdown",
    "daily_headroom",
    "total_headroom",
)

#: The columns of the built-in set (``features=None``): ``relative`` feature columns.
BUILTIN_COLUMNS: tuple[str, ...] = (
    "rel_open",
    "rel_high",
    "rel_low",
    "rel_close",
    "rel_log_volume_change",
)

_BAR_COLUMNS = ("open", "high", "low", "close", "volume")

FeaturesArg = str | Path | FeatureSetSpec | FeatureSet | None


def builtin_feature_set() -> FeatureSet:
    """The small scale-free OHLCV set used when no feature set is named: log returns of
    open/high/low/close against the previous close and the log volume change (z-scored)."""
    spec = FeatureSetSpec(
        name="rl_ohlcv",
        description="Log returns of open/high/low/close against the previous close and the "
        "log volume change: the trading environment's default observation.",
        features=[FeatureSpecEntry(name="relative", columns=list(BUILTIN_COLUMNS))],
    )
    return FeatureSet(spec)


class ObservationSource:
    """Normalised feature rows of one symbol's bars, cut into causal windows.

    Parameters
    ----------
    bars : pd.DataFrame
        One symbol's canonical bars (``timestamp``, ``open high low close volume``,
        optional ``symbol``), in time order; row ``i`` is bar ``i``.
    features : str, Path, FeatureSetSpec, FeatureSet or None, default None
        A feature set (shipped name, YAML path or object); None: :func:`builtin_feature_set`.
    window : int, default 60
        Feature rows per observation window (the bar itself and ``window - 1`` before it).
    scaler : moola.features.scaling.Scaler or None, default None
        Statistics to use as they are (e.g. the training env's ``scaler`` for an
        evaluation env); its columns must be the feature set's. None: fitted here.
    train_rows : array of int, boolean mask of length n_bars, or None, default None
        The rows the scaler is fitted on when none is given (never evaluation rows).
        None: every row of these bars. Warm-up rows (no value yet) are left out.

    Attributes
    ----------
    table : np.ndarray
        float32 ``(n_bars, F)``, scaled; NaN in the warm-up rows; read-only.
    columns : tuple of str
    scaler : Scaler
    window : int
    first_valid : int
        The smallest bar ``t`` whose window rows ``t - window + 1 .. t`` are all finite:
        the earliest bar an episode may start at.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        *,
        features: FeaturesArg = None,
        window: int = 60,
        scaler: Scaler | None = None,
        train_rows: ArrayLike | None = None,
    ) -> None:
        _check_bars(bars)
        n = len(bars)
        if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
            raise ConfigError(
                f"window must be a positive integer (feature rows per observation), got "
                f"{window!r}.",
                param="window",
            )
        window = int(window)
        if window > n:
            raise ConfigError(
                f"window={window} is longer than the data: the bars have {n} rows. Use a "
                f"window of at most {n} bars, or more bars.",
                param="window",
            )
        fset = builtin_feature_set() if features is None else load_feature_set(features)
        raw = fset.compute(bars.reset_index(drop=True)).to_numpy(dtype=np.float64)  # (n, F)
        columns = tuple(fset.columns)
        finite = np.isfinite(raw).all(axis=1)  # (n,)
        if not finite.any():
            raise ConfigError(
                f"Feature set '{fset.name}' has no settled row on these {n} bars (its "
                f"warm-up is {fset.lookback} bars); use more bars.",
                param="features",
            )
        warm = int(np.argmax(finite))  # first settled row
        _check_settled(raw, warm, columns, bars, fset.name)
        first_valid = warm + window - 1
        if first_valid >= n:
            raise ConfigError(
                f"window={window} is longer than the data after the warm-up: feature set "
                f"'{fset.name}' settles at bar {warm}, leaving {n - warm} of the {n} bars "
                f"for a window; use a window of at most {n - warm} bars, or more bars.",
                param="window",
            )
        if scaler is None:
            rows = _train_rows(train_rows, n, warm)
            scaler = fit_scaler(raw, columns, fset.scaling, rows)
        else:
            _check_scaler(scaler, columns)
        table = scaler.transform(raw).astype(np.float32)  # NaN warm-up rows stay NaN
        table.flags.writeable = False
        self.feature_set = fset
        self.columns = columns
        self.scaler = scaler
        self.window = window
        self.table = table
        self.warmup = warm
        self.first_valid = first_valid
        # (n - window + 1, window, F) read-only view: windows[t - window + 1] is bar t's.
        self._windows = np.lib.stride_tricks.sliding_window_view(table, window, axis=0)
        self._windows = self._windows.transpose(0, 2, 1)

    @property
    def n_bars(self) -> int:
        return int(self.table.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.table.shape[1])

    def window_at(self, t: int) -> np.ndarray:
        """Rows ``t - window + 1 .. t``: float32 ``(window, F)``, a new array."""
        if not self.first_valid <= t < self.n_bars:
            raise ConfigError(
                f"No observation window at bar {t}: windows exist for bars "
                f"{self.first_valid}..{self.n_bars - 1} (window {self.window}, warm-up "
                f"{self.warmup} bars).",
                param="t",
            )
        return self.table[t - self.window + 1 : t + 1].copy()

    def windows_at(self, ts: ArrayLike) -> np.ndarray:
        """The windows of bars ``ts`` (shape ``(n,)``): float32 ``(n, window, F)``, a copy."""
        bars = np.asarray(ts)
        if bars.ndim != 1 or (bars.size and bars.dtype.kind not in "iu"):
            raise ConfigError(
                f"windows_at needs a 1-D array of integer bar indices, got shape "
                f"{bars.shape} of {bars.dtype}.",
                param="ts",
            )
        if bars.size and (bars.min() < self.first_valid or bars.max() >= self.n_bars):
            bad = bars[(bars < self.first_valid) | (bars >= self.n_bars)]
            raise ConfigError(
                f"No observation window at bar {int(bad[0])}: windows exist for bars "
                f"{self.first_valid}..{self.n_bars - 1}.",
                param="ts",
            )
        return self._windows[bars - (self.window - 1)]


class StepObservations:
    """:class:`ObservationSource`'s windows built one bar at a time (a live policy).

    ``update(bar)`` appends one closed bar (a mapping with ``timestamp, open, high, low,
    close, volume``) and returns the observation window of that bar: float32 ``(window,
    F)``, the bar's feature row and the ``window - 1`` before it, each computed by
    ``IncrementalFeatures`` from the bars seen so far (equal to the batch rows) and scaled
    with ``scaler`` (the training period's statistics); None while the window still holds
    a warm-up (non-finite) row. Nothing after a bar can change its window: a row is
    computed when its bar arrives and never again.

    Parameters
    ----------
    features : str, Path, FeatureSetSpec, FeatureSet or None
        The feature set the policy was trained on; None: :func:`builtin_feature_set`.
    window : int
        Feature rows per observation window.
    scaler : Scaler
        The run's scaler (its columns must be the feature set's).
    """

    def __init__(self, features: FeaturesArg, window: int, scaler: Scaler) -> None:
        if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
            raise ConfigError(
                f"window must be a positive integer (feature rows per observation), got "
                f"{window!r}.",
                param="window",
            )
        fset = builtin_feature_set() if features is None else load_feature_set(features)
        columns = tuple(fset.columns)
        _check_scaler(scaler, columns)
        self.feature_set = fset
        self.columns = columns
        self.scaler = scaler
        self.window = int(window)
        self.bars_seen = 0
        self._features = IncrementalFeatures(fset)
        self._rows = np.full((self.window, len(columns)), np.nan, dtype=np.float32)

    @property
    def lookback(self) -> int:
        """Bars the feature set reads per row (its warm-up)."""
        return int(self._features.lookback)

    def update(self, bar: Any) -> np.ndarray | None:
        """Append ``bar``; its observation window (a new array) or None (warm-up)."""
        raw = self._features.update(bar).to_numpy(dtype=np.float64)
        row = self.scaler.transform(raw[None, :]).astype(np.float32)[0]
        self._rows = np.roll(self._rows, -1, axis=0)
        self._rows[-1] = row
        self.bars_seen += 1
        if self.bars_seen < self.window or not np.isfinite(self._rows).all():
            return None
        return self._rows.copy()


def _bar_duration(bars: pd.DataFrame) -> pd.Timedelta:
    """One base bar's duration: the ``timeframe`` column's, else the smallest gap between
    consecutive bars (a bar closes when the next one may open)."""
    if "timeframe" in bars.columns and bars["timeframe"].nunique() == 1:
        return parse_timeframe(str(bars["timeframe"].iloc[0]))
    stamps = pd.to_datetime(bars["timestamp"], utc=True)
    gaps = stamps.diff().dropna()
    gaps = gaps[gaps > pd.Timedelta(0)]
    if gaps.empty:
        raise ConfigError(
            "The bars' duration cannot be told (one bar, or no timeframe column); a coarser "
            "timescale needs it.",
            param="timescales",
        )
    return gaps.min()


class CoarserWindows:
    """Windows of a coarser timeframe's *completed* bars, seen from each base bar.

    The base bars are aggregated to ``timeframe`` (first open, highest high, lowest low,
    last close, summed volume, each coarse bar opening at the base timestamps floored to
    the timeframe), an :class:`ObservationSource` is built over the coarse bars (the same
    feature set, ``window`` coarse rows, its own scaler), and base bar ``t`` sees the
    window ending at the last coarse bar that had *closed* by ``t``'s close (its end, open
    + timeframe, at or before ``t``'s open + the base bar's duration). The coarse bar in
    progress is never shown, so a bar after ``t`` can change nothing ``t`` sees.

    ``train_rows`` (base rows) becomes the coarse rows completed within them.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        timeframe: str,
        *,
        features: FeaturesArg = None,
        window: int = 12,
        scaler: Scaler | None = None,
        train_rows: ArrayLike | None = None,
    ) -> None:
        step = parse_timeframe(timeframe)
        base = _bar_duration(bars)
        if step <= base:
            raise ConfigError(
                f"timescale {timeframe!r} is not coarser than the bars ({base}); give a "
                "longer timeframe.",
                param="timescales",
            )
        opens = pd.to_datetime(bars["timestamp"], utc=True).reset_index(drop=True)
        keys = opens.dt.floor(step)
        frame = pd.DataFrame(
            {
                "key": keys,
                "open": bars["open"].to_numpy(np.float64),
                "high": bars["high"].to_numpy(np.float64),
                "low": bars["low"].to_numpy(np.float64),
                "close": bars["close"].to_numpy(np.float64),
                "volume": bars["volume"].to_numpy(np.float64)
                if "volume" in bars
                else np.zeros(len(bars)),
            }
        )
        grouped = frame.groupby("key", sort=True)
        coarse = pd.DataFrame(
            {
                "timestamp": grouped["key"].first(),
                "open": grouped["open"].first(),
                "high": grouped["high"].max(),
                "low": grouped["low"].min(),
                "close": grouped["close"].last(),
                "volume": grouped["volume"].sum(),
            }
        ).reset_index(drop=True)
        ends = (coarse["timestamp"] + step).to_numpy("datetime64[ns]").astype(np.int64)
        closes = (opens + base).to_numpy("datetime64[ns]").astype(np.int64)
        # The last coarse bar closed by each base bar's close (-1: none yet).
        self.index = np.searchsorted(ends, closes, side="right") - 1
        coarse_rows = None
        if train_rows is not None:
            rows = np.asarray(train_rows)
            mask = rows if rows.dtype == bool else np.isin(np.arange(len(bars)), rows)
            last_train_close = closes[mask].max() if mask.any() else np.iinfo(np.int64).min
            first_train_open = opens[mask].min().value if mask.any() else np.iinfo(np.int64).max
            starts = coarse["timestamp"].to_numpy("datetime64[ns]").astype(np.int64)
            coarse_rows = np.flatnonzero((starts >= first_train_open) & (ends <= last_train_close))
        self.timeframe = str(timeframe)
        try:
            self.source = ObservationSource(
                coarse, features=features, window=window, scaler=scaler, train_rows=coarse_rows
            )
        except ConfigError as exc:
            raise ConfigError(
                f"timescale {timeframe!r} (window {window}, {len(coarse)} completed or "
                f"partial {timeframe} bars): {exc}",
                param="timescales",
            ) from None
        #: The first base bar whose coarse window is complete.
        valid = np.flatnonzero(self.index >= self.source.first_valid)
        if not valid.size:
            raise ConfigError(
                f"timescale {timeframe!r} with a window of {window} needs "
                f"{self.source.first_valid + 1} completed {timeframe} bars; these bars give "
                f"{int(self.index.max()) + 1}. Use more bars or a shorter window.",
                param="timescales",
            )
        self.first_valid = int(valid[0])

    @property
    def scaler(self) -> Scaler:
        return self.source.scaler

    @property
    def shape(self) -> tuple[int, int]:
        return self.source.window, self.source.n_features

    def window_at(self, t: int) -> np.ndarray:
        """The coarse window base bar ``t`` sees: float32 ``(window, F)``, a new array."""
        return self.source.window_at(int(self.index[t]))

    def windows_at(self, ts: ArrayLike) -> np.ndarray:
        """The coarse windows of base bars ``ts``: float32 ``(n, window, F)``."""
        return self.source.windows_at(self.index[np.asarray(ts)])


class StepCoarserWindows:
    """:class:`CoarserWindows` built one base bar at a time (a live policy).

    ``update(bar)`` adds one closed base bar to the coarse bar it falls in (its timestamp
    floored to ``timeframe``, as the batch side groups them) and returns the window of the
    last *completed* coarse bar, by :class:`CoarserWindows`' rule: a coarse bar is complete
    once its end (open + ``timeframe``) is at or before the base bar's close (its open +
    ``bar``, the base bars' duration), or once a base bar of a later coarse bar arrives.
    The coarse bar still forming is never shown, so the window at base bar ``t`` is
    ``CoarserWindows(bars, ...).window_at(t)`` of the same bars, whatever comes after
    ``t``. A completed coarse bar goes through :class:`StepObservations` (the same feature
    set over the coarse bars, the run's scaler for this timescale): None until a coarse
    window holds no warm-up row.

    Parameters
    ----------
    features : str, Path, FeatureSetSpec, FeatureSet or None
        The feature set the policy was trained on; None: :func:`builtin_feature_set`.
    timeframe : str
        The coarse timeframe (``"1h"``), longer than ``bar``.
    window : int
        Coarse rows per window.
    scaler : Scaler
        The run's scaler of this timescale (``window_<timeframe>``).
    bar : str or pd.Timedelta
        The base bars' duration (their timeframe, the training bars' ``timeframe``).
    """

    def __init__(
        self,
        features: FeaturesArg,
        timeframe: str,
        window: int,
        scaler: Scaler,
        bar: str | pd.Timedelta,
    ) -> None:
        step = parse_timeframe(timeframe)
        base = bar if isinstance(bar, pd.Timedelta) else parse_timeframe(bar)
        if step <= base:
            raise ConfigError(
                f"timescale {timeframe!r} is not coarser than the bars ({base}); give a "
                "longer timeframe.",
                param="timescales",
            )
        self.timeframe = str(timeframe)
        self.step = step
        self.bar = base
        self._steps = StepObservations(features, window, scaler)
        self._key: pd.Timestamp | None = None  # the coarse bar of the last base bar
        self._parts: dict[str, Any] = {}
        self._volumes: list[float] = []
        self._closed = True
        self._window: np.ndarray | None = None
        #: Coarse bars completed so far.
        self.completed = 0

    @property
    def window(self) -> int:
        return self._steps.window

    @property
    def lookback(self) -> int:
        """Coarse bars the feature set reads per row (its warm-up)."""
        return self._steps.lookback

    def update(self, bar: Any) -> np.ndarray | None:
        """Add base bar ``bar``; the window of the last completed coarse bar (a new array)
        or None (none yet, or its window still holds a warm-up row)."""
        time = pd.Timestamp(bar["timestamp"])
        time = time.tz_localize("UTC") if time.tzinfo is None else time.tz_convert("UTC")
        key = time.floor(self.step)
        if self._key is not None and key < self._key:
            raise ConfigError(
                f"Bar at {time} falls in the {self.timeframe} bar of {key}, before the one "
                f"of the last bar ({self._key}); bars must move forward in time.",
                param="bar",
            )
        volume = float(bar.get("volume", 0.0))
        if key != self._key:
            if not self._closed:
                self._complete()  # a later coarse bar began: the forming one is complete
            self._key = key
            self._parts = {
                "open": float(bar["open"]),
                "high": float(bar["high"]),
                "low": float(bar["low"]),
                "close": float(bar["close"]),
            }
            self._volumes = [volume]
            self._closed = False
        elif self._closed:
            raise ConfigError(
                f"Bar at {time} falls in the {self.timeframe} bar of {key}, which had "
                f"already closed (its end {key + self.step} was reached by an earlier bar's "
                f"close); bars of {self.bar} must not come closer together than that.",
                param="bar",
            )
        else:
            parts = self._parts
            parts["high"] = max(parts["high"], float(bar["high"]))
            parts["low"] = min(parts["low"], float(bar["low"]))
            parts["close"] = float(bar["close"])
            self._volumes.append(volume)
        if key + self.step <= time + self.bar:
            self._complete()  # this base bar's close ends the coarse bar
        return None if self._window is None else self._window.copy()

    def _complete(self) -> None:
        """The forming coarse bar is complete: its feature row and window."""
        coarse = {"timestamp": self._key, **self._parts, "volume": math.fsum(self._volumes)}
        self._window = self._steps.update(coarse)
        self._closed = True
        self.completed += 1


def _check_bars(bars: Any) -> None:
    if not isinstance(bars, pd.DataFrame):
        raise ConfigError(
            f"bars must be a pandas DataFrame of canonical bars, got {type(bars).__name__}.",
            param="bars",
        )
    missing = [c for c in _BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ConfigError(
            f"bars lack column(s) {missing}; observations need {list(_BAR_COLUMNS)} "
            f"(got {list(bars.columns)}).",
            param="bars",
        )
    if "symbol" in bars.columns and bars["symbol"].nunique(dropna=False) > 1:
        symbols = sorted(map(str, bars["symbol"].unique()))[:5]
        raise ConfigError(
            f"bars hold several symbols ({symbols}...); an ObservationSource takes one "
            "symbol's bars: select one.",
            param="bars",
        )


def _check_settled(
    raw: np.ndarray, warm: int, columns: tuple[str, ...], bars: pd.DataFrame, name: str
) -> None:
    """Refuse a non-finite value after the first settled row: the window holding it would
    show the agent NaN (or inf), and the features promise finite rows after warm-up."""
    bad = ~np.isfinite(raw[warm:])
    if not bad.any():
        return
    row, col = (int(v) for v in np.argwhere(bad)[0])
    t = warm + row
    stamp = f" ({bars['timestamp'].iloc[t]})" if "timestamp" in bars.columns else ""
    value = float(raw[t, col])
    raise ConfigError(
        f"Feature set '{name}': column '{columns[col]}' is {value!r} at bar {t}{stamp}, "
        f"after the warm-up ended at bar {warm} ({int(bad.sum())} non-finite value(s) in "
        "all); observations must be finite. Clean or drop the bars that cause it.",
        param="features",
    )


def _train_rows(train_rows: ArrayLike | None, n: int, warm: int) -> np.ndarray:
    """The scaler's fitting rows: given positions (or mask), minus the warm-up rows."""
    if train_rows is None:
        return np.arange(warm, n, dtype=np.int64)
    rows = np.asarray(train_rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ConfigError(
                f"train_rows as a boolean mask must have one entry per bar ({n}), got shape "
                f"{rows.shape}.",
                param="train_rows",
            )
        rows = np.flatnonzero(rows)
    elif rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise ConfigError(
            f"train_rows must be a 1-D array of integer bar indices or a boolean mask, got "
            f"shape {rows.shape} of {rows.dtype}.",
            param="train_rows",
        )
    rows = np.unique(rows.astype(np.int64, copy=False))
    if rows.size and (rows[0] < 0 or rows[-1] >= n):
        raise ConfigError(
            f"train_rows must lie in 0..{n - 1} (the bars' rows); got "
            f"{int(rows[0])}..{int(rows[-1])}.",
            param="train_rows",
        )
    rows = rows[rows >= warm]
    if rows.size == 0:
        raise ConfigError(
            f"train_rows hold no settled row (the features settle at bar {warm}); the scaler "
            "needs at least one training row after the warm-up.",
            param="train_rows",
        )
    return rows


def _check_scaler(scaler: Any, columns: tuple[str, ...]) -> None:
    if not isinstance(scaler, Scaler):
        raise ConfigError(
            f"scaler must be a moola.features.scaling.Scaler (e.g. a training env's "
            f"`scaler`), got {type(scaler).__name__}.",
            param="scaler",
        )
    if tuple(scaler.columns) != columns:
        missing = [c for c in scaler.columns if c not in columns]
        extra = [c for c in columns if c not in scaler.columns]
        detail = (
            f"missing {missing}, not fitted {extra}"
            if missing or extra
            else "the same columns in another order"
        )
        raise ConfigError(
            f"scaler was fitted on columns {list(scaler.columns)} but the features give "
            f"{list(columns)} ({detail}); pass the scaler of an env with the same features.",
            param="scaler",
        )


def portfolio_state(
    position: ArrayLike,
    cash: ArrayLike,
    equity: ArrayLike,
    unrealised: ArrayLike,
    bars_in_position: ArrayLike,
    peak_equity: ArrayLike,
    day_start_equity: ArrayLike,
    initial_cash: ArrayLike,
    daily_limit: ArrayLike,
    total_limit: ArrayLike,
) -> np.ndarray:
    """The portfolio part of an observation: float32 ``(..., 7)`` in ``PORTFOLIO_FIELDS``
    order (module docstring), for scalars or ``(n,)`` arrays (one row per env).

    ``daily_limit`` / ``total_limit`` are loss fractions (0.05, 0.10) or NaN where no such
    rule applies (headroom 1).
    """
    values = (position, cash, equity, unrealised, bars_in_position, peak_equity,
              day_start_equity, initial_cash, daily_limit, total_limit)  # fmt: skip
    if all(type(v) is float or type(v) is int for v in values):
        return _scalar_state(*(float(v) for v in values))  # one env's step: no numpy
    if _one_row_per_env(values):
        return _rows_state(*values)  # n envs' step: no broadcast copies, one output
    pos, cash_, eq, unreal, held, peak, sod, initial, daily, total = np.broadcast_arrays(
        *(
            np.asarray(v, dtype=np.float64)
            for v in (
                position,
                cash,
                equity,
                unrealised,
                bars_in_position,
                peak_equity,
                day_start_equity,
                initial_cash,
                daily_limit,
                total_limit,
            )
        )
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        cash_fraction = np.where(eq > 0.0, cash_ / eq, 0.0)
        drawdown = np.where(peak > 0.0, np.maximum(peak - eq, 0.0) / peak, 0.0)
        daily_headroom = _headroom(eq, sod, daily * sod, daily)
        total_headroom = _headroom(eq, initial, total * initial, total)
        out = np.stack(
            [
                pos,
                cash_fraction,
                unreal / initial,
                np.log1p(np.maximum(held, 0.0)),
                drawdown,
                daily_headroom,
                total_headroom,
            ],
            axis=-1,
        )
    return out.astype(np.float32)


def _scalar_headroom(equity: float, base: float, limit: float) -> float:
    """:func:`_headroom` of one env, in Python floats (the same IEEE arithmetic)."""
    if limit != limit:  # NaN: no such rule
        return 1.0
    amount = limit * base
    remaining = equity - (base - amount)
    if amount > 0.0:
        return min(max(remaining / amount, 0.0), 1.0)
    return 1.0 if remaining > 0.0 else 0.0


def _scalar_state(
    pos: float, cash: float, eq: float, unreal: float, held: float, peak: float,
    sod: float, initial: float, daily: float, total: float,
) -> np.ndarray:  # fmt: skip
    """:func:`portfolio_state` of one env given as Python numbers: the hot path of
    ``TradingEnv.step``, where numpy's per-call overhead was most of the step's time."""
    return np.array(
        (
            pos,
            cash / eq if eq > 0.0 else 0.0,
            unreal / initial,
            math.log1p(max(held, 0.0)),
            max(peak - eq, 0.0) / peak if peak > 0.0 else 0.0,
            _scalar_headroom(eq, sod, daily),
            _scalar_headroom(eq, initial, total),
        ),
        dtype=np.float32,
    )


def _one_row_per_env(values: tuple[Any, ...]) -> bool:
    """Whether the inputs are float64 ``(n,)`` arrays and plain numbers (VecTradingEnv's)."""
    n = None
    for v in values:
        if type(v) is float or type(v) is int:
            continue
        if type(v) is not np.ndarray or v.ndim != 1 or v.dtype != np.float64:
            return False
        if n is None:
            n = v.shape[0]
        elif v.shape[0] != n:
            return False
    return n is not None


def _rows_state(
    pos: Any, cash: Any, eq: Any, unreal: Any, held: Any, peak: Any,
    sod: Any, initial: Any, daily: Any, total: Any,
) -> np.ndarray:  # fmt: skip
    """:func:`portfolio_state` of ``(n,)`` float64 arrays (and plain numbers), written
    column by column into one float32 ``(n, 7)`` array: the same float64 arithmetic as the
    general path, without its broadcast copies and stack (VecTradingEnv's hot path)."""
    values = (pos, cash, eq, unreal, held, peak, sod, initial, daily, total)
    n = next(v.shape[0] for v in values if type(v) is np.ndarray)
    out = np.empty((n, len(PORTFOLIO_FIELDS)), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, 0] = pos
        out[:, 1] = np.where(eq > 0.0, cash / eq, 0.0)
        out[:, 2] = unreal / initial
        out[:, 3] = np.log1p(np.maximum(held, 0.0))
        out[:, 4] = np.where(peak > 0.0, np.maximum(peak - eq, 0.0) / peak, 0.0)
        # A limit given as NaN (no such rule): headroom 1, without the arithmetic.
        no_daily = type(daily) is float and math.isnan(daily)
        no_total = type(total) is float and math.isnan(total)
        out[:, 5] = 1.0 if no_daily else _headroom(eq, sod, daily * sod, daily)
        out[:, 6] = 1.0 if no_total else _headroom(eq, initial, total * initial, total)
    return out


def _headroom(
    equity: np.ndarray, base: np.ndarray, amount: np.ndarray, limit: np.ndarray
) -> np.ndarray:
    """(equity - (base - amount)) / amount in [0, 1]; 1 where there is no limit."""
    remaining = equity - (base - amount)
    positive = amount > 0.0
    fraction = np.clip(remaining / np.where(positive, amount, 1.0), 0.0, 1.0)
    # A zero limit amount (limit 0 or base 0): all room is gone at the first loss.
    fraction = np.where(positive, fraction, (remaining > 0.0).astype(np.float64))
    return np.where(np.isnan(limit), 1.0, fraction)
