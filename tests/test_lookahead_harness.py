"""The no-lookahead harness: every registered feature passes it, and it catches leaks."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.features import FEATURES, Feature, create_feature
from moola.features.indicators import EMA
from moola.testing import check_feature, check_incremental, check_label


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """FX-calendar 1-minute bars from a Friday morning, so a weekend gap is inside."""
    config = SyntheticMarketConfig(
        n_bars=3_000, seed=5, calendar="fx", start=datetime(2024, 1, 5, 12, tzinfo=UTC)
    )
    return generate_market(config).bars


# ----------------------------------------------------------------- every registered feature


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_every_registered_feature_sees_no_future(market, name):
    check_feature(create_feature(name), market, n_cuts=20, seed=1)


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_every_registered_feature_streams_like_batch(market, name):
    """Streaming from a buffer of lookback() bars reproduces batch: lookback() is right."""
    check_incremental(create_feature(name), market, start=len(market) - 60)


# ----------------------------------------------------------------- leaks it must catch


class _Leaky(Feature):
    """Test double: a close-based column with a configurable (mis)behaviour."""

    name = "leaky"

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def columns(self) -> tuple[str, ...]:
        return ("value",)

    def lookback(self) -> int:
        return 20

    def compute(self, bars: pd.DataFrame) -> pd.DataFrame:
        close = bars["close"]
        if self.how == "next_close":
            value = close.shift(-1)
        elif self.how == "zscore":
            value = (close - close.mean()) / close.std()
        elif self.how == "bfill":
            value = close.rolling(20).mean().bfill()
        elif self.how == "centred":
            value = close.rolling(21, center=True).mean()
        else:
            value = close.rolling(20).mean()
        return pd.DataFrame({"value": value}, index=bars.index)


@pytest.mark.parametrize("how", ["next_close", "zscore", "bfill", "centred"])
def test_check_feature_catches_a_leak_and_names_it(market, how):
    with pytest.raises(AssertionError, match=r"feature _Leaky\(\): column 'value' at bar \d+"):
        check_feature(_Leaky(how), market)


def test_check_feature_passes_an_honest_trailing_window(market):
    check_feature(_Leaky("trailing"), market)


def test_the_message_gives_both_values(market):
    with pytest.raises(AssertionError) as info:
        check_feature(_Leaky("zscore"), market, n_cuts=3)
    message = str(info.value)
    assert "computed from bars[: t + 1]" in message and "from all bars" in message


class _ShortMemoryEMA(EMA):
    """Claims an EMA needs only its period: wrong, its seed lingers for hundreds of bars."""

    def lookback(self) -> int:
        return self.params.period


def test_check_incremental_catches_a_lookback_that_is_too_short(market):
    feature = _ShortMemoryEMA(period=20)
    check_feature(feature, market)  # causal all the same
    with pytest.raises(AssertionError, match=r"column 'ema_20' at bar \d+ .*stream"):
        check_incremental(feature, market, start=len(market) - 50)


def test_check_feature_catches_output_not_aligned_with_bars(market):
    class Dropping(_Leaky):
        def compute(self, bars):
            return super().compute(bars).dropna()

    with pytest.raises(AssertionError, match="aligned with the bars"):
        check_feature(Dropping("trailing"), market)


# ----------------------------------------------------------------- labels


def _forward_return(horizon: int, recorded: int):
    """Sign of the return over ``horizon`` bars, recording ``recorded`` as its horizon."""

    def label(bars: pd.DataFrame) -> pd.DataFrame:
        close = bars["close"].to_numpy()
        n = len(close)
        value = np.full(n, np.nan)
        end = np.full(n, np.nan)
        if n > horizon:
            value[: n - horizon] = np.sign(close[horizon:] - close[:-horizon])
            end[: n - horizon] = np.arange(n - horizon) + recorded
        return pd.DataFrame({"direction": value, "horizon_end": end}, index=bars.index)

    return label


def test_check_label_passes_a_label_within_its_horizon(market):
    check_label(_forward_return(10, 10), market, "horizon_end")


def test_check_label_catches_a_label_that_looks_past_its_horizon(market):
    with pytest.raises(AssertionError, match="column 'direction' at bar"):
        check_label(_forward_return(10, 9), market, "horizon_end", name="direction")


def test_check_label_reads_timestamps_as_horizon_ends(market):
    def label(bars: pd.DataFrame) -> pd.DataFrame:
        out = _forward_return(5, 5)(bars)
        stamps = bars["timestamp"].to_numpy()
        ends = out["horizon_end"].to_numpy()
        defined = np.isfinite(ends)
        column = pd.Series(pd.NaT, index=bars.index, dtype="datetime64[ns, UTC]")
        column[defined] = pd.to_datetime(stamps[ends[defined].astype(int)], utc=True)
        return out.assign(horizon_end=column)

    check_label(label, market, "horizon_end")


def test_check_label_refuses_a_horizon_end_before_its_bar(market):
    with pytest.raises(AssertionError, match="before the row itself"):
        check_label(_forward_return(3, -1), market, "horizon_end")


class _FastPath(_Leaky):
    """An honest trailing mean whose fast path (``compute_rows``) may disagree with it."""

    def __init__(self, offset: float) -> None:
        super().__init__("trailing")
        self.offset = offset

    def compute_rows(self, bars: pd.DataFrame, dtype: np.dtype) -> np.ndarray:
        values = self.compute(bars)["value"].to_numpy(dtype=np.float64, copy=True)
        values[-1] += self.offset  # a fast path that is wrong on the last bar only
        return values.astype(dtype)[None]


def test_check_feature_holds_the_fast_path_to_compute(market):
    check_feature(_FastPath(0.0), market)
    with pytest.raises(AssertionError, match=r"compute_rows\(bars, float64\).*'value' at bar"):
        check_feature(_FastPath(1.0), market)
