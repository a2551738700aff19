"""Feature sets: a named, versioned list of features computed the same way in batch and live.

A feature set is declared in YAML (``FeatureSetSpec``): each entry names a registered
feature, its parameters, optionally the subset of its columns to keep, and the dtype to
store them in. ``FeatureSet`` turns the spec into columns:

* ``compute(bars)`` is the research (batch) path over a whole bar table;
* ``stream(history)`` is the run-time path, one stream per symbol: ``update(bar)`` gives
  one row per new bar from a bounded buffer of the last ``lookback`` bars, equal to the
  batch row within 1e-9 (``moola.testing.check_incremental`` proves it).

Short input is not an error for ``compute`` (warm-up rows are NaN, which the no-lookahead
checks rely on), but a stored table should not be mostly warm-up:
``moola.pipeline.features.build_features`` and ``moola features build`` refuse a symbol
with fewer bars than ``lookback`` unless told to allow it (``check_history``).

Shipped sets live in ``moola/features/sets/*.yaml``: ``intraday31`` (the 31 intraday
columns: sessions, spread, volume, SMA 7/14/21/50 with ratios, RSI, MACD, Bollinger
bands, volatility regime), ``relative11`` (the scale-free 11-D view of each bar) and
``mtf1m`` (1-minute bars with closed 5m/15m/1h trends and their alignment score; EMA
3/8 keeps its lookback at 13,020 bars, see the YAML).
The 20 price-action features are window-level (one row per window, not per bar) and so
are not a feature set: use ``moola.features.window.price_action_features``.

A feature may offer ``update_last(bars) -> numpy array``, the last row of
``compute(bars)`` without the rest, to make ``update`` cheaper; it is optional and
``check_incremental`` holds it to the same contract. A feature may also offer
``compute_rows(bars, dtype)``, ``compute(bars)``'s columns as arrays of ``dtype`` (the
set's dtype for its entry), one per column or the rows of one (k, n) array: ``compute``
then takes them as they are, with no frame per feature and no conversion to float32
afterwards, which on a million bars cost as much as a TA-Lib call each. Its values must
equal ``compute(bars)``'s converted to ``dtype`` (the fast-path tests check each one).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from moola.core.errors import BarValidationError, ConfigError
from moola.core.hashing import sha256_json
from moola.core.timeframes import parse_timeframe
from moola.features.base import Feature, create_feature
from moola.features.scaling import DEFAULT_SCALE, SCALE_METHODS

__all__ = [
    "FeatureSet",
    "FeatureSetSpec",
    "FeatureSpecEntry",
    "IncrementalFeatures",
    "feature_table",
    "list_feature_sets",
    "load_feature_set",
]

_SETS_PACKAGE = "moola.features"
_SETS_DIR = "sets"
_STREAM_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


class FeatureSpecEntry(BaseModel):
    """One feature of a set: registered ``name``, its ``params``, kept ``columns``, ``dtype``,
    and how models see its columns (``scale``).

    ``scale`` is the per-feature normalisation a model fits on its training rows
    (``moola.features.scaling``): ``"zscore"`` (mean and population std), ``"robust"``
    (median and interquartile range, for heavy-tailed columns such as volume) or
    ``"none"`` (flags and values already on a fixed scale). Left out (``None``) it is
    ``"zscore"``: one rule for every feature kind, so a set means the same thing whatever
    features it holds. It does not change what is computed, so it is not part of the
    content hash (stored feature tables stay valid when it changes).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    columns: list[str] | None = None
    dtype: Literal["float32", "float64"] = "float64"
    scale: str | None = None

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, value: str | None) -> str | None:
        if value is not None and value not in SCALE_METHODS:
            close = difflib.get_close_matches(str(value), SCALE_METHODS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"unknown scale {value!r}{hint}; use one of {', '.join(SCALE_METHODS)}"
            )
        return value


class FeatureSetSpec(BaseModel):
    """A feature set as declared in YAML: name, version, description and entries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    version: int = Field(1, ge=1)
    description: str = ""
    #: Bar time frames the set is made for ("1m", "1h", "1d"...); empty: any. It does not
    #: change what is computed (nor the content hash), only what users are told.
    timeframes: list[str] = Field(default_factory=list)
    features: list[FeatureSpecEntry] = Field(min_length=1)

    @field_validator("timeframes")
    @classmethod
    def _known_timeframes(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                parse_timeframe(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return values

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeatureSetSpec:
        """Read and fully check a feature set file (features, parameters, columns).

        Raises ``ConfigError`` naming the file and the entry (index and feature name) of
        any problem: unknown feature or parameter, out-of-range parameter, unknown
        selected column, or an output column produced twice.
        """
        path = Path(path)
        where = f"Feature set file {path}"
        if not path.is_file():
            raise ConfigError(f"{where} does not exist. Check the path or use a shipped set.")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must hold a mapping with name, version and features.")
        try:
            spec = cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc, raw)}.") from None
        _resolve(spec, where)
        return spec

    def to_yaml(self) -> str:
        """The spec as YAML text that ``from_yaml`` reads back to an equal spec."""
        data = self.model_dump(mode="json")
        for entry in data["features"]:
            if not entry["params"]:
                del entry["params"]
            if entry["columns"] is None:
                del entry["columns"]
            if entry["dtype"] == "float64":
                del entry["dtype"]
            if entry["scale"] is None:
                del entry["scale"]
        return yaml.safe_dump(data, sort_keys=False)

    def content_hash(self) -> str:
        """Identity of what the set computes: name, version, and every entry with its
        parameters resolved to their full values (so ``{}`` and the defaults spelled out
        hash alike); the description, time frames and ``scale`` do not count (they change
        no stored value)."""
        entries = [
            {
                "name": entry.feature.name,
                "params": entry.feature.params.model_dump(mode="json"),
                "columns": list(entry.columns),
                "dtype": entry.dtype,
            }
            for entry in _resolve(self, f"Feature set '{self.name}'")
        ]
        return sha256_json({"name": self.name, "version": self.version, "features": entries})


@dataclass(frozen=True)
class _Entry:
    """A resolved spec entry: the feature, the columns kept and their positions."""

    feature: Feature
    columns: tuple[str, ...]
    take: np.ndarray  # (k,) positions of ``columns`` in feature.columns()
    dtype: str


def _resolve(spec: FeatureSetSpec, where: str) -> list[_Entry]:
    """Build every entry's feature and check names, parameters and columns."""
    entries: list[_Entry] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(spec.features):
        label = f"{where}, entry {index} ('{item.name}')"
        try:
            feature = create_feature(item.name, **item.params)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        produced = feature.columns()
        if item.columns is None:
            columns = produced
        else:
            unknown = [column for column in item.columns if column not in produced]
            if unknown:
                hints = [difflib.get_close_matches(c, produced, n=1) for c in unknown]
                hint = "".join(
                    f" ('{u}': did you mean '{h[0]}'?)"
                    for u, h in zip(unknown, hints, strict=True)
                    if h
                )
                raise ConfigError(
                    f"{label}: selects unknown column(s) {unknown}{hint}; '{item.name}' with "
                    f"these parameters produces {list(produced)}."
                )
            if len(set(item.columns)) != len(item.columns):
                raise ConfigError(f"{label}: lists a column twice in columns {item.columns}.")
            columns = tuple(item.columns)
        for column in columns:
            if column in seen:
                raise ConfigError(
                    f"{label}: output column '{column}' is also produced by entry "
                    f"{seen[column]} ('{spec.features[seen[column]].name}'); drop it from one "
                    "entry with `columns: [...]` or change a parameter."
                )
            seen[column] = index
        take = np.array([produced.index(column) for column in columns], dtype=np.intp)
        entries.append(_Entry(feature, columns, take, item.dtype))
    return entries


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    """Pydantic errors in the words of a feature set file (entries by index and name)."""
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "features" and isinstance(loc[1], int):
            items = raw.get("features") or []
            item = items[loc[1]] if loc[1] < len(items) else None
            name = item.get("name", "?") if isinstance(item, dict) else "?"
            field = ".".join(str(part) for part in loc[2:]) or "(entry)"
            where = f"entry {loc[1]} ('{name}') field '{field}'"
        else:
            where = f"'{where}'"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


class FeatureSet:
    """The computable form of a ``FeatureSetSpec`` (see the module docstring)."""

    def __init__(self, spec: FeatureSetSpec) -> None:
        self.spec = spec
        self._entries = _resolve(spec, f"Feature set '{spec.name}'")

    @classmethod
    def _of(cls, features: list[Feature], name: str) -> FeatureSet:
        """A set of given feature instances, all columns float64 (for checkers and tests:
        the instances need not be registered)."""
        spec = FeatureSetSpec(
            name=name,
            features=[
                FeatureSpecEntry(name=f.name, params=f.params.model_dump(mode="json"))
                for f in features
            ],
        )
        fset = cls.__new__(cls)
        fset.spec = spec
        fset._entries = [
            _Entry(f, f.columns(), np.arange(len(f.columns()), dtype=np.intp), "float64")
            for f in features
        ]
        return fset

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def columns(self) -> tuple[str, ...]:
        """Output columns in spec order (each entry's kept columns, in the feature's order)."""
        return tuple(column for entry in self._entries for column in entry.columns)

    @property
    def dtypes(self) -> dict[str, str]:
        return {column: entry.dtype for entry in self._entries for column in entry.columns}

    @property
    def scaling(self) -> dict[str, str]:
        """Normalisation method of each output column, in column order: its entry's
        ``scale``, ``"zscore"`` where the entry leaves it out (``moola.features.scaling``
        fits it on training rows only)."""
        return {
            column: item.scale or DEFAULT_SCALE
            for entry, item in zip(self._entries, self.spec.features, strict=True)
            for column in entry.columns
        }

    @property
    def features(self) -> tuple[Feature, ...]:
        return tuple(entry.feature for entry in self._entries)

    @property
    def lookback(self) -> int:
        """Bars of history one row needs: the largest lookback of the set's features."""
        return max(entry.feature.lookback() for entry in self._entries)

    def suitability(self, timeframe: str) -> list[str]:
        """What changes when the set runs on ``timeframe`` bars it was not made for.

        Empty when the set declares no time frames or lists this one. Otherwise one note
        for the warm-up (in bars and in time at this bar size) and one for each
        feature whose logic assumes intraday bars (trading sessions).
        """
        declared = self.spec.timeframes
        if not declared or timeframe in declared:
            return []
        bar = parse_timeframe(timeframe)
        warm = bar * self.lookback
        notes = [
            f"Feature set '{self.name}' is made for {'/'.join(declared)} bars, not "
            f"{timeframe}. On {timeframe} bars its warm-up of {self.lookback:,} bars is "
            f"{_duration(warm)} of history before the first settled row."
        ]
        intraday = [f.name for f in self.features if f.name in _INTRADAY_FEATURES]
        if intraday and bar >= pd.Timedelta(days=1):
            notes.append(
                f"Its {', '.join(sorted(set(intraday)))} feature(s) describe hours within a "
                f"trading day, which {timeframe} bars do not have: every bar gets the same "
                "flags. Use a session-free set for daily bars (e.g. 'daily24')."
            )
        return notes

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r} v{self.spec.version}, {len(self.columns)} columns)"

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Feature columns for canonical ``bars`` (one or several symbols), same index.

        Each symbol is computed on its own bars; rows keep the bars' order and index.
        Fewer bars than a feature's warm-up give NaN rows, never an error: use
        ``check_history`` to insist on enough history.
        """
        groups = _symbol_groups(bars)
        _check_time_order(bars, groups)
        data: dict[str, np.ndarray] = {}
        if groups is None:  # one symbol: the features' own arrays, no copy for float64
            for entry in self._entries:
                rows = getattr(entry.feature, "compute_rows", None)
                if rows is not None:  # in the entry's dtype, without a frame
                    block = rows(bars, np.dtype(entry.dtype))
                    for column, position in zip(entry.columns, entry.take, strict=True):
                        data[column] = block[position]
                    continue
                out = entry.feature.compute(bars)
                for column in entry.columns:
                    data[column] = out[column].to_numpy(dtype=entry.dtype, copy=False)
        else:
            for column, dtype in self._dtype_list:
                data[column] = np.full(len(bars), np.nan, dtype=dtype)
            for positions in groups:
                part = bars.iloc[positions]
                for entry in self._entries:
                    out = entry.feature.compute(part)
                    for column in entry.columns:
                        data[column][positions] = out[column].to_numpy(dtype=np.float64)
        return pd.DataFrame(data, index=bars.index, copy=False)

    @property
    def _dtype_list(self) -> list[tuple[str, str]]:
        return [(column, entry.dtype) for entry in self._entries for column in entry.columns]

    def check_history(self, bars: pd.DataFrame) -> None:
        """Raise ``ConfigError`` if a symbol in ``bars`` has fewer bars than ``lookback``:
        none of its rows would then be the settled value live trading sees."""
        need = self.lookback
        symbols = bars["symbol"] if "symbol" in bars else pd.Series(["(bars)"] * len(bars))
        counts = symbols.value_counts(sort=False) if len(bars) else pd.Series({"(bars)": 0})
        short = {str(symbol): int(count) for symbol, count in counts.items() if count < need}
        if short:
            listed = ", ".join(f"{symbol}: {count:,} bars" for symbol, count in short.items())
            raise ConfigError(
                f"Feature set '{self.name}' needs {need:,} bars of history per symbol (its "
                f"warm-up, the largest feature lookback) but got {listed}. Use more bars, or "
                "pass allow_short=True to keep rows that are NaN or unsettled.",
                param="allow_short",
            )

    def stream(self, history: pd.DataFrame | None = None) -> IncrementalFeatures:
        """A run-time calculator for one symbol, primed with ``history`` (canonical bars)."""
        return IncrementalFeatures(self, history)


def _check_time_order(bars: pd.DataFrame, groups: list[np.ndarray] | None) -> None:
    """Refuse bars that are not strictly increasing in time within each symbol."""
    if len(bars) < 2 or "timestamp" not in bars:
        return
    stamps = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    for positions in [None] if groups is None else groups:
        run = stamps if positions is None else stamps[positions]
        bad = np.flatnonzero(np.diff(run) <= 0)
        if len(bad):
            row = int(bad[0] + 1) if positions is None else int(positions[bad[0] + 1])
            raise BarValidationError(
                f"Bars must be sorted by time within each symbol, without duplicate times; "
                f"row {row} ({bars['timestamp'].iloc[row]}) does not come after the previous "
                "bar of its symbol. Sort and validate the bars first "
                "(moola.data.validation.validate_bars)."
            )


def _span(lookback: int) -> int:
    """``lookback`` rounded up to a power of 16."""
    span = 1
    while span < lookback:
        span *= 16
    return span


def _symbol_groups(bars: pd.DataFrame) -> list[np.ndarray] | None:
    """Row positions of each symbol in order of appearance; None for a single symbol."""
    if "symbol" not in bars or len(bars) == 0:
        return None
    symbols = bars["symbol"]
    if _all_equal(symbols):  # the common case, without factorizing
        return None
    codes, _ = pd.factorize(symbols, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return list(np.split(order, bounds))


def _all_equal(symbols: pd.Series) -> bool:
    """Whether every symbol equals the first, as ``(symbols == first).all()`` says.

    Arrow-backed strings (pandas' default) without missing values are compared by
    pyarrow, a few times faster than pandas' ``==`` on a million rows; other columns,
    and columns with missing values (whose answer depends on the string dtype), by
    pandas."""
    first = symbols.iloc[0]
    arrow = getattr(symbols.array, "__arrow_array__", None)
    if arrow is not None and isinstance(first, str):
        values = arrow()
        if values.null_count == 0:
            return bool(pc.all(pc.equal(values, pa.scalar(first))).as_py())
    return bool((symbols == first).all())


# --------------------------------------------------------------------------- run time


class IncrementalFeatures:
    """Feature rows bar by bar for one symbol, from a bounded buffer of recent bars.

    ``update(bar)`` appends one bar (a mapping or Series with ``timestamp, open, high,
    low, close, volume``; ``symbol``/``timeframe`` optional but checked) and returns its
    feature row: a float64 Series indexed by the set's columns and named by the bar's
    timestamp. Each feature sees only its most recent bars (its ``lookback()``, rounded
    up), so the cost per bar does not grow with the history. Rows before ``ready`` equal
    the batch rows of the same bars (the buffer still holds all of them).
    """

    def __init__(self, feature_set: FeatureSet, history: pd.DataFrame | None = None) -> None:
        self.feature_set = feature_set
        self.lookback = feature_set.lookback
        self.symbol: str | None = None
        self.timeframe: str | None = None
        capacity = max(2 * self.lookback, 256)
        self._stamps = np.zeros(capacity, dtype=np.int64)
        self._values = np.zeros((5, capacity), dtype=np.float64)  # open, high, low, close, volume
        self._size = 0
        self._frame: pd.DataFrame | None = None
        self._shared = False
        self._index = pd.Index(feature_set.columns)
        self._narrow = [i for i, (_, d) in enumerate(feature_set._dtype_list) if d != "float64"]
        # Each feature gets at least its own lookback, rounded up to a power of 16 so that
        # features of similar lookback share one slice of the buffer (slicing a frame
        # costs more than a TA-Lib call on a thousand extra bars). A feature of the bar
        # alone (lookback 1) takes the shortest slice another feature needs anyway.
        spans = [min(_span(e.feature.lookback()), self.lookback) for e in feature_set._entries]
        longer = [span for span in spans if span > 1]
        self._plan = [
            (
                entry.feature,
                min(longer) if span == 1 and longer else span,
                entry.take,
                getattr(entry.feature, "update_last", None),
            )
            for entry, span in zip(feature_set._entries, spans, strict=True)
        ]
        if history is not None and len(history):
            self._prime(history)

    @property
    def ready(self) -> bool:
        """True once the buffer holds ``lookback`` bars (every row is settled from then on)."""
        return self._size >= self.lookback

    def update(self, bar: Mapping[str, Any] | pd.Series) -> pd.Series:
        """Append ``bar`` and return its feature row (see the class docstring)."""
        stamp = self._append(bar)
        frame = self._buffer()
        end = self._size
        parts: dict[int, pd.DataFrame] = {}
        row = np.empty(len(self._index))
        start = 0
        for feature, span, take, update_last in self._plan:
            part = parts.get(span)
            if part is None:
                part = parts[span] = frame.iloc[max(0, end - span) : end]
            if update_last is not None:
                last = np.asarray(update_last(part), dtype=np.float64)
            else:
                last = feature.compute(part).to_numpy(dtype=np.float64)[-1]
            row[start : start + len(take)] = last[take]
            start += len(take)
        if self._narrow:
            row[self._narrow] = row[self._narrow].astype(np.float32)
        return pd.Series(row, index=self._index, name=stamp)

    def _prime(self, history: pd.DataFrame) -> None:
        symbols = history["symbol"].unique() if "symbol" in history else []
        if len(symbols) > 1:
            raise ConfigError(
                f"stream() takes the history of one symbol; got {len(symbols)} "
                f"({', '.join(map(str, symbols[:5]))}). Make one stream per symbol."
            )
        _check_time_order(history, None)
        tail = history.iloc[-self.lookback :]
        n = len(tail)
        self._stamps[:n] = tail["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        for row, column in enumerate(_STREAM_COLUMNS[1:]):
            self._values[row, :n] = tail[column].to_numpy(dtype=np.float64)
        self._size = n
        if "symbol" in tail:
            self.symbol = str(tail["symbol"].iloc[-1])
        if "timeframe" in tail:
            self.timeframe = str(tail["timeframe"].iloc[-1])

    def _append(self, bar: Mapping[str, Any] | pd.Series) -> pd.Timestamp:
        try:
            stamp = pd.Timestamp(bar["timestamp"])
            values = [float(bar[column]) for column in _STREAM_COLUMNS[1:]]
        except KeyError as exc:
            raise ConfigError(
                f"A streamed bar needs {', '.join(_STREAM_COLUMNS)}; {exc} is missing."
            ) from None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        ns = stamp.as_unit("ns").value
        if self._size and ns <= self._stamps[self._size - 1]:
            last = pd.Timestamp(int(self._stamps[self._size - 1]), tz="UTC")
            raise BarValidationError(
                f"Streamed bar at {stamp} does not come after the previous bar ({last}); "
                "bars must arrive in time order, once each."
            )
        for key in ("symbol", "timeframe"):
            given = bar.get(key)
            if given is None or pd.isna(given):
                continue
            current = getattr(self, key)
            if current is None:
                setattr(self, key, str(given))
                self._frame = None  # rebuilt with the new value
            elif str(given) != current:
                raise ConfigError(
                    f"Streamed bar has {key} {given!r} but this stream is for {current!r}; "
                    "make one stream per symbol and timeframe."
                )
        if self._size == len(self._stamps):  # full: keep the last lookback - 1 bars
            keep = self.lookback - 1
            self._stamps[:keep] = self._stamps[self._size - keep : self._size]
            self._values[:, :keep] = self._values[:, self._size - keep : self._size]
            self._size = keep
        self._stamps[self._size] = ns
        self._values[:, self._size] = values
        self._size += 1
        return stamp

    def _buffer(self) -> pd.DataFrame:
        """The whole buffer as a canonical bar table (rows past ``_size`` are unused)."""
        if self._frame is None or not self._shared:
            self._frame, self._shared = self._buffer_frame()
        return self._frame

    def _buffer_frame(self) -> tuple[pd.DataFrame, bool]:
        """A bar table over the whole buffer, and whether it shares the buffer's memory.

        Building a DataFrame costs more than every feature's update together, so the
        frame is built once as views of the buffer arrays and new bars written into
        the arrays appear in it. If pandas ever copies instead (checked here), the frame
        is rebuilt on every bar: slower, never stale.
        """
        n = len(self._stamps)
        utc = pd.DatetimeTZDtype("ns", "UTC")
        try:  # pandas has no public zero-copy constructor for tz-aware arrays
            stamps = pd.arrays.DatetimeArray._simple_new(self._stamps.view("M8[ns]"), dtype=utc)
        except (AttributeError, TypeError):
            stamps = pd.array(self._stamps.view("M8[ns]"), dtype=utc)
        # One float block over the (5, capacity) buffer, then the other columns. Column
        # names in an object index and the strings in Python storage: the frame is sliced
        # and its columns looked up on every bar, which costs twice as much with pyarrow.
        columns = pd.Index(_STREAM_COLUMNS[1:], dtype=object)
        frame = pd.DataFrame(self._values.T, columns=columns, copy=False)
        frame.insert(0, "timestamp", pd.Series(stamps, copy=False))
        strings = pd.StringDtype("python")
        frame["symbol"] = pd.array([self.symbol or ""] * n, dtype=strings)
        frame["timeframe"] = pd.array([self.timeframe or ""] * n, dtype=strings)
        shared = np.shares_memory(frame["timestamp"].array.asi8, self._stamps) and all(
            np.shares_memory(frame[column].to_numpy(), self._values)
            for column in _STREAM_COLUMNS[1:]
        )
        return frame, shared


# --------------------------------------------------------------------------- loading


def list_feature_sets() -> list[str]:
    """Names of the feature sets shipped with moola."""
    folder = resources.files(_SETS_PACKAGE) / _SETS_DIR
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_feature_set(name_or_path: str | Path | FeatureSetSpec | FeatureSet) -> FeatureSet:
    """A shipped set by name (``"intraday31"``), a YAML file by path, or a spec as is."""
    if isinstance(name_or_path, FeatureSet):
        return name_or_path
    if isinstance(name_or_path, FeatureSetSpec):
        return FeatureSet(name_or_path)
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or re.search(r"[/\\]|\.ya?ml$", text):
        return FeatureSet(FeatureSetSpec.from_yaml(text))
    shipped = list_feature_sets()
    if text not in shipped:
        close = difflib.get_close_matches(text, shipped, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown feature set '{text}'.{hint} Shipped sets: {', '.join(shipped)}; or pass "
            "the path of a YAML file."
        )
    with resources.as_file(resources.files(_SETS_PACKAGE) / _SETS_DIR / f"{text}.yaml") as path:
        return FeatureSet(FeatureSetSpec.from_yaml(path))


# --------------------------------------------------------------------------- tables


def feature_table(feature_set: FeatureSet, bars: pd.DataFrame) -> pd.DataFrame:
    """``timestamp`` and ``symbol`` of each bar, then its feature columns (RangeIndex)."""
    keys = bars[["timestamp", "symbol"]].reset_index(drop=True)
    return pd.concat([keys, feature_set.compute(bars).reset_index(drop=True)], axis=1)


#: Features whose logic assumes bars inside a trading day.
_INTRADAY_FEATURES = frozenset({"sessions", "futures_sessions"})


def _duration(delta: pd.Timedelta) -> str:
    """A warm-up length in the unit a person would use (minutes, hours, days or years)."""
    days = delta / pd.Timedelta(days=1)
    if days >= 365:
        return f"about {days / 365.25:.1f} years"
    if days >= 1:
        return f"about {days:,.0f} days"
    hours = delta / pd.Timedelta(hours=1)
    return (
        f"about {hours:,.1f} hours"
        if hours >= 1
        else f"{delta / pd.Timedelta(minutes=1):.0f} minutes"
    )
