"""Parity of a recorded session with the batch path: ``moola live parity SESSION``.

A session journals, per closed bar per symbol, the bar and the hash of its feature row,
every member's output, the decision and any order intent; fills and positions follow.
``session_parity`` reads that record back and recomputes it with the batch code that
research and ``moola backtest`` use, reporting every difference (symbol, bar, field, both
values). A paper session should have none: the engine computes features incrementally
(equal to batch, row for row), its members and ensemble are the batch members', and the
paper broker is the backtest's own kernel.

Three checks:

1. **features**: each symbol's recorded bars streamed again through
   ``IncrementalFeatures`` as the engine does, each row's hash (``engine.feature_hash``)
   against the journaled one (a hash is exact, so it needs the very arithmetic the engine
   used: streamed rows equal batch rows only within rounding), and each streamed row
   against the batch row (``FeatureSet.compute`` on all the bars) within ``RTOL``, naming
   the first column that differs;
2. **members** and **decisions**: each member's p(up) at every bar from the batch path (a
   promoted-run member: all windows of the recorded bars, or of the feature rows, through
   ``Predictor`` at once; another member object: its ``value`` on the same data; the
   feature rows are the streamed rows check 1 held to the journal and to batch, since a
   float32 window of them may round a last bit unlike the batch row and move a model's
   output by more than ``RTOL``), then the ensemble (``runtime.ensemble.combine``) and the tier
   (``runtime.tiers.tier_of``) against the journaled outputs and decision (probability,
   calibrated, tier, signal; tier and signal only where the engine reached the tier step,
   i.e. not for a ``killed`` or ``flatten`` decision);
3. **fills** and **equity**: the journaled intents of each symbol become per-bar target
   positions (the units held at the decision bar plus the intent's) that
   ``moola.backtest.run`` trades with the session's execution terms on its event engine;
   its fills (time, qty, price, fee) are compared one by one with the journaled fills,
   and the position and account equity and cash of every journaled position snapshot
   with the backtest's at that moment (the sum of the symbols' sleeves, each marked at
   its last bar delivered so far, as the paper broker's balances are). Intents the broker
   rejected or that were cancelled never traded and give no target (counted in
   ``notes``). This assumes a session that starts flat with a sleeve of ``initial_cash``
   per symbol, as a paper session does; a live session's fills are the exchange's, so
   differences there measure the simulation, not the engine.

The backtest takes targets as fractions of equity, sized at the decision bar's close to
whole lots rounding toward zero (``Instrument.units_for``); a target of ``u`` units is
handed over as ``(u + lot / 2) * close * point_value / equity`` with the backtest's own
equity at that bar, which gives back exactly ``u``. That equity depends on the earlier
fills, so the fractions are first sized on the journal's own accounting and the backtest
is run again (at most once per intent) until every target sizes back to its units.

Numbers from the same code compare exactly in principle; a relative difference up to
``RTOL`` (1e-9) is accepted for floats, and up to ``PROBABILITY_RTOL`` (1e-6) for member
outputs and ensemble probabilities (a float32 network's batch matrix products round
differently from one window at a time). Hashes, tiers, signals, times and counts compare
exactly, so a rounding that changes a decision is always reported.

Reading the journal is the only I/O (``read_session``) besides loading the promoted runs
of the members (``load_members``); the rest computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError
from moola.features.featureset import FeatureSet, IncrementalFeatures, load_feature_set
from moola.runtime.config import LiveConfig, parse_live_config
from moola.runtime.engine import feature_hash
from moola.runtime.feed import BAR_FIELDS
from moola.tracking.livedb.records import SessionRecord

__all__ = [
    "CHECKS",
    "PROBABILITY_RTOL",
    "RTOL",
    "CheckCount",
    "Difference",
    "ParityReport",
    "SessionRecord",
    "read_session",
    "session_parity",
]

#: The checks of a parity report, in the order they run.
CHECKS = ("features", "members", "decisions", "fills", "equity")
#: Relative tolerance of float comparisons (absolute below 1).
RTOL = 1e-9
#: ... of member outputs and ensemble probabilities: a float32 network rounds a batch of
#: windows differently from one window at a time (seen: 1e-8 on a BiLSTM's probability).
#: Tiers and signals compare exactly, so a difference that crosses a threshold is reported.
PROBABILITY_RTOL = 1e-6
#: Decisions that returned before the tier step (tier and signal are not compared).
_BEFORE_TIER = ("killed", "flatten")
#: Intent statuses that never traded: they give no target position.
_NOT_TRADED = ("rejected", "cancelled", "expired")
_QTY_EPS = 1e-9


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Difference:
    """One value the replay disagrees with: which check, symbol and bar (ISO time; for a
    fill, its time), which field, and both values."""

    check: str
    symbol: str
    bar: str
    field: str
    journal: Any
    replay: Any

    def __str__(self) -> str:
        return (
            f"{self.check}: {self.symbol} {self.bar} {self.field}: journal {self.journal!r}, "
            f"replay {self.replay!r}"
        )


@dataclass(frozen=True)
class CheckCount:
    """How many values one check compared and how many differed."""

    check: str
    compared: int
    differences: int


@dataclass(frozen=True)
class ParityReport:
    """What ``session_parity`` found.

    ``checks``: a ``CheckCount`` per check (``CHECKS``); ``differences``: the first
    ``max_differences`` differences, in check order; ``notes``: what was left out and why
    (intents that never traded, members not replayed). ``ok``: no difference at all.
    """

    session_id: str
    mode: str
    checks: tuple[CheckCount, ...]
    differences: tuple[Difference, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.differences == 0 for c in self.checks)

    @property
    def total_differences(self) -> int:
        return sum(c.differences for c in self.checks)

    def count(self, check: str) -> CheckCount:
        """The ``CheckCount`` of ``check`` (one of ``CHECKS``)."""
        for c in self.checks:
            if c.check == check:
                return c
        raise ConfigError(f"check {check!r} is not one of {list(CHECKS)}.", param="check")

    def to_dict(self) -> dict[str, Any]:
        """JSON values: ok, per-check counts, the differences shown and the notes."""
        return {
            "session_id": self.session_id,
            "mode": self.mode,
            "ok": self.ok,
            "checks": {
                c.check: {"compared": c.compared, "differences": c.differences} for c in self.checks
            },
            "differences": [
                {
                    "check": d.check,
                    "symbol": d.symbol,
                    "bar": d.bar,
                    "field": d.field,
                    "journal": _plain(d.journal),
                    "replay": _plain(d.replay),
                }
                for d in self.differences
            ],
            "notes": list(self.notes),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Tally:
    """Counts per check and the first differences."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.compared = dict.fromkeys(CHECKS, 0)
        self.differ = dict.fromkeys(CHECKS, 0)
        self.shown: list[Difference] = []

    def compare(
        self,
        check: str,
        symbol: str,
        bar: Any,
        name: str,
        journal: Any,
        replay: Any,
        rtol: float = RTOL,
    ) -> bool:
        self.compared[check] += 1
        if _same(journal, replay, rtol):
            return True
        self.differ[check] += 1
        if len(self.shown) < self.limit:
            when = bar.isoformat() if hasattr(bar, "isoformat") else str(bar)
            self.shown.append(Difference(check, symbol, when, name, journal, replay))
        return False

    def missing(
        self, check: str, symbol: str, bar: Any, name: str, journal: Any, replay: Any
    ) -> None:
        """A value only one side has (counted as compared and different)."""
        self.compared[check] += 1
        self.differ[check] += 1
        if len(self.shown) < self.limit:
            when = bar.isoformat() if hasattr(bar, "isoformat") else str(bar)
            self.shown.append(Difference(check, symbol, when, name, journal, replay))

    def counts(self) -> tuple[CheckCount, ...]:
        return tuple(CheckCount(c, self.compared[c], self.differ[c]) for c in CHECKS)


def _same(a: Any, b: Any, rtol: float = RTOL) -> bool:
    """Equal, floats within ``rtol`` (relative; absolute below 1), None only to None."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return abs(x - y) <= rtol * max(1.0, abs(x), abs(y))
    return bool(a == b)


# --------------------------------------------------------------------------- the record


def read_session(journal: Any, session_id: str) -> SessionRecord:
    """The journal's record of ``session_id``: ``LiveJournal.session_record``, one read
    transaction, typed frozen values that also read as mappings of their columns. An
    unknown session is a ``JournalError`` naming it and the sessions there are."""
    return journal.session_record(session_id)


# --------------------------------------------------------------------------- parity


def session_parity(
    journal: Any,
    session_id: str,
    *,
    config: LiveConfig | None = None,
    root: str | Path | None = None,
    members: Sequence[Any] | None = None,
    max_differences: int = 20,
) -> ParityReport:
    """Replay session ``session_id`` of ``journal`` through the batch path (module
    docstring) and report every difference.

    Parameters
    ----------
    journal : LiveJournal
    session_id : str
    config : LiveConfig, optional
        Default: the config the session recorded.
    root : path, optional
        The data root holding the members' promoted runs (needed unless ``members``).
    members : sequence of Member, optional
        The members to replay (default: ``load_members(root, config, feature_set)``).
    max_differences : int
        How many differences the report lists (all are counted).
    """
    if not isinstance(max_differences, int) or max_differences < 0:
        raise ConfigError(
            f"max_differences must be a whole number >= 0; got {max_differences!r}.",
            param="max_differences",
        )
    record = read_session(journal, session_id)
    if config is None:
        config = parse_live_config(
            record.session["config"], where=f"the config of session {session_id}"
        )
    feature_set = load_feature_set(config.feature_set)
    if members is None:
        if root is None:
            raise ConfigError(
                "root (the data root of the promoted runs) is needed to load the session's "
                "members; give root or members.",
                param="root",
            )
        from moola.runtime.members import load_members

        members = load_members(root, config, feature_set)
    tally = _Tally(max_differences)
    notes: list[str] = []
    if not record.iterations:
        notes.append(f"session {session_id} recorded no bars: nothing to compare")
    if record.session.get("mode") == "live":
        notes.append(
            "a live session: its fills and equity are the exchange's, the replay's are "
            "simulated (differences there measure the simulation)"
        )
    bars = _bars_by_symbol(record, config)
    tables = {s: feature_set.compute(b) for s, b in bars.items()}
    streamed = _check_features(record, feature_set, bars, tables, tally)
    _check_decisions(record, config, bars, streamed, members, tally)
    _check_fills(record, config, bars, tally, notes)
    return ParityReport(
        session_id=session_id,
        mode=str(record.session.get("mode", config.mode)),
        checks=tally.counts(),
        differences=tuple(tally.shown),
        notes=tuple(notes),
    )


def _bars_by_symbol(record: SessionRecord, config: LiveConfig) -> dict[str, pd.DataFrame]:
    """Each symbol's recorded bars as canonical bars (with ``_k``: the iteration's index)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for k, it in enumerate(record.iterations):
        bar = {name: it["bar"].get(name) for name in BAR_FIELDS}
        bar["timestamp"] = pd.Timestamp(bar["timestamp"])
        rows.setdefault(it["symbol"], []).append({**bar, "symbol": it["symbol"], "_k": k})
    out = {}
    for symbol in config.symbols:
        if symbol not in rows:
            continue
        frame = pd.DataFrame(rows[symbol])
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        for name in BAR_FIELDS[1:]:
            frame[name] = frame[name].astype(np.float64)
        out[symbol] = frame
    return out


def _check_features(
    record: SessionRecord,
    feature_set: FeatureSet,
    bars: Mapping[str, pd.DataFrame],
    tables: Mapping[str, pd.DataFrame],
    tally: _Tally,
) -> dict[str, pd.DataFrame]:
    """Each bar's journaled feature hash against the hash of its row streamed again from
    the recorded bars (``IncrementalFeatures``, as the engine computed it: a hash is exact,
    so it needs the very same arithmetic), and that row against the batch row
    (``FeatureSet.compute``) within ``RTOL``, naming the first column that differs.
    Returns each symbol's streamed rows: the rows the members read (a window of float32
    rows may round a last bit differently from the batch row's, which is within ``RTOL``
    but would move a model's output by more)."""
    out = {}
    for symbol, frame in bars.items():
        batch = tables[symbol].to_numpy(dtype=np.float64)
        columns = list(tables[symbol].columns)
        stream = IncrementalFeatures(feature_set)
        records = frame[list(BAR_FIELDS)].to_dict("records")
        rows = []
        for i, k in enumerate(frame["_k"].tolist()):
            it = record.iterations[k]
            when = it["bar_time"]
            row = stream.update({**records[i], "symbol": symbol})
            rows.append(row.to_numpy(dtype=np.float64))
            tally.compare(
                "features", symbol, when, "feature_hash", it["feature_hash"], feature_hash(row)
            )
            streamed = row.to_numpy(dtype=np.float64)
            close = np.isclose(streamed, batch[i], rtol=RTOL, atol=RTOL, equal_nan=True)
            if close.all():
                tally.compare("features", symbol, when, "batch row", True, True)
            else:
                j = int(np.flatnonzero(~close)[0])
                name = f"{columns[j]} (streamed vs batch)"
                tally.compare(
                    "features", symbol, when, name, float(streamed[j]), float(batch[i, j])
                )
        values = np.array(rows).reshape(len(rows), len(columns))
        out[symbol] = pd.DataFrame(values, columns=columns)
    return out


def _member_values(
    member: Any,
    symbol: str,
    frame: pd.DataFrame,
    table: pd.DataFrame,
    depth: int,
    rows_kept: int,
) -> list[float | None]:
    """A member's p(up) at every bar of ``frame`` by the batch path."""
    predictor = getattr(member, "predictor", None)
    n = len(frame)
    if predictor is None:  # another member object: its own value on the batch data
        out = []
        bar_frame = frame[list(BAR_FIELDS)].reset_index(drop=True)
        feature_rows = table.reset_index(drop=True)
        for i in range(n):
            window = bar_frame.iloc[max(0, i + 1 - depth) : i + 1].reset_index(drop=True)
            rows = feature_rows.iloc[max(0, i + 1 - rows_kept) : i + 1].reset_index(drop=True)
            out.append(member.value(symbol, window, rows if member.rows_needed else None))
        return out
    from moola.runtime.members import up_probability

    length = int(predictor.length)
    columns = list(predictor.columns)
    if n < length:
        return [None] * n
    if member.reads_features:
        data = table[columns].to_numpy(dtype=np.float32)
    else:
        data = frame[columns].to_numpy(dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(data, length, axis=0)  # (N-L+1, D, L)
    windows = np.ascontiguousarray(windows.transpose(0, 2, 1))  # (N-L+1, L, D)
    valid = np.isfinite(windows).all(axis=(1, 2))
    out: list[float | None] = [None] * n
    if not valid.any():
        return out
    chosen = windows[valid]
    if member.reads_features and predictor.symbols:
        ids = np.full((*chosen.shape[:2], 1), predictor.symbols.index(symbol), np.float32)
        chosen = np.concatenate([chosen, ids], axis=2)
    if member.calibrated or predictor.calibrator is None:
        proba = predictor.predict_proba(chosen)
    else:
        proba = predictor.estimator.predict_proba(predictor.inputs_of(chosen))
    cfg = member.config
    values = iter(up_probability(p, predictor.classes, cfg.up_class, cfg.down_class) for p in proba)
    for j in np.flatnonzero(valid):
        out[int(j) + length - 1] = next(values)
    return out


def _check_decisions(
    record: SessionRecord,
    config: LiveConfig,
    bars: Mapping[str, pd.DataFrame],
    tables: Mapping[str, pd.DataFrame],
    members: Sequence[Any],
    tally: _Tally,
) -> None:
    from moola.runtime.ensemble import MemberOutput, combine
    from moola.runtime.tiers import tier_of

    depth = max(
        [int(m.bars_needed) for m in members] + [config.risk.atr_period * 4, 2]
    )  # the engine's window of recent bars
    rows_kept = max([int(m.rows_needed) for m in members] + [1])
    table_of_tiers = config.tiers.as_tuple()
    for symbol, frame in bars.items():
        values = {
            m.name: _member_values(m, symbol, frame, tables[symbol], depth, rows_kept)
            for m in members
        }
        for i, k in enumerate(frame["_k"].tolist()):
            it = record.iterations[k]
            when = it["bar_time"]
            journaled = {o["member"]: o for o in it["members"]}
            answers = []
            for m in members:
                value = values[m.name][i]
                answers.append(MemberOutput(m.name, m.run_id, value, False))
                seen = journaled.pop(m.name, None)
                if seen is None:
                    tally.missing("members", symbol, when, f"{m.name}.value", None, value)
                    continue
                tally.compare("members", symbol, when, f"{m.name}.value", seen["value"], value,
                              PROBABILITY_RTOL)  # fmt: skip
                tally.compare("members", symbol, when, f"{m.name}.run_id", seen["run_id"], m.run_id)
            for name, seen in journaled.items():
                tally.missing("members", symbol, when, f"{name}.value", seen["value"], None)
            decision = it["decision"]
            probability = combine(answers, config.weights).probability
            if decision is None:
                tally.missing("decisions", symbol, when, "decision", None, probability)
                continue
            tally.compare("decisions", symbol, when, "probability", decision["probability"],
                          probability, PROBABILITY_RTOL)  # fmt: skip
            calibrated = probability if config.calibration else None
            tally.compare("decisions", symbol, when, "calibrated", decision["calibrated"],
                          calibrated, PROBABILITY_RTOL)  # fmt: skip
            if decision["action"] in _BEFORE_TIER:
                continue
            tier = (
                None
                if probability is None
                else tier_of(max(probability, 1.0 - probability), table_of_tiers)
            )
            signal = 0 if tier is None else (1 if probability >= 0.5 else -1)
            tally.compare("decisions", symbol, when, "tier", decision["tier"], tier)
            tally.compare("decisions", symbol, when, "signal", decision["signal"], signal)


# --------------------------------------------------------------------------- fills


def _check_fills(
    record: SessionRecord,
    config: LiveConfig,
    bars: Mapping[str, pd.DataFrame],
    tally: _Tally,
    notes: list[str],
) -> None:
    from moola.backtest.run import run as backtest
    from moola.sim.execution import ExecutionConfig

    terms = ExecutionConfig(**{**config.execution.model_dump(), "engine": "event"})
    results: dict[str, pd.DataFrame] = {}
    untraded = 0
    for symbol, frame in bars.items():
        intents, skipped = _intents(record, frame)
        untraded += skipped
        journal_fills = [f for f in record.fills if f["symbol"] == symbol]
        sim = _backtest(backtest, frame, intents, terms, symbol, journal_fills)
        results[symbol] = sim.equity.reset_index(drop=True)
        replay = sim.fills.reset_index(drop=True)
        for j in range(max(len(journal_fills), len(replay))):
            mine = journal_fills[j] if j < len(journal_fills) else None
            theirs = replay.iloc[j] if j < len(replay) else None
            when = (mine or {}).get("time") if theirs is None else theirs["timestamp"]
            if mine is None or theirs is None:
                tally.missing(
                    "fills",
                    symbol,
                    when,
                    "fill",
                    None if mine is None else _fill_text(mine),
                    None if theirs is None else _fill_text(theirs, time="timestamp"),
                )
                continue
            tally.compare(
                "fills", symbol, when, "time", _iso(mine["time"]), _iso(theirs["timestamp"])
            )
            for name in ("qty", "price", "fee"):
                tally.compare("fills", symbol, when, name, mine[name], float(theirs[name]))
    if untraded:
        notes.append(f"{untraded} intent(s) rejected or cancelled never traded: no target")
    _check_equity(record, config, bars, results, tally)


def _fill_text(fill: Any, time: str = "time") -> str:
    return f"{_iso(fill[time])} qty {float(fill['qty']):g} @ {float(fill['price']):g}"


def _iso(value: Any) -> str:
    stamp = pd.Timestamp(value)
    return (
        stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    ).isoformat()


def _intents(record: SessionRecord, frame: pd.DataFrame) -> tuple[list[tuple[int, float]], int]:
    """(bar position, signed units) of each traded intent of a symbol, and the number of
    intents left out because they never traded."""
    out: list[tuple[int, float]] = []
    skipped = 0
    for i, k in enumerate(frame["_k"].tolist()):
        for intent in record.iterations[k]["intents"]:
            if intent["status"] in _NOT_TRADED:
                skipped += 1
                continue
            qty = float(intent["qty"])
            out.append((i, qty if intent["side"] == "buy" else -qty))
    return out, skipped


def _backtest(
    backtest: Any,
    frame: pd.DataFrame,
    intents: list[tuple[int, float]],
    terms: Any,
    symbol: str,
    journal_fills: list[dict[str, Any]],
) -> Any:
    """``moola.backtest.run`` on one symbol's bars with the intents as target positions:
    the units held at the decision bar plus the intent's, as fractions of the backtest's
    own equity (module docstring); rerun until each target sizes back exactly."""
    bars = frame[[*BAR_FIELDS, "symbol"]].reset_index(drop=True)
    instrument = terms.build_instrument(symbol)
    close = bars["close"].to_numpy(np.float64)
    equity, held = _journal_book(bars, journal_fills, terms.initial_cash, instrument.point_value)
    result = None
    for _ in range(len(intents) + 2):
        fractions = np.zeros(len(bars))
        targets = []
        for i, qty in intents:
            units = held[i] + qty
            if abs(units) <= _QTY_EPS * max(1.0, abs(qty)):
                units = 0.0
            targets.append(units)
            fractions[i:] = _fraction(units, equity[i], close[i], instrument)
        result = backtest(bars, fractions, terms)
        equity = result.equity["equity"].to_numpy(np.float64)
        held = result.equity["position"].to_numpy(np.float64)
        settled = True
        for (i, qty), units in zip(intents, targets, strict=True):
            again = held[i] + qty
            again = 0.0 if abs(again) <= _QTY_EPS * max(1.0, abs(qty)) else again
            sized = instrument.units_for(fractions[i], equity[i], close[i])
            if again != units or (sized != units and -1.0 < fractions[i] < 1.0):
                settled = False
                break
        if settled:
            break
    return result


def _fraction(units: float, equity: float, price: float, instrument: Any) -> float:
    """The fraction of ``equity`` that ``units_for`` sizes back to ``units`` (whole lots)."""
    if units == 0.0 or equity <= 0.0 or price <= 0.0:
        return 0.0
    half = math.copysign(instrument.lot_size / 2.0, units)
    f = (units + half) * price * instrument.point_value / equity
    return min(1.0, max(-1.0, f))


def _journal_book(
    bars: pd.DataFrame, fills: list[dict[str, Any]], cash: float, point_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """A first guess of the sleeve's equity and position at each bar from the journal's
    fills (spot accounting); the backtest's own replace them on the next pass."""
    times = pd.to_datetime(bars["timestamp"], utc=True)
    close = bars["close"].to_numpy(np.float64)
    position = 0.0
    equity, held = np.empty(len(bars)), np.empty(len(bars))
    by_time: dict[pd.Timestamp, list[dict[str, Any]]] = {}
    for f in fills:
        by_time.setdefault(pd.Timestamp(_iso(f["time"])), []).append(f)
    for i, t in enumerate(times):
        for f in by_time.get(t, []):
            position += float(f["qty"])
            cash -= float(f["qty"]) * float(f["price"]) * point_value + float(f["fee"])
        equity[i] = cash + position * close[i] * point_value
        held[i] = position
    return equity, held


def _check_equity(
    record: SessionRecord,
    config: LiveConfig,
    bars: Mapping[str, pd.DataFrame],
    results: Mapping[str, pd.DataFrame],
    tally: _Tally,
) -> None:
    """Each journaled position snapshot against the backtest: the symbol's position and
    the account's equity and cash (the sleeves summed, each at its last bar so far)."""
    index_of = {}  # iteration index -> (symbol, bar position)
    for symbol, frame in bars.items():
        for i, k in enumerate(frame["_k"].tolist()):
            index_of[k] = (symbol, i)
    where = {
        (it["symbol"], pd.Timestamp(it["bar_time"])): k for k, it in enumerate(record.iterations)
    }
    cash0 = float(config.execution.initial_cash)
    placed = []
    for snap in record.positions:
        symbol, at = snap["symbol"], pd.Timestamp(snap["at"])
        k = where.get((symbol, at))
        if k is None or symbol not in results:
            tally.missing("equity", symbol, at, "snapshot", snap["equity"], None)
        else:
            placed.append((k, snap))
    last: dict[str, int] = {}  # symbol -> its last bar delivered so far
    walked = 0
    for k, snap in sorted(placed, key=lambda pair: pair[0]):
        symbol, at = snap["symbol"], pd.Timestamp(snap["at"])
        while walked <= k:
            if walked in index_of:
                s, i = index_of[walked]
                last[s] = i
            walked += 1
        equity = cash = 0.0
        for s in config.symbols:  # the paper broker's order of sleeves
            if s in last and s in results:
                equity += float(results[s]["equity"].iloc[last[s]])
                cash += float(results[s]["cash"].iloc[last[s]])
            else:
                equity += cash0
                cash += cash0
        position = float(results[symbol]["position"].iloc[last[symbol]])
        tally.compare("equity", symbol, at, "position", snap["qty"], position)
        tally.compare("equity", symbol, at, "equity", snap["equity"], equity)
        tally.compare("equity", symbol, at, "cash", snap["cash"], cash)
