"""Gaps by session calendar (issue 16): daily bars of an exchange skip weekends and
holidays, which are not gaps. Windows over bars ingested against a calendar
(``data ingest --calendar equities``) break only where the calendar expects a bar that is
missing; real S&P 500 and NASDAQ daily bars (shipped with ``arch``) give feature windows,
a regression run and a per-symbol backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError
from moola.data.calendars import get_calendar
from moola.data.registry import Registry
from moola.data.schema import make_bars
from moola.data.windows import window_starts
from moola.features.labels import build_labels
from moola.pipeline.backtests import backtest_symbols
from moola.pipeline.datasets import make_and_store_split
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.train import TrainConfig, run_training


def _daily(dates: pd.DatetimeIndex, symbol: str = "SPX") -> pd.DataFrame:
    close = 100.0 + np.arange(len(dates), dtype=float)
    return make_bars(dates, close, close + 1, close - 1, close, symbol=symbol, timeframe="1d")


def test_weekends_and_holidays_are_not_gaps_but_a_missing_trading_day_is():
    sessions = get_calendar("equities")
    dates = sessions.expected_times("2024-06-03", "2024-07-31", "1d")  # has 19 June, 4 July
    bars = _daily(dates)
    plain = window_starts(bars, 5)  # without a calendar every weekend breaks a window
    stamps = bars["timestamp"]
    assert all((stamps[s + 4] - stamps[s]).days == 4 for s in plain) and len(plain) < 10
    assert len(window_starts(bars, 5, calendar="equities")) == len(bars) - 4
    missing = bars.drop(index=10).reset_index(drop=True)  # one trading day lost
    starts = window_starts(missing, 5, calendar="equities")
    assert not any(s < 10 <= s + 4 for s in starts)  # no window spans the lost day
    assert len(starts) == len(missing) - 4 - 4
    saturday = pd.concat([bars.iloc[:3], _daily(pd.DatetimeIndex(["2024-06-08"], tz="UTC"))])
    saturday = pd.concat([saturday, bars.iloc[5:8]]).reset_index(drop=True)
    assert window_starts(saturday, 2, calendar="equities").tolist() == [0, 1, 4, 5]


@pytest.fixture
def indices(registry: Registry) -> Registry:
    """The first 800 daily bars of the S&P 500 and the NASDAQ composite, as ingested with
    ``--calendar equities``, with 5-day forward-return labels."""
    from arch.data import nasdaq, sp500

    for name, load in (("spx", sp500.load), ("ndx", nasdaq.load)):
        frame = load().iloc[:800]
        stamps = pd.to_datetime(frame.index).tz_localize("UTC")
        bars = make_bars(
            stamps,
            frame["Open"],
            frame["High"],
            frame["Low"],
            frame["Close"],
            frame["Volume"],
            symbol=name.upper(),
            timeframe="1d",
        )
        raw = ingest_bars(
            registry, bars, name=name, sources=[{"arch": name}], calendar="equities"
        ).ref
        labels = build_labels(bars, "forward-return", horizon=5)
        registry.write_table(
            "labels", f"{name}-fwd", labels, parents=[raw], meta={"target": "label"}
        )
    return registry


def test_real_daily_indices_give_windows_a_forecaster_and_a_backtest(indices):
    ref = build_feature_windows(
        indices,
        "spx,ndx",
        "daily24",
        name="idx",
        length=20,
        labels=["spx-fwd", "ndx-fwd"],
        targets=["forward_return"],
    )
    meta = indices.meta(ref)
    assert meta["excluded"]["gaps"] == 0 and meta["task"] == "regression"
    make_and_store_split(indices, ref, "walk-forward", name="idx-wf", n_splits=3, purge=5)
    config = TrainConfig(
        model="lightgbm",
        dataset="idx",
        split="idx-wf",
        params={"n_estimators": 30},
        n_bootstrap=20,
    )
    run = run_training(indices, config)
    assert run.manifest["metrics"]["per_symbol"].keys() == {"SPX", "NDX"}
    result = backtest_symbols(indices, run.run_id, hold_bars=5, threshold=0.0)
    assert set(result.results) == {"SPX", "NDX"}
    for _, record in result.results.values():
        assert record["leakage_check"]["leaky"] == 0
    assert set(result.portfolio["symbols"]) == {"SPX", "NDX"}


def test_without_its_calendar_every_weekend_of_daily_bars_is_a_gap(registry):
    sessions = get_calendar("equities")
    bars = _daily(sessions.expected_times("2021-01-04", "2024-12-31", "1d"))
    raw = ingest_bars(registry, bars, name="plain", sources=[{"t": 1}]).ref
    labels = build_labels(bars, "forward-return", horizon=5)
    registry.write_table("labels", "plain", labels, parents=[raw], meta={"target": "label"})
    with pytest.raises(ConfigError, match="excluded by gaps"):
        build_feature_windows(registry, "plain", "daily24", name="w", length=20, labels="plain")
