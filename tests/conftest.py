"""Shared fixtures: small canonical bar tables and an empty registry per test."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from moola.data.registry import Registry
from moola.data.schema import make_bars

# Hypothesis profiles: "default" keeps `make test` quick (tests that set their own
# max_examples keep it); HYPOTHESIS_PROFILE=fuzz (`make fuzz`) runs the input fuzz suite deep.
settings.register_profile("default", max_examples=12, deadline=None)
settings.register_profile("fuzz", max_examples=150, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def random_walk_bars(
    n: int, *, symbol: str = "TEST", start: str = "2024-01-01", timeframe: str = "1m", seed: int = 0
) -> pd.DataFrame:
    """Valid canonical bars: a seeded random walk with consistent OHLC."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.0005, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    stamps = pd.date_range(
        start, periods=n, freq=pd.Timedelta(timeframe.replace("m", "min")), tz="UTC"
    )
    volume = rng.integers(1, 100, n).astype(float)
    return make_bars(stamps, open_, high, low, close, volume, symbol=symbol, timeframe=timeframe)


def store_labeled_pair(registry: Registry) -> None:
    """Raws ``aaa`` and ``bbb`` (symbols AAA and BBB, 300 seeded one-minute bars on one time
    grid) and labels of the same names: the sign of each bar's 5-bar forward return."""
    from moola.features.labels import build_labels
    from moola.pipeline.ingest import ingest_bars

    for symbol, seed in (("AAA", 1), ("BBB", 2)):
        bars = random_walk_bars(300, symbol=symbol, seed=seed)
        raw = ingest_bars(
            registry, bars, name=symbol.lower(), sources=[{"t": symbol}], mode="repair"
        ).ref
        labels = build_labels(bars.reset_index(drop=True), "forward-return", horizon=5)
        registry.write_table(
            "labels", symbol.lower(), labels, parents=[raw], meta={"target": "label"}
        )


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One torch thread for the whole suite: the test models are tiny and gain nothing
    from more, and on a busy 2-core machine spinning thread pools slow them down 10x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def bars() -> pd.DataFrame:
    return random_walk_bars(2_000)


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "moola_data")


@pytest.fixture(scope="session")
def sp500() -> pd.DataFrame:
    """Real prices: S&P 500 daily OHLCV 1999-2018 shipped by the ``arch`` package."""
    from arch.data import sp500 as source

    raw = source.load()
    stamps = pd.DatetimeIndex(raw.index).tz_localize("UTC")
    return make_bars(
        stamps,
        raw["Open"],
        raw["High"],
        raw["Low"],
        raw["Close"],
        raw["Volume"],
        symbol="SPX",
        timeframe="1d",
    )


@pytest.fixture(scope="session")
def tiny_labeled_windows() -> tuple[np.ndarray, np.ndarray]:
    """40 random-walk windows in the 11-channel relative view (105 steps), labels 0/1:
    enough for fine-tuning paths to run, not to learn anything."""
    from moola.features.window import relative_windows

    rng = np.random.default_rng(0)
    steps = rng.normal(0, 1e-3, size=(40, 106)).cumsum(axis=1)
    close = 100 * np.exp(steps)
    ohlc = np.stack([close[:, :-1], close[:, 1:] * 1.001, close[:, :-1] * 0.999, close[:, 1:]], -1)
    ohlc[:, :, 1] = ohlc.max(axis=2)
    ohlc[:, :, 2] = ohlc.min(axis=2)
    return relative_windows(ohlc), np.arange(40) % 2
