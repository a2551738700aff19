"""Leakage-free splits of samples that each cover a span of time.

Sample ``i`` covers the inclusive interval ``[start_i, end_i]`` on an integer time axis:
bar positions (``spans_unit="bars"``) or int64 ns timestamps (``"ns"``). A window covers
its bars; a label whose horizon runs past the window covers the horizon too. All functions
are unit-agnostic: ``purge`` and ``embargo`` are in the spans' unit (use
``durations_to_units`` to turn ``"30min"`` or a bar count into it).

Semantics (after Lopez de Prado, *Advances in Financial Machine Learning*, ch. 7):

* **Overlap and purge.** A fitted sample ``i`` and an evaluated sample ``j`` are separated
  when ``end_i + purge < start_j`` (or, for a fitted sample after the evaluated one,
  ``end_j + purge < start_i``): at least ``purge`` units lie strictly between them. With
  ``purge=0`` this just says their spans do not overlap. Samples that would break this are
  *purged* (dropped, listed in ``Split.purged`` / ``Fold.purged``); purging always removes
  them from the side that is fitted on (train before val, val before test). Overlap is about
  time only: samples of different symbols with the same span still conflict.
* **Embargo.** Serial correlation reaches past the end of a span, so samples that *start*
  within ``embargo`` units after the end of the preceding part are dropped too:

  - ``forward_chaining`` / ``walk_forward`` (evaluation always after fitting): each later
    part (val, then test) loses the samples with ``start <= max end of the kept earlier
    parts + embargo``. Evaluation therefore begins more than ``embargo`` after the last
    fitted bar.
  - ``purged_kfold`` (training data on both sides of the test fold): train samples with
    ``max end of test fold < start <= max end of test fold + embargo`` are dropped, exactly
    as in AFML; nothing is embargoed before the test fold.

  Purge and embargo combine: after both, every kept pair is at least ``purge`` apart and
  every part that follows another starts more than ``embargo`` after it ends.
* **Ties.** Parts and folds are cut in time, not by count: samples that share a start time
  (several symbols, same bar) always fall in the same part, the later one.
* **Several symbols.** Every cut is a timestamp applied to all symbols at once: a sample's
  part depends on its span only, never on its symbol or row. Purge and embargo compare
  spans across symbols too, so a train sample of symbol A reaching (through its label
  horizon end, plus purge/embargo) the start of symbol B's val or test period is purged.
  ``make_split(..., symbols=...)`` records each sample's symbol in ``Split.symbols`` (when
  they hold more than one) so ``validate_split`` can name both symbols of a leak; it
  refuses a chronological split in which any symbol's train sample reaches at or after
  another symbol's val/test start.
* **70/15/15 by time.** The usual forecasting split (train the first 70%, validate the
  next 15%, test the last 15%, cut at timestamps) is ``forward-chaining`` with its
  defaults (``val_fraction=0.15``, ``test_fraction=0.15``; fractions of the samples, cut
  at a start time). ``walk-forward`` is the fold form (``n_splits`` test blocks of
  ``test_size`` samples, each trained on everything before it), for backtesting a model
  on several consecutive periods.

Written by hand: scikit-learn's ``TimeSeriesSplit`` counts its ``gap`` in samples, not in
time spans, and has no embargo or purged k-fold; the AFML reference code (mlfinlab) is no
longer open source.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    computed_field,
    model_serializer,
    model_validator,
)

from moola.core.errors import ConfigError, LeakageError, SplitError
from moola.core.hashing import sha256_json
from moola.core.timeframes import parse_timeframe

SpansUnit = Literal["bars", "ns"]
LEAKAGE_FREE_STRATEGIES: tuple[str, ...] = ("forward-chaining", "purged-kfold", "walk-forward")
STRATEGIES: tuple[str, ...] = (*LEAKAGE_FREE_STRATEGIES, "stratified")
_RANDOM_NAMES = frozenset({"random", "shuffle", "shuffled", "random-split", "train-test-split"})
_SHOW = 5  # offending indices named in a message


class Fold(BaseModel):
    """One fold of a k-fold or walk-forward split (sample indices, sorted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: list[int]
    test: list[int]
    val: list[int] = []
    purged: list[int] = []


class Split(BaseModel):
    """A split of samples into parts, with the recipe that made it.

    ``train``/``val``/``test``/``purged`` hold sample indices. For fold strategies
    (``purged-kfold``, ``walk-forward``) ``train`` is the pool the folds were drawn from (every
    sample), ``val``/``test`` are empty and each ``Fold`` holds its own parts. ``spans`` are
    the ``[start, end]`` the indices refer to (empty for a time-independent split).
    ``symbols`` is each sample's symbol when the samples hold several (empty otherwise, and
    then left out of the dump and the hash, so one-symbol splits keep their bytes).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    strategy: str
    params: dict[str, Any] = {}
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    folds: list[Fold] | None = None
    purged: list[int] = []
    time_independent: bool = False
    spans: list[tuple[int, int]] = []
    spans_unit: SpansUnit = "bars"
    symbols: list[str] = []

    @model_serializer(mode="wrap")
    def _omit_no_symbols(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``symbols`` out while empty: a one-symbol split dumps as it did before."""
        data = handler(self)
        if isinstance(data, dict) and not self.symbols:
            data.pop("symbols", None)
        return data

    @model_validator(mode="after")
    def _one_symbol_per_sample(self) -> Split:
        if self.symbols and self.spans and len(self.symbols) != len(self.spans):
            raise ValueError(
                f"symbols has {len(self.symbols)} entries but spans {len(self.spans)}; give "
                "one symbol per sample."
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _drop_counts(cls, data: Any) -> Any:
        """Accept a ``model_dump()`` back: ``counts`` is derived, so it is dropped on input."""
        if isinstance(data, dict) and "counts" in data:
            data = {key: value for key, value in data.items() if key != "counts"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Number of samples per part (and of folds, for fold strategies)."""
        counts = {
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "purged": len(self.purged),
        }
        if self.folds is not None:
            counts["folds"] = len(self.folds)
        return counts

    def content_hash(self) -> str:
        """Identity of the split's content: everything but ``name`` (a label, not content)."""
        content = {
            "strategy": self.strategy,
            "params": self.params,
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "folds": None if self.folds is None else [fold.model_dump() for fold in self.folds],
            "purged": self.purged,
            "time_independent": self.time_independent,
            "spans": self.spans,
            "spans_unit": self.spans_unit,
        }
        if self.symbols:  # absent for one symbol, so those hashes did not change
            content["symbols"] = self.symbols
        return sha256_json(content)


# --------------------------------------------------------------------------- inputs


def _as_time(values: Any, what: str) -> tuple[np.ndarray, bool]:
    """int64 array of ``values`` and whether they were datetimes (then in ns)."""
    if isinstance(values, (pd.Series, pd.Index)) and (
        pd.api.types.is_datetime64_any_dtype(values.dtype)
    ):
        return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8, dtype=np.int64), True
    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").view(np.int64), True
    if array.ndim != 1:
        raise SplitError(f"Sample {what}s must be 1-D, got shape {array.shape}.")
    if array.size and array.dtype.kind not in "iu":
        raise SplitError(
            f"Sample {what}s must be integers (bar positions or int64 ns), got dtype {array.dtype}."
        )
    return array.astype(np.int64, copy=False), False


def _spans(starts: Any, ends: Any, unit: SpansUnit | None) -> tuple[np.ndarray, np.ndarray, str]:
    s, s_dt = _as_time(starts, "start")
    e, e_dt = _as_time(ends, "end")
    if s.shape != e.shape:
        raise SplitError(f"Got {s.size} starts and {e.size} ends; give one of each per sample.")
    backwards = np.flatnonzero(e < s)
    if backwards.size:
        raise SplitError(
            f"{backwards.size} sample(s) end before they start, first at indices "
            f"{backwards[:_SHOW].tolist()}; spans are inclusive [start, end] with end >= start."
        )
    inferred = "ns" if (s_dt or e_dt) else "bars"
    if unit is None:
        unit = inferred
    if unit not in ("bars", "ns"):
        raise SplitError(f"spans_unit must be 'bars' or 'ns', got {unit!r}.")
    if inferred == "ns" and unit != "ns":
        raise SplitError("Starts/ends are timestamps, so the spans' unit must be 'ns'.")
    return s, e, unit


def _gap(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise SplitError(
            f"{what} must be a non-negative integer in the spans' unit, got {value!r}; convert "
            "a duration such as '30min' with durations_to_units().",
            param=what,
        )
    if value < 0:
        raise SplitError(f"{what} must be >= 0, got {value}.", param=what)
    return int(value)


def _fraction(value: float, what: str) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise SplitError(f"{what} must be in [0, 1), got {value!r}.", param=what)
    return float(value)


def _chronological(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Sample indices ordered by start, then end, then index (deterministic)."""
    return np.lexsort((np.arange(s.size), e, s))


def _tie_cut(sorted_starts: np.ndarray, position: int) -> int:
    """Move a cut left so samples sharing a start time stay together (in the later part)."""
    if position >= sorted_starts.size:
        return int(sorted_starts.size)
    return int(np.searchsorted(sorted_starts, sorted_starts[position], side="left"))


def _sorted_list(indices: np.ndarray) -> list[int]:
    return np.sort(indices).tolist()


def _span_list(s: np.ndarray, e: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(s.tolist(), e.tolist(), strict=True))


def _chain(
    parts: list[np.ndarray], s: np.ndarray, e: np.ndarray, purge: int, embargo: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Purge and embargo a chronological sequence of parts (see the module docstring)."""
    kept = list(parts)
    dropped: list[np.ndarray] = []
    for k in range(len(kept) - 1):
        later = np.concatenate(parts[k + 1 :])
        if later.size == 0 or kept[k].size == 0:
            continue
        keep = e[kept[k]] + purge < s[later].min()
        dropped.append(kept[k][~keep])
        kept[k] = kept[k][keep]
    for k in range(1, len(kept)):
        earlier = np.concatenate(kept[:k])
        if earlier.size == 0 or kept[k].size == 0:
            continue
        keep = s[kept[k]] > e[earlier].max() + embargo
        dropped.append(kept[k][~keep])
        kept[k] = kept[k][keep]
    purged = np.concatenate(dropped) if dropped else np.empty(0, dtype=np.int64)
    return kept, purged


def _part_size(n: int, fraction: float) -> int:
    return 0 if fraction == 0 else max(1, round(n * fraction))


# --------------------------------------------------------------------------- strategies


def forward_chaining(
    starts: Any,
    ends: Any,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    purge: int = 0,
    embargo: int = 0,
    spans_unit: SpansUnit | None = None,
    name: str | None = None,
) -> Split:
    """Chronological train < val < test, cut by sample start.

    Parts get about ``1 - val_fraction - test_fraction``, ``val_fraction`` and
    ``test_fraction`` of the samples (cut at a start time, so ties stay together). Train
    samples reaching within ``purge`` of the first val/test start are purged, and likewise
    val against test; then val and test lose the samples that start within ``embargo`` after
    the last kept end before them. Guarantees ``end_i + purge < start_j`` for every earlier
    ``i`` and later ``j``. Raises ``SplitError`` when a requested part ends up empty.
    """
    s, e, unit = _spans(starts, ends, spans_unit)
    val_fraction = _fraction(val_fraction, "val_fraction")
    test_fraction = _fraction(test_fraction, "test_fraction")
    purge, embargo = _gap(purge, "purge"), _gap(embargo, "embargo")
    if val_fraction + test_fraction >= 1:
        raise SplitError("val_fraction + test_fraction must be < 1 so train is not empty.")
    n = s.size
    n_val, n_test = _part_size(n, val_fraction), _part_size(n, test_fraction)
    if n - n_val - n_test < 1:
        raise SplitError(
            f"{n} samples are too few for val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}; train would be empty."
        )
    order = _chronological(s, e)
    sorted_starts = s[order]
    cut_val = _tie_cut(sorted_starts, n - n_val - n_test)
    cut_test = _tie_cut(sorted_starts, n - n_test)
    parts = [order[:cut_val], order[cut_val:cut_test], order[cut_test:]]
    kept, purged = _chain(parts, s, e, purge, embargo)
    for part_name, wanted, part in zip(
        ("train", "val", "test"), (1, n_val, n_test), kept, strict=True
    ):
        if wanted and part.size == 0:
            raise SplitError(
                f"The {part_name} part is empty after cutting at shared start times and purging "
                f"(purge={purge}, embargo={embargo}, {n} samples); give more samples, a larger "
                f"{part_name} fraction, or a smaller purge/embargo."
            )
    return Split(
        name=name,
        strategy="forward-chaining",
        params={
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "purge": purge,
            "embargo": embargo,
        },
        train=_sorted_list(kept[0]),
        val=_sorted_list(kept[1]),
        test=_sorted_list(kept[2]),
        purged=_sorted_list(purged),
        spans=_span_list(s, e),
        spans_unit=unit,
    )


def purged_kfold(
    starts: Any,
    ends: Any,
    *,
    n_folds: int = 5,
    embargo: int = 0,
    purge: int = 0,
    spans_unit: SpansUnit | None = None,
    name: str | None = None,
) -> Split:
    """K contiguous folds in time; each fold is tested once, trained on the others.

    For test fold ``k`` covering ``[lo, hi]`` (its min start, max end), train is every other
    sample minus those intersecting ``[lo - purge, hi + purge]`` and minus those starting in
    ``(hi, hi + embargo]``. Raises ``SplitError`` when a fold or its train part is empty.
    """
    s, e, unit = _spans(starts, ends, spans_unit)
    purge, embargo = _gap(purge, "purge"), _gap(embargo, "embargo")
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise SplitError(f"n_folds must be an integer >= 2, got {n_folds!r}.")
    n = s.size
    order = _chronological(s, e)
    sorted_starts = s[order]
    cuts = [_tie_cut(sorted_starts, (k * n) // n_folds) for k in range(n_folds)] + [n]
    folds: list[Fold] = []
    for k in range(n_folds):
        test = order[cuts[k] : cuts[k + 1]]
        if test.size == 0:
            raise SplitError(
                f"Fold {k} of {n_folds} is empty: {n} samples with "
                f"{np.unique(s).size} distinct start times cannot fill {n_folds} folds."
            )
        lo, hi = s[test].min(), e[test].max()
        others = np.concatenate([order[: cuts[k]], order[cuts[k + 1] :]])
        so, eo = s[others], e[others]
        drop = ((so <= hi + purge) & (eo >= lo - purge)) | ((so > hi) & (so <= hi + embargo))
        if drop.all():
            raise SplitError(
                f"Fold {k}: every training sample is purged or embargoed (purge={purge}, "
                f"embargo={embargo}); use fewer folds or a smaller purge/embargo."
            )
        folds.append(
            Fold(
                train=_sorted_list(others[~drop]),
                test=_sorted_list(test),
                purged=_sorted_list(others[drop]),
            )
        )
    return Split(
        name=name,
        strategy="purged-kfold",
        params={"n_folds": int(n_folds), "purge": purge, "embargo": embargo},
        train=list(range(n)),
        folds=folds,
        spans=_span_list(s, e),
        spans_unit=unit,
    )


def walk_forward(
    starts: Any,
    ends: Any,
    *,
    n_splits: int,
    test_size: int | None = None,
    train_size: int | None = None,
    purge: int = 0,
    embargo: int = 0,
    spans_unit: SpansUnit | None = None,
    name: str | None = None,
) -> Split:
    """``n_splits`` folds whose test blocks of ``test_size`` samples tile the end of the
    series; each trains on the samples before its block: all of them (expanding, when
    ``train_size`` is None) or the last ``train_size`` (rolling).

    ``test_size`` defaults to ``n // (n_splits + 1)`` samples, as in scikit-learn's
    ``TimeSeriesSplit``: the first fold then trains on as many samples as each block tests.

    Train samples reaching within ``purge`` of the block's first start are purged; test
    samples starting within ``embargo`` after the last kept train end are dropped (see the
    module docstring). Block edges move to shared start times, so sizes may differ slightly.
    """
    s, e, unit = _spans(starts, ends, spans_unit)
    purge, embargo = _gap(purge, "purge"), _gap(embargo, "embargo")
    if test_size is None and isinstance(n_splits, (int, np.integer)) and n_splits >= 1:
        test_size = s.size // (n_splits + 1)
        if test_size < 1:
            raise SplitError(
                f"{s.size} samples cannot hold {n_splits} walk-forward folds and a train "
                "part; lower n_splits."
            )
    for what, value in (("n_splits", n_splits), ("test_size", test_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SplitError(f"{what} must be a positive integer, got {value!r}.", param=what)
    if train_size is not None and (
        isinstance(train_size, bool)
        or not isinstance(train_size, (int, np.integer))
        or train_size < 1
    ):
        raise SplitError(f"train_size must be a positive integer or None, got {train_size!r}.")
    n = s.size
    first_test = n - n_splits * test_size
    if first_test < 1:
        raise SplitError(
            f"{n} samples cannot hold {n_splits} test blocks of {test_size} and a train part; "
            "lower n_splits or test_size."
        )
    order = _chronological(s, e)
    sorted_starts = s[order]
    cuts = [_tie_cut(sorted_starts, first_test + k * test_size) for k in range(n_splits)] + [n]
    folds: list[Fold] = []
    for k in range(n_splits):
        first_train = 0 if train_size is None else max(0, cuts[k] - train_size)
        train, test = order[first_train : cuts[k]], order[cuts[k] : cuts[k + 1]]
        if test.size == 0 or train.size == 0:
            raise SplitError(
                f"Walk-forward fold {k} has an empty {'test' if test.size == 0 else 'train'} "
                "part after cutting at shared start times; lower n_splits or raise test_size."
            )
        (kept_train, kept_test), purged = _chain([train, test], s, e, purge, embargo)
        if kept_train.size == 0 or kept_test.size == 0:
            raise SplitError(
                f"Walk-forward fold {k}: purge={purge}/embargo={embargo} empty its "
                f"{'train' if kept_train.size == 0 else 'test'} part; use larger blocks or a "
                "smaller purge/embargo."
            )
        folds.append(
            Fold(
                train=_sorted_list(kept_train),
                test=_sorted_list(kept_test),
                purged=_sorted_list(purged),
            )
        )
    return Split(
        name=name,
        strategy="walk-forward",
        params={
            "n_splits": int(n_splits),
            "test_size": int(test_size),
            "train_size": None if train_size is None else int(train_size),
            "purge": purge,
            "embargo": embargo,
        },
        train=list(range(n)),
        folds=folds,
        spans=_span_list(s, e),
        spans_unit=unit,
    )


def stratified(
    labels: Sequence[Any] | np.ndarray | pd.Series,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int,
    time_independent: bool = False,
    name: str | None = None,
) -> Split:
    """Random split keeping class proportions, for samples that truly do not share time.

    Refused (``LeakageError``) unless ``time_independent=True``: windows cut from one series
    overlap and are serially correlated, so a shuffled split leaks the test period into
    training. Each class is shuffled with ``seed`` and cut by the fractions.
    """
    if not time_independent:
        raise LeakageError(
            "A stratified (shuffled) split is refused: windows of one series overlap and are "
            "serially correlated, so shuffling puts bars of the test period into training. "
            f"Use one of {', '.join(LEAKAGE_FREE_STRATEGIES)}, or pass time_independent=True "
            "only if the samples really share no time (e.g. unrelated series)."
        )
    val_fraction = _fraction(val_fraction, "val_fraction")
    test_fraction = _fraction(test_fraction, "test_fraction")
    if val_fraction + test_fraction >= 1:
        raise SplitError("val_fraction + test_fraction must be < 1 so train is not empty.")
    values = pd.Series(labels).reset_index(drop=True)
    codes, classes = pd.factorize(values, sort=True)
    if (codes < 0).any():
        raise SplitError(
            f"Labels are missing at indices {np.flatnonzero(codes < 0)[:_SHOW].tolist()}."
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for code in range(len(classes)):
        members = rng.permutation(np.flatnonzero(codes == code))
        n_test = round(members.size * test_fraction)
        n_val = round(members.size * val_fraction)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    joined = {
        key: _sorted_list(np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64))
        for key, chunks in parts.items()
    }
    return Split(
        name=name,
        strategy="stratified",
        params={"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": int(seed)},
        time_independent=True,
        **joined,
    )


# --------------------------------------------------------------------------- units


def _duration(value: Any, what: str) -> pd.Timedelta:
    if isinstance(value, (int, float, np.number)):
        raise SplitError(
            f"{what}={value!r} has no unit: give a bar count as an int, or a duration with a "
            "unit such as '30min'.",
            param=what,
        )
    if isinstance(value, str):
        if _NUMBER.match(value.strip()):  # pandas would read "1.5" as 1.5 ns
            raise SplitError(
                f"{what}={value!r} has no unit: give a whole number of bars ('12') or a "
                "duration with a unit such as '30min'.",
                param=what,
            )
        try:
            return parse_timeframe(value)
        except ConfigError:
            pass
    try:
        duration = pd.Timedelta(value)
    except (ValueError, TypeError) as error:
        raise SplitError(
            f"{what}={value!r} is neither bars nor a duration; use a number of bars (12) or a "
            "duration such as '30min', '2h' or '1d'.",
            param=what,
        ) from error
    if pd.isna(duration):
        raise SplitError(f"{what} is missing (NaT); give a duration such as '30min'.", param=what)
    return duration


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_BAR_COUNT = re.compile(r"^[-+]?\d+$")


def durations_to_units(
    amount: int | str | pd.Timedelta | timedelta | np.timedelta64,
    *,
    unit: SpansUnit,
    bar_duration: str | pd.Timedelta | timedelta | None = None,
    name: str = "purge/embargo",
) -> int:
    """Express a purge/embargo in the spans' unit: moola's one parser of such gaps.

    ``amount`` is a bar count (an int, or text of digits such as ``"105"``) or a duration
    (``pd.Timedelta`` or text with a unit such as ``"30min"``, ``"1h"``). For ``unit="ns"``
    a bar count needs ``bar_duration`` (a timeframe such as ``"1m"`` or a Timedelta); for
    ``unit="bars"`` a duration is rounded *up* to whole bars so the gap is never shorter
    than asked. Errors (``SplitError``) name the parameter: ``name`` (``"purge"``, ...).
    """
    if unit not in ("bars", "ns"):
        raise SplitError(f"unit must be 'bars' or 'ns', got {unit!r}.")
    bar = None if bar_duration is None else _duration(bar_duration, "bar_duration")
    if bar is not None and bar <= pd.Timedelta(0):
        raise SplitError(f"bar_duration must be positive, got {bar_duration!r}.")
    if isinstance(amount, str) and _BAR_COUNT.match(amount.strip()):
        amount = int(amount.strip())
    if isinstance(amount, (int, np.integer)) and not isinstance(amount, (bool, np.bool_)):
        if amount < 0:
            raise SplitError(f"{name}={amount} bars is negative; use >= 0.", param=name)
        if unit == "bars":
            return int(amount)
        if bar is None:
            raise SplitError(
                f"Converting {name}={amount} bars to ns needs bar_duration (e.g. '1m'); pass it.",
                param=name,
            )
        return int(amount) * int(bar.value)
    duration = _duration(amount, name)
    if duration < pd.Timedelta(0):
        raise SplitError(f"{name}={amount!r} is negative; use >= 0.", param=name)
    if unit == "ns":
        return int(duration.value)
    if bar is None:
        raise SplitError(
            f"Converting {name}={amount!r} to bars needs bar_duration (e.g. '1m'); pass it.",
            param=name,
        )
    return math.ceil(duration.value / bar.value)


# --------------------------------------------------------------------------- dispatch


_BUILDERS: dict[str, Callable[..., Split]] = {
    "forward-chaining": forward_chaining,
    "purged-kfold": purged_kfold,
    "walk-forward": walk_forward,
}


def _normalise(strategy: str) -> str:
    return str(strategy).strip().lower().replace("_", "-").replace(" ", "-")


def _sample_symbols(symbols: Any, n: int) -> list[str]:
    """Each sample's symbol as text, recorded only when there are several (else ``[]``)."""
    if symbols is None:
        return []
    values = [str(value) for value in np.asarray(symbols, dtype=object).ravel().tolist()]
    if len(values) != n:
        raise SplitError(
            f"Got {len(values)} symbols for {n} samples; give one symbol per sample.",
            param="symbols",
        )
    return values if len(set(values)) > 1 else []


def make_split(
    strategy: str,
    starts: Any = None,
    ends: Any = None,
    *,
    bar_duration: str | pd.Timedelta | None = None,
    symbols: Any = None,
    **params: Any,
) -> Split:
    """Build a split by strategy name: ``forward-chaining``, ``purged-kfold``,
    ``walk-forward`` or ``stratified`` (which needs ``labels=`` and
    ``time_independent=True``).

    ``purge``/``embargo`` may be durations (``"30min"``) when ``bar_duration`` is given or the
    spans are in ns. ``symbols`` (one per sample) does not change where the cuts fall,
    which is by time alone; when the samples hold several symbols they are recorded in
    ``Split.symbols`` so a leak is reported naming them. Random or shuffled splits raise
    ``LeakageError``; unknown strategies or parameters raise ``SplitError`` naming what is
    allowed.
    """
    key = _normalise(strategy)
    if key in _RANDOM_NAMES:
        raise LeakageError(
            f"Split strategy {strategy!r} is refused: a random split of windows from one series "
            "leaks the future into training (overlapping, serially correlated samples). Use "
            f"one of {', '.join(LEAKAGE_FREE_STRATEGIES)}."
        )
    if key == "stratified":
        builder: Callable[..., Split] = stratified
    elif key in _BUILDERS:
        builder = _BUILDERS[key]
    else:
        close = difflib.get_close_matches(key, STRATEGIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SplitError(
            f"Unknown split strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}.{hint}"
        )
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("starts", "ends")]
    unknown = [p for p in params if p not in accepted]
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SplitError(
            f"Unknown parameter(s) {unknown} for split strategy {key!r}; accepted: "
            f"{', '.join(accepted)}.{hint}"
        )
    if key == "stratified":
        if "labels" not in params:
            raise SplitError("The stratified strategy needs labels=[...] (one per sample).")
        return stratified(params.pop("labels"), **params)
    if starts is None or ends is None:
        raise SplitError(f"Split strategy {key!r} needs the samples' starts and ends.")
    s, e, unit = _spans(starts, ends, params.pop("spans_unit", None))
    recorded = _sample_symbols(symbols, s.size)
    for gap in ("purge", "embargo"):
        if gap in params and not isinstance(params[gap], (int, np.integer)):
            params[gap] = durations_to_units(
                params[gap], unit=unit, bar_duration=bar_duration, name=gap
            )
    built = builder(s, e, spans_unit=unit, **params)
    return built.model_copy(update={"symbols": recorded}) if recorded else built


# --------------------------------------------------------------------------- validation


def _indices(values: list[int], part: str, where: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64)
    if array.ndim != 1:
        raise SplitError(f"{where}{part} must be a flat list of sample indices.")
    return array


def _check_partition(
    parts: dict[str, np.ndarray], n: int, where: str, require_coverage: bool
) -> None:
    """Range, disjointness and (optionally) coverage of ``parts`` over ``range(n)``."""
    for part, idx in parts.items():
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            raise SplitError(
                f"{where}{part} has {bad.size} index(es) outside 0..{n - 1}: "
                f"{bad[:_SHOW].tolist()}. The split was made for other data; rebuild it."
            )
    every = np.concatenate([*parts.values(), np.empty(0, dtype=np.int64)])
    counts = np.bincount(every, minlength=n)
    repeated = np.flatnonzero(counts > 1)
    if repeated.size:
        first = int(repeated[0])
        holders = [part for part, idx in parts.items() for _ in range(int((idx == first).sum()))]
        raise SplitError(
            f"{where}{repeated.size} sample(s) appear more than once, first "
            f"{repeated[:_SHOW].tolist()}; "
            f"sample {first} is in {holders}. Each sample must be in exactly one part."
        )
    if require_coverage:
        missing = np.flatnonzero(counts == 0)
        if missing.size:
            raise SplitError(
                f"{where}{missing.size} sample(s) are in no part and not purged, first "
                f"{missing[:_SHOW].tolist()}; every sample must be in train/val/test or purged."
            )


def _conflicts(
    a: np.ndarray, b: np.ndarray, s: np.ndarray, e: np.ndarray, purge: int
) -> np.ndarray:
    """Indices in ``a`` whose span is within ``purge`` of (or overlaps) some span in ``b``.

    ``[s_a, e_a]`` and ``[s_b, e_b]`` conflict when ``s_a <= e_b + purge`` and
    ``s_b <= e_a + purge``, i.e. when ``[s, e + purge]`` of the two intersect. Sorting ``b``
    by start and keeping a running max of ``e_b + purge`` answers each ``a`` by binary search.
    """
    if a.size == 0 or b.size == 0:
        return a[:0]
    order = np.argsort(s[b], kind="stable")
    b_starts = s[b][order]
    reach = np.maximum.accumulate(e[b][order] + purge)
    last = np.searchsorted(b_starts, e[a] + purge, side="right") - 1
    hit = last >= 0
    hit[hit] = reach[last[hit]] >= s[a][hit]
    return a[hit]


def _partner(i: int, b: np.ndarray, s: np.ndarray, e: np.ndarray, purge: int) -> int:
    match = b[(s[b] <= e[i] + purge) & (e[b] + purge >= s[i])]
    return int(match[0])


def _check_overlap(
    parts: dict[str, np.ndarray], s: np.ndarray, e: np.ndarray, purge: int, where: str
) -> None:
    names = [p for p in ("train", "val", "test") if p in parts]
    for x, first in enumerate(names):
        for second in names[x + 1 :]:
            bad = _conflicts(parts[first], parts[second], s, e, purge)
            if bad.size:
                shown = [
                    f"{first} {int(i)} [{s[i]}, {e[i]}] vs {second} {j} [{s[j]}, {e[j]}]"
                    for i in bad[:_SHOW]
                    for j in [_partner(int(i), parts[second], s, e, purge)]
                ]
                raise LeakageError(
                    f"{where}{bad.size} {first} sample(s) overlap or come within purge={purge} "
                    f"of a {second} sample in time: {'; '.join(shown)}. Rebuild the split with "
                    f"{', '.join(LEAKAGE_FREE_STRATEGIES)} (they purge these)."
                )


def _check_follows(
    earlier: np.ndarray,
    later: np.ndarray,
    s: np.ndarray,
    e: np.ndarray,
    gap: int,
    names: tuple[str, str],
    where: str,
) -> None:
    """Every ``later`` sample starts more than ``gap`` after the last ``earlier`` end."""
    if earlier.size == 0 or later.size == 0:
        return
    limit = e[earlier].max() + gap
    bad = later[s[later] <= limit]
    if bad.size:
        raise LeakageError(
            f"{where}{bad.size} {names[1]} sample(s) start at or before {limit} (last "
            f"{names[0]} end {limit - gap} + embargo {gap}), first "
            f"{np.sort(bad)[:_SHOW].tolist()}; {names[1]} must start after {names[0]} ends "
            "plus the embargo."
        )


def _moment(value: int, unit: str) -> str:
    """A time on the spans' axis as a reader knows it (UTC timestamp or bar position)."""
    if unit == "ns":
        return pd.Timestamp(int(value), unit="ns", tz="UTC").isoformat()
    return f"bar {int(value)}"


def _length(value: int, unit: str) -> str:
    return str(pd.Timedelta(int(value), unit="ns")) if unit == "ns" else f"{int(value)} bars"


def _check_symbols_before(
    earlier: tuple[str, np.ndarray],
    later: tuple[str, np.ndarray],
    s: np.ndarray,
    e: np.ndarray,
    symbols: np.ndarray,
    gap: int,
    unit: str,
    where: str,
) -> None:
    """No ``earlier`` sample of any symbol reaches (its end plus ``gap``) at or after the
    first ``later`` start of any symbol: every symbol's fitted period ends before every
    symbol's evaluated period begins."""
    if earlier[1].size == 0 or later[1].size == 0:
        return
    first = later[1][np.argmin(s[later[1]])]
    reach = e[earlier[1]] + gap
    bad = earlier[1][reach >= s[first]]
    if not bad.size:
        return
    i = int(bad[np.argmax(e[bad])])
    # The symbol whose evaluated period the sample reaches: another symbol's when one is
    # reached, so a cross-symbol leak is reported as one.
    reached = later[1][s[later[1]] <= e[i] + gap]
    other = reached[symbols[reached] != symbols[i]]
    j = int((other if other.size else reached)[np.argmin(s[other if other.size else reached])])
    raise LeakageError(
        f"{where}{bad.size} {earlier[0]} sample(s) reach into a {later[0]} period: "
        f"{earlier[0]} sample {i} of {symbols[i]} spans {_moment(s[i], unit)} .. "
        f"{_moment(e[i], unit)} (+ purge/embargo {_length(gap, unit)}), at or after {symbols[j]}'s "
        f"{later[0]} start {_moment(s[j], unit)} (sample {j}). Every symbol's "
        f"{earlier[0]} period must end before any symbol's {later[0]} period begins; "
        f"rebuild the split with {', '.join(LEAKAGE_FREE_STRATEGIES)} (they cut all "
        "symbols at the same timestamps and purge across them)."
    )


def _check_chronological_symbols(
    parts: dict[str, np.ndarray],
    s: np.ndarray,
    e: np.ndarray,
    symbols: np.ndarray,
    gap: int,
    unit: str,
    where: str,
) -> None:
    """train before val, train and val before test, across every pair of symbols."""
    _check_symbols_before(
        ("train", parts["train"]), ("val", parts["val"]), s, e, symbols, gap, unit, where
    )
    fitted = np.concatenate([parts["train"], parts["val"]])
    _check_symbols_before(
        ("train/val", fitted), ("test", parts["test"]), s, e, symbols, gap, unit, where
    )


def _recorded_symbols(split: Split, symbols: Any, n: int) -> np.ndarray | None:
    """The samples' symbols (given, else recorded), or None for one symbol."""
    given = _sample_symbols(symbols, n) if symbols is not None else []
    if given and split.symbols and given != split.symbols:
        raise SplitError(
            "The split's recorded symbols differ from the given ones: it was made for other "
            "samples. Rebuild it for this data."
        )
    values = given or split.symbols
    if not values:
        return None
    if len(values) != n:
        raise SplitError(f"The split records {len(values)} symbols for {n} samples.")
    return np.asarray(values, dtype=object)


def validate_split(
    split: Split, starts: Any = None, ends: Any = None, *, symbols: Any = None
) -> None:
    """Raise ``SplitError`` / ``LeakageError`` naming the offending indices when ``split``
    is not a clean split of the samples ``[starts, ends]`` (default: ``split.spans``).

    Checks: indices in range; no sample in two parts; every sample in a part or purged
    (per fold too for ``purged-kfold``); unless ``time_independent``, no train sample within
    ``params['purge']`` of a val/test sample (or val of test) in time, and the embargo
    of the strategy (see the module docstring). With several symbols (``symbols``, one per
    sample, default ``split.symbols``) a chronological split (every strategy but
    ``purged-kfold``, whose training data lies on both sides of its test fold) is refused
    when any symbol's train (or val) sample reaches, through its end plus purge/embargo,
    a timestamp at or after another symbol's val (or test) start; the ``LeakageError``
    names both symbols, the sample and the times. Sort-based: O(n log n).
    """
    if starts is not None or ends is not None:
        s, e, _ = _spans(starts, ends, None)
        if split.spans and (
            len(split.spans) != s.size
            or not np.array_equal(
                np.asarray(split.spans, dtype=np.int64).reshape(-1, 2), np.column_stack([s, e])
            )
        ):
            raise SplitError(
                "The split's recorded spans differ from the given starts/ends: it was made "
                "for other samples. Rebuild it for this data."
            )
    elif split.spans:
        spans = np.asarray(split.spans, dtype=np.int64).reshape(-1, 2)
        s, e = spans[:, 0].copy(), spans[:, 1].copy()
    elif split.time_independent:
        s = e = None
    else:
        raise SplitError("The split records no spans; pass the samples' starts and ends.")
    top = {
        part: _indices(getattr(split, part), part, "")
        for part in ("train", "val", "test", "purged")
    }
    n = s.size if s is not None else sum(idx.size for idx in top.values())
    _check_partition(top, n, "", require_coverage=True)
    if split.time_independent or s is None:
        return
    purge = _gap(split.params.get("purge", 0), "params['purge']")
    embargo = _gap(split.params.get("embargo", 0), "params['embargo']")
    tags = _recorded_symbols(split, symbols, n)
    chronological = tags is not None and split.strategy != "purged-kfold"
    gap = max(purge, embargo)
    if chronological:  # first, so a leak between symbols is reported naming both
        _check_chronological_symbols(top, s, e, tags, gap, split.spans_unit, "")
    _check_overlap(top, s, e, purge, "")
    if split.strategy == "forward-chaining":
        _check_follows(top["train"], top["val"], s, e, embargo, ("train", "val"), "")
        before_test = np.concatenate([top["train"], top["val"]])
        _check_follows(before_test, top["test"], s, e, embargo, ("train/val", "test"), "")
    for k, fold in enumerate(split.folds or []):
        where = f"Fold {k}: "
        parts = {
            part: _indices(getattr(fold, part), part, where)
            for part in ("train", "val", "test", "purged")
        }
        _check_partition(parts, n, where, require_coverage=split.strategy == "purged-kfold")
        if chronological:
            _check_chronological_symbols(parts, s, e, tags, gap, split.spans_unit, where)
        _check_overlap(parts, s, e, purge, where)
        if split.strategy == "walk-forward":
            _check_follows(parts["train"], parts["test"], s, e, embargo, ("train", "test"), where)
        if split.strategy == "purged-kfold" and parts["test"].size:
            hi = e[parts["test"]].max()
            train = parts["train"]
            bad = train[(s[train] > hi) & (s[train] <= hi + embargo)]
            if bad.size:
                raise LeakageError(
                    f"{where}{bad.size} train sample(s) start within embargo={embargo} after "
                    f"the test fold ends at {hi}, first {np.sort(bad)[:_SHOW].tolist()}; "
                    "drop them (embargo)."
                )
