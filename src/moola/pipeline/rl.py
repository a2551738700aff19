"""``moola rl``: reinforcement-learning runs from the registry, recorded like supervised runs.

Where the bars come from. An RL run names a windows dataset (feature windows from ``moola
data windows --features``, or windows over raw bars) and a split of it with train and val
parts by time (``forward-chaining``, or ``walk-forward`` with a final train/val/test cut).
The dataset says which raw bars, which feature set (feature windows; windows over raw bars
observe the built-in OHLCV returns) and how many bars an observation window holds; the
split says which bars belong to which period:

- the **training period** runs from the first bar of the first training window to the last
  bar of the last one; the agent trains on episodes inside it, and the observation scaler
  is fitted on its rows only;
- the **evaluation period** is the same span over the val part (``part="val"``), or over
  the test part for the one recorded look at it (``moola rl eval RUN --test``). Each period
  carries its own bars only: its first decisions wait for the observation window (and the
  features' warm-up) to fill from bars inside it, so nothing of one period is ever seen,
  traded or scored in another. An evaluation period that starts before the training
  period ends is refused (``LeakageError``), whatever the split file says.

Computing is apart from recording: :func:`load_rl_data` reads and checks, the environment,
agents and evaluation live in ``moola.rl`` (no I/O), and the run folder, checkpoints and
results line are written here through the tracking store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from moola.core.errors import ConfigError, LeakageError, RegistryError
from moola.data._manifest import DatasetRef
from moola.data.registry import Registry, parse_ref
from moola.data.splits import Split
from moola.features.featureset import FeatureSet, FeatureSetSpec, load_feature_set

#: Split parts an RL run can be evaluated on (the training part is what it learns from).
EVAL_PARTS: tuple[str, ...] = ("val", "test")


@dataclass(frozen=True)
class Period:
    """One period's bars of one symbol: ``bars`` (canonical, RangeIndex) and the open times
    of its first and last bar."""

    part: str
    bars: pd.DataFrame
    first: pd.Timestamp
    last: pd.Timestamp

    def record(self) -> dict[str, Any]:
        """What a manifest keeps of it: the part, its first and last bar, how many bars."""
        return {
            "part": self.part,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "bars": len(self.bars),
        }


@dataclass(frozen=True)
class RLData:
    """What an RL run learns from and is evaluated on, read and checked once.

    ``dataset`` and ``split`` are the pinned versions (their records go into the manifest),
    ``raw`` the bars' raw version, ``feature_set`` the observed features (None: the built-in
    OHLCV returns), ``window`` the bars one observation holds, ``train`` and ``evaluation``
    the two periods.
    """

    dataset: DatasetRef
    split: Split
    split_record: dict[str, Any]
    raw: DatasetRef
    symbol: str
    feature_set: FeatureSet | None
    window: int
    train: Period
    evaluation: Period

    def record(self) -> dict[str, Any]:
        """The data lineage of a run: dataset, split, raw bars, symbol, features, periods."""
        return {
            "dataset": self.dataset.to_dict(),
            "split": self.split_record,
            "raw": self.raw.to_dict(),
            "symbol": self.symbol,
            "feature_set": None if self.feature_set is None else self.feature_set.name,
            "window": self.window,
            "periods": {"train": self.train.record(), "evaluation": self.evaluation.record()},
        }


def _windows_dataset(registry: Registry, text: str) -> DatasetRef:
    """``NAME[@vN]`` of a labeled or unlabeled windows dataset."""
    name, version = parse_ref(text)
    kinds = [kind for kind in ("labeled", "unlabeled") if registry.versions(kind, name)]
    if not kinds:
        other = registry.kinds_of(name)
        what = f"a {' and '.join(other)} dataset" if other else "no dataset"
        raise ConfigError(
            f"Dataset {text!r} is {what}; an RL run reads a windows dataset (feature windows "
            "or windows over raw bars) and a time split of it.",
            param="dataset",
        )
    return registry.resolve(kinds[0], name, version)


def _feature_set(registry: Registry, meta: dict[str, Any]) -> FeatureSet | None:
    """The feature set a feature-windows dataset was computed with (None for raw windows)."""
    recorded = meta.get("features")
    if recorded is None:
        return None
    features = registry.resolve("features", recorded["name"], recorded["version"])
    spec = registry.meta(features).get("feature_set")
    if not isinstance(spec, dict):
        raise RegistryError(
            f"Feature table {features} does not record its feature set's spec; rebuild the "
            "feature windows with this moola."
        )
    return load_feature_set(FeatureSetSpec.model_validate(spec))


def _raw_versions(meta: dict[str, Any]) -> list[dict[str, Any]]:
    tables = meta.get("feature_tables")
    return [entry["raw"] for entry in tables] if tables else [meta["raw"]]


def _symbol_bars(
    registry: Registry, meta: dict[str, Any], symbol: str | None, symbols: np.ndarray
) -> tuple[DatasetRef, str, pd.DataFrame]:
    """The raw version holding ``symbol`` (default: the dataset's one symbol) and its bars."""
    known = sorted({str(s) for s in symbols})
    if symbol is None:
        if len(known) != 1:
            raise ConfigError(
                f"The dataset holds {len(known)} symbols ({', '.join(known)}); an RL run "
                "trades one: name it.",
                param="symbol",
            )
        symbol = known[0]
    elif symbol not in known:
        raise ConfigError(
            f"Symbol {symbol!r} is not in the dataset; it holds {', '.join(known)}.",
            param="symbol",
        )
    for raw in _raw_versions(meta):
        ref = registry.resolve("raw", raw["name"], raw["version"])
        if ref.content_hash != raw["content_hash"]:
            raise RegistryError(
                f"The windows refer to raw/{raw['name']}@v{raw['version']} with content hash "
                f"{raw['content_hash']}, but it now hashes to {ref.content_hash}."
            )
        bars = registry.load_raw(raw["name"], raw["version"])
        mine = bars[bars["symbol"].astype(str) == symbol]
        if len(mine):
            return ref, symbol, mine.reset_index(drop=True)
    raise RegistryError(f"No raw version of the dataset holds bars of {symbol!r}.")


def _period(
    part: str,
    indices: np.ndarray,
    bars: pd.DataFrame,
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    symbol: str,
    window: int,
) -> Period:
    symbols, starts, ends = spans
    mine = indices[symbols[indices] == symbol] if len(indices) else indices
    if not len(mine):
        raise ConfigError(
            f"The split's {part} part holds no window of {symbol}; an RL run needs both a "
            "train and a val part by time (forward-chaining, or walk-forward with a final "
            "train/val/test cut).",
            param="split",
        )
    first, last = int(starts[mine].min()), int(ends[mine].max())
    stamps = bars["timestamp"].to_numpy("datetime64[ns]").astype(np.int64)
    inside = (stamps >= first) & (stamps <= last)
    period = bars[inside].reset_index(drop=True)
    if len(period) < window + 1:
        raise ConfigError(
            f"The {part} period of {symbol} has {len(period)} bars; an episode needs at least "
            f"the observation window ({window}) plus one bar to trade.",
            param="split",
        )
    return Period(
        part,
        period,
        pd.Timestamp(period["timestamp"].iloc[0]),
        pd.Timestamp(period["timestamp"].iloc[-1]),
    )


def _parts(
    split: Split, name: str, part: str, fold: int | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Training and evaluation sample indices of ``split`` and the evaluated part's name."""
    if split.folds:
        if part == "test":
            raise ConfigError(
                f"Split {name} is a fold split: every fold's test part is an evaluation "
                "period, none is held out untouched. Make a forward-chaining split to hold "
                "out a test period.",
                param="part",
            )
        n = len(split.folds)
        k = n - 1 if fold is None else fold
        if not -n <= k < n:
            raise ConfigError(
                f"fold={fold}: split {name} has {n} folds (0..{n - 1}).", param="fold"
            )
        chosen = split.folds[k]
        return (
            np.asarray(chosen.train, dtype=np.int64),
            np.asarray(chosen.test, dtype=np.int64),
            f"fold {k % n} test",
        )
    if fold is not None:
        raise ConfigError(f"fold={fold}: split {name} has no folds.", param="fold")
    return (
        np.asarray(split.train, dtype=np.int64),
        np.asarray(getattr(split, part), dtype=np.int64),
        part,
    )


def load_rl_data(
    registry: Registry,
    dataset: str,
    split: str,
    *,
    symbol: str | None = None,
    part: str = "val",
    fold: int | None = None,
) -> RLData:
    """Read and check what an RL run trains and is evaluated on (module notes).

    ``part`` is the split part the evaluation period covers (``"val"`` or ``"test"``). A
    walk-forward split gives one fold's train and test parts instead (``fold``, default the
    last; its test part is the evaluation period, and ``part="test"`` is refused: such a
    split holds no untouched test part).
    Raises ``ConfigError`` naming ``dataset``, ``split``, ``symbol`` or ``part`` when the
    dataset is not a windows dataset, the split has no train or no such part, the symbol is
    unknown or ambiguous, or a period is shorter than one window plus a bar;
    ``LeakageError`` when the evaluation period starts before the training period ends.
    """
    if part not in EVAL_PARTS:
        raise ConfigError(
            f"part={part!r}: an RL run is evaluated on {' or '.join(EVAL_PARTS)}.", param="part"
        )
    ref = _windows_dataset(registry, dataset)
    split_obj, record = registry.load_split(split, expect_dataset=ref)
    train_idx, eval_idx, where = _parts(split_obj, split, part, fold)
    meta = registry.meta(ref)
    window = int(meta["length"])
    spans = registry.sample_windows(ref)
    raw, symbol, bars = _symbol_bars(registry, meta, symbol, spans[0])
    train = _period("train", train_idx, bars, spans, symbol, window)
    evaluation = _period(where, eval_idx, bars, spans, symbol, window)
    if evaluation.first <= train.last:
        raise LeakageError(
            f"The {evaluation.part} period of split {split} starts at {evaluation.first} but "
            f"the training period runs to {train.last}: the agent would be evaluated on bars "
            "it trained on. Make a split whose parts follow each other in time.",
            param="split",
        )
    return RLData(
        dataset=ref,
        split=split_obj,
        split_record=record,
        raw=raw,
        symbol=symbol,
        feature_set=_feature_set(registry, meta),
        window=window,
        train=train,
        evaluation=evaluation,
    )
