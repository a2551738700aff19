"""``check_split``: a split strategy gives leakage-free, well-formed, reproducible splits.

A split that put one sample in two parts, or a training window that reached into the test
period, would make every score computed on it a lie, silently. ``moola.data.splits``
validates its own output (``validate_split``); this checker re-derives the guarantees
independently from the samples' spans, so a bug in the strategies and one in their
validator cannot hide each other. Run in CI with hypothesis over every strategy of
``moola.data.splits.STRATEGIES``. For the samples ``[starts[i], ends[i]]`` it requires:

- **well formed**: every index is an integer in ``0..n-1``; the recorded spans are the
  given ones;
- **no index in two parts**: train, val, test and purged are disjoint, at the top level
  and in each fold;
- **coverage as declared**: every sample is in train, val, test or purged; for
  ``purged-kfold`` each fold covers every sample too and the test folds partition them;
  for ``walk-forward`` each fold covers a run of consecutive samples (in time order)
  ending at its test block, and the last block ends at the last sample;
- **folds disjoint in their test parts**;
- **purge and embargo** (unless the split declares itself ``time_independent``): a
  fitted sample ``i`` and an evaluated sample ``j`` satisfy ``end_i + purge < start_j``
  (or, for training after the test fold, ``end_j + purge < start_i``); a part evaluated
  after another starts more than ``embargo`` after the other's last end; in
  ``purged-kfold`` no train sample starts within ``embargo`` after its test fold ends;
- **across symbols** (when the samples hold several: ``symbols=`` or ``Split.symbols``):
  the symbols recorded are the given ones, and no sample of any symbol reaches another
  symbol's later part. In chronological splits (all but ``purged-kfold``) every train
  (and val) sample of symbol A ends, plus ``max(purge, embargo)``, before the first
  val/test start of every symbol B; in ``purged-kfold`` no train sample of any symbol
  comes within ``purge`` of symbol B's test period ``[first start, last end]`` or starts
  within ``embargo`` after it. So the parts are cut at the same timestamps for every
  symbol: samples sharing a start time are never in a fitted and an evaluated part;
- **determinism**: building the split again from the same inputs gives the same content
  (``Split.content_hash``), and the builder does not modify ``starts``/``ends``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import MoolaError
from moola.data.splits import LEAKAGE_FREE_STRATEGIES, Split, make_split

SplitBuilder = Callable[[Any, Any], Split]
_SHOW = 5


def _times(values: Any, what: str) -> np.ndarray:
    """int64 time axis of ``values`` (datetimes become ns, as the strategies read them)."""
    if isinstance(values, (pd.Series, pd.Index)) and pd.api.types.is_datetime64_any_dtype(
        values.dtype
    ):
        return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8, dtype=np.int64)
    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").view(np.int64)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"check_split: {what} must be 1-D integers or datetimes")
    return array.astype(np.int64)


def _copy(values: Any) -> Any:
    return values.copy() if hasattr(values, "copy") else list(values)


def _same_input(a: Any, b: Any) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _build(
    split: Split | SplitBuilder, starts: Any, ends: Any, symbols: Any = None
) -> tuple[Split, Callable[[], Split] | None]:
    """The split under check and how to build it again from the same inputs (None when it
    cannot be: a built ``stratified`` split does not record its labels)."""
    if isinstance(split, Split):
        if split.strategy not in LEAKAGE_FREE_STRATEGIES:
            return split, None
        params = {"spans_unit": split.spans_unit, **split.params}
        if symbols is not None or split.symbols:
            params["symbols"] = _copy(symbols) if symbols is not None else list(split.symbols)

        def rebuild() -> Split:
            try:
                return make_split(split.strategy, _copy(starts), _copy(ends), **params)
            except MoolaError as error:
                raise AssertionError(
                    f"{split.strategy} split: cannot be rebuilt from its strategy and params "
                    f"{split.params}: {error}"
                ) from error

        return split, rebuild
    if not callable(split):
        raise TypeError(
            "check_split takes a moola.data.splits.Split or a builder "
            f"builder(starts, ends) -> Split, got {type(split).__name__}"
        )
    kept_starts, kept_ends = _copy(starts), _copy(ends)
    first = split(starts, ends)
    if not (_same_input(starts, kept_starts) and _same_input(ends, kept_ends)):
        raise AssertionError("the split builder modified the starts/ends it was given")
    if not isinstance(first, Split):
        raise AssertionError(f"the split builder returned {type(first).__name__}, not a Split")
    return first, lambda: split(_copy(kept_starts), _copy(kept_ends))


def _indices(values: list[int], n: int, where: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size and array.dtype.kind not in "iu":
        raise AssertionError(f"{where} holds non-integer indices ({array.dtype})")
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= n)]
    if bad.size:
        raise AssertionError(
            f"{where} holds {bad.size} index(es) outside 0..{n - 1}: {bad[:_SHOW].tolist()}"
        )
    return array


def _disjoint(parts: dict[str, np.ndarray], where: str) -> None:
    names = list(parts)
    for x, first in enumerate(names):
        for second in names[x:]:
            if first == second:
                values, counts = np.unique(parts[first], return_counts=True)
                both = values[counts > 1]
                what = f"twice in {first}"
            else:
                both = np.intersect1d(parts[first], parts[second])
                what = f"in both {first} and {second}"
            if both.size:
                raise AssertionError(
                    f"{where}{both.size} sample(s) are {what}, first {both[:_SHOW].tolist()}"
                )


def _covers(parts: dict[str, np.ndarray], n: int, where: str) -> None:
    missing = np.setdiff1d(np.arange(n), np.concatenate([*parts.values(), np.empty(0, int)]))
    if missing.size:
        raise AssertionError(
            f"{where}{missing.size} sample(s) are in no part and not purged, first "
            f"{missing[:_SHOW].tolist()}"
        )


def _conflicts(
    a: np.ndarray, b: np.ndarray, s: np.ndarray, e: np.ndarray, purge: int
) -> np.ndarray:
    """Indices of ``a`` with some ``j`` in ``b``: ``s_a <= e_j + purge`` and ``s_j <= e_a + purge``.

    ``b`` sorted by start; among those starting by ``e_a + purge`` (a prefix), the largest
    ``e_j + purge`` decides whether one reaches ``s_a``.
    """
    if a.size == 0 or b.size == 0:
        return a[:0]
    order = np.argsort(s[b], kind="stable")
    starts = s[b][order]
    reach = np.maximum.accumulate(e[b][order] + purge)
    last = np.searchsorted(starts, e[a] + purge, side="right") - 1
    hit = last >= 0
    hit[hit] = reach[last[hit]] >= s[a][hit]
    return a[hit]


def _separated(
    fitted: tuple[str, np.ndarray],
    evaluated: tuple[str, np.ndarray],
    s: np.ndarray,
    e: np.ndarray,
    purge: int,
    where: str,
) -> None:
    bad = _conflicts(fitted[1], evaluated[1], s, e, purge)
    if bad.size:
        i = int(bad[0])
        b = evaluated[1]
        j = int(b[(s[b] <= e[i] + purge) & (e[b] + purge >= s[i])][0])
        raise AssertionError(
            f"{where}{bad.size} {fitted[0]} sample(s) overlap or come within purge={purge} of "
            f"a {evaluated[0]} sample: {fitted[0]} {i} [{s[i]}, {e[i]}] vs {evaluated[0]} {j} "
            f"[{s[j]}, {e[j]}] (leakage)"
        )


def _after(
    earlier: tuple[str, np.ndarray],
    later: tuple[str, np.ndarray],
    s: np.ndarray,
    e: np.ndarray,
    gap: int,
    where: str,
) -> None:
    """Every ``later`` sample starts more than ``gap`` after the last ``earlier`` end."""
    if earlier[1].size == 0 or later[1].size == 0:
        return
    limit = int(e[earlier[1]].max()) + gap
    bad = later[1][s[later[1]] <= limit]
    if bad.size:
        raise AssertionError(
            f"{where}{bad.size} {later[0]} sample(s) start at or before {limit} (last "
            f"{earlier[0]} end {limit - gap} + embargo {gap}), first "
            f"{np.sort(bad)[:_SHOW].tolist()}"
        )


def _chronological(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Position of each sample in time order (start, then end, then index)."""
    order = np.lexsort((np.arange(s.size), e, s))
    position = np.empty(s.size, dtype=np.int64)
    position[order] = np.arange(s.size)
    return position


def _gap(split: Split, name: str) -> int:
    value = split.params.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise AssertionError(f"params[{name!r}] = {value!r} is not a non-negative integer")
    return int(value)


def _symbols(built: Split, symbols: Any, n: int, label: str) -> np.ndarray | None:
    """Each sample's symbol (given, else recorded), or None when there is one symbol."""
    recorded = list(built.symbols)
    if recorded and len(recorded) != n:
        raise AssertionError(f"{label}it records {len(recorded)} symbols for {n} samples")
    if symbols is None:
        return np.asarray(recorded, dtype=object) if recorded else None
    given = [str(value) for value in np.asarray(symbols, dtype=object).ravel().tolist()]
    if len(given) != n:
        raise ValueError(f"check_split: {len(given)} symbols for {n} samples")
    if len(set(given)) < 2:
        return None
    if recorded != given:
        raise AssertionError(
            f"{label}the symbols it records are not the given ones"
            + ("" if recorded else " (it records none: make it with symbols=...)")
        )
    return np.asarray(given, dtype=object)


def _before_across_symbols(
    fitted: tuple[str, np.ndarray],
    evaluated: tuple[str, np.ndarray],
    s: np.ndarray,
    e: np.ndarray,
    tags: np.ndarray,
    gap: int,
    where: str,
) -> None:
    """Every fitted sample of every symbol ends, plus ``gap``, before every symbol's first
    evaluated start."""
    for a in np.unique(tags[fitted[1]]):
        mine = fitted[1][tags[fitted[1]] == a]
        i = int(mine[np.argmax(e[mine])])
        for b in np.unique(tags[evaluated[1]]):
            theirs = evaluated[1][tags[evaluated[1]] == b]
            j = int(theirs[np.argmin(s[theirs])])
            if e[i] + gap >= s[j]:
                raise AssertionError(
                    f"{where}{fitted[0]} sample {i} of {a} ends at {e[i]} (+ purge/embargo "
                    f"{gap}), at or after {b}'s {evaluated[0]} start {s[j]} (sample {j}): "
                    "leakage across symbols"
                )


def _outside_across_symbols(
    train: np.ndarray,
    test: np.ndarray,
    s: np.ndarray,
    e: np.ndarray,
    tags: np.ndarray,
    purge: int,
    embargo: int,
    where: str,
) -> None:
    """No train sample of any symbol within ``purge`` of each symbol's test period, nor
    starting within ``embargo`` after it (purged k-fold trains on both sides)."""
    for b in np.unique(tags[test]):
        theirs = test[tags[test] == b]
        lo, hi = int(s[theirs].min()), int(e[theirs].max())
        near = (s[train] <= hi + purge) & (e[train] >= lo - purge)
        after = (s[train] > hi) & (s[train] <= hi + embargo)
        bad = train[near | after]
        if bad.size:
            i = int(bad[0])
            raise AssertionError(
                f"{where}train sample {i} of {tags[i]} [{s[i]}, {e[i]}] comes within "
                f"purge={purge}/embargo={embargo} of {b}'s test period [{lo}, {hi}]: leakage "
                "across symbols"
            )


def check_split(
    split: Split | SplitBuilder, starts: Any, ends: Any, *, symbols: Any = None
) -> Split:
    """Raise ``AssertionError`` unless ``split`` is a clean, reproducible split of the
    samples ``[starts[i], ends[i]]`` (see the module docstring for what is checked).

    Parameters
    ----------
    split : Split or callable
        A built ``moola.data.splits.Split`` (rebuilt through ``make_split`` from its
        strategy and params for the determinism check; a ``stratified`` split is not
        rebuilt, its labels are not recorded), or a builder ``builder(starts, ends) ->
        Split``, called twice, e.g. ``lambda s, e: make_split("walk-forward", s, e,
        n_splits=3, purge=2)``.
    starts, ends : array-like of int or datetime
        Each sample's inclusive span, in the split's unit (bar positions or timestamps).
    symbols : array-like of str, optional
        Each sample's symbol. With several (given here or recorded in ``Split.symbols``),
        the cross-symbol property is checked too, and a built split must record them.

    Returns
    -------
    Split
        The split checked.
    """
    s, e = _times(starts, "starts"), _times(ends, "ends")
    if s.shape != e.shape:
        raise ValueError(f"check_split: {s.size} starts but {e.size} ends")
    built, rebuild = _build(split, starts, ends, symbols)
    label = f"{built.strategy} split: "
    n = s.size
    tags = _symbols(built, symbols, n, label)
    if built.spans and (
        len(built.spans) != n
        or not np.array_equal(np.asarray(built.spans, dtype=np.int64).reshape(-1, 2), np.c_[s, e])
    ):
        raise AssertionError(f"{label}the recorded spans are not the given starts/ends")

    top = {
        part: _indices(getattr(built, part), n, f"{label}{part}")
        for part in ("train", "val", "test", "purged")
    }
    _disjoint(top, label)
    _covers(top, n, label)
    folds = built.folds or []
    fold_parts = []
    for k, fold in enumerate(folds):
        where = f"{label}fold {k}: "
        parts = {
            part: _indices(getattr(fold, part), n, f"{where}{part}")
            for part in ("train", "val", "test", "purged")
        }
        _disjoint(parts, where)
        fold_parts.append(parts)
    tests = {f"fold {k} test": parts["test"] for k, parts in enumerate(fold_parts)}
    _disjoint(tests, label)

    if built.strategy == "purged-kfold":
        for k, parts in enumerate(fold_parts):
            _covers(parts, n, f"{label}fold {k}: ")
        _covers(tests, n, f"{label}the test folds together: ")
    if built.strategy == "walk-forward" and fold_parts:
        position = _chronological(s, e)
        for k, parts in enumerate(fold_parts):
            members = np.sort(position[np.concatenate(list(parts.values()))])
            if members.size and members[-1] - members[0] + 1 != members.size:
                raise AssertionError(
                    f"{label}fold {k} does not cover a run of consecutive samples in time "
                    "(a sample inside its span is in no part and not purged)"
                )
        last = np.concatenate(list(fold_parts[-1].values()))
        if n and (last.size == 0 or position[last].max() != n - 1):
            raise AssertionError(f"{label}the last fold does not reach the last sample")

    if not built.time_independent:
        purge, embargo = _gap(built, "purge"), _gap(built, "embargo")
        # First, so a leak between symbols is reported as one.
        if tags is not None:
            gap = max(purge, embargo)
            chronological = [] if built.strategy == "purged-kfold" else [("", top)]
            for k, parts in enumerate(fold_parts):
                where = f"{label}fold {k}: "
                if built.strategy == "purged-kfold":
                    _outside_across_symbols(
                        parts["train"], parts["test"], s, e, tags, purge, embargo, where
                    )
                else:
                    chronological.append((where, parts))
            for where, parts in chronological:
                where = where or label
                fitted = ("train", parts["train"])
                _before_across_symbols(fitted, ("val", parts["val"]), s, e, tags, gap, where)
                fitted = ("train/val", np.r_[parts["train"], parts["val"]])
                _before_across_symbols(fitted, ("test", parts["test"]), s, e, tags, gap, where)

        chain = [("train", top["train"]), ("val", top["val"]), ("test", top["test"])]
        if folds:
            chain = [("train", top["train"])]  # the pool; the folds hold the parts
        for x, earlier in enumerate(chain):
            for later in chain[x + 1 :]:
                _separated(earlier, later, s, e, purge, label)
                _after(earlier, later, s, e, embargo, label)
        for k, parts in enumerate(fold_parts):
            where = f"{label}fold {k}: "
            train, val, test = parts["train"], parts["val"], parts["test"]
            _separated(("train", train), ("val", val), s, e, purge, where)
            _separated(("train", train), ("test", test), s, e, purge, where)
            _separated(("val", val), ("test", test), s, e, purge, where)
            if built.strategy == "purged-kfold":
                if test.size:
                    hi = int(e[test].max())
                    bad = train[(s[train] > hi) & (s[train] <= hi + embargo)]
                    if bad.size:
                        raise AssertionError(
                            f"{where}{bad.size} train sample(s) start within embargo={embargo} "
                            f"after the test fold ends at {hi}, first "
                            f"{np.sort(bad)[:_SHOW].tolist()}"
                        )
            else:
                _after(("train", train), ("val", val), s, e, embargo, where)
                _after(("train/val", np.r_[train, val]), ("test", test), s, e, embargo, where)
    again = None if rebuild is None else rebuild()
    if not isinstance(again, Split | None):
        raise AssertionError(f"the split builder returned {type(again).__name__}, not a Split")
    if again is not None and again.content_hash() != built.content_hash():
        first, second = built.model_dump(), again.model_dump()
        differ = [key for key in first if key != "name" and first[key] != second.get(key)]
        raise AssertionError(
            f"{label}building it twice from the same inputs gives different splits "
            f"(fields {differ}); a split must be deterministic"
        )
    return built
