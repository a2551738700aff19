"""A tiny data root with a promoted run, for the runtime tests (built once per module)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.features.featureset import FeatureSetSpec, FeatureSpecEntry
from moola.features.labels import build_labels
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.feature_windows import build_feature_windows
from moola.pipeline.ingest import ingest_bars
from moola.pipeline.lifecycle import promote
from moola.pipeline.train import TrainConfig, run_training
from moola.runtime.config import LiveConfig, parse_live_config
from tests.conftest import random_walk_bars

SYMBOLS = ("BTC", "ETH")
#: ``SYMBOLS`` as Coinbase names its products.
PRODUCTS = {s: f"{s}-USD" for s in SYMBOLS}

#: A small feature set (a session computes ``intraday31`` unless its config names another).
SMALL = FeatureSetSpec(
    name="small",
    features=[
        FeatureSpecEntry(name="sma", params={"period": 5}),
        FeatureSpecEntry(name="rsi", params={"period": 3}, scale="robust"),
    ],
)


def build_lab(parent: Path, *, promoted: bool = True) -> tuple[Path, str]:
    """Data root with raw ``mkt`` (two symbols, 4,000 one-minute bars each) and a logistic
    regression on planted patterns (classes consolidation / retracement, 105-bar windows),
    promoted past open gates, Platt-calibrated. Returns (root, run id)."""
    registry = Registry(parent / "moola_data")
    raw, market = synthesize_raw(
        registry, "mkt", n_bars=4000, n_patterns=16, seed=4, symbols=SYMBOLS
    )
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    config = TrainConfig(
        model="logistic_regression", dataset="pat", split="kf", n_bootstrap=10, calibration="platt"
    )
    run_id = run_training(registry, config).run_id
    if promoted:
        promote(registry, run_id, GateConfig(min_accuracy=0.0, max_ece=1.0))
    return registry.root, run_id


def build_feature_lab(parent: Path, n_bars: int = 400) -> tuple[Path, str, pd.DataFrame]:
    """Data root with a promoted logistic regression on 10-row windows of ``SMALL`` (classes
    "-1" / "1": the sign of the 5-bar forward return) over ``n_bars`` one-minute BTC bars
    (raw ``mkt``). Returns (root, run id, the bars)."""
    registry = Registry(parent / "moola_data")
    bars = random_walk_bars(n_bars, symbol="BTC")
    raw = ingest_bars(registry, bars, name="mkt", sources=[{"test": "mkt"}], mode="repair").ref
    labels = build_labels(bars.reset_index(drop=True), "forward-return", horizon=5)
    registry.write_table("labels", "mkt", labels, parents=[raw], meta={"target": "label"})
    ref = build_feature_windows(registry, "mkt", SMALL, name="fw", length=10, labels="mkt")
    make_and_store_split(registry, ref, "walk-forward", name="wf", n_splits=3)
    config = TrainConfig(model="logistic_regression", dataset="fw", split="wf", n_bootstrap=10)
    run_id = run_training(registry, config).run_id
    promote(registry, run_id, GateConfig(min_accuracy=0.0, max_ece=1.0))
    return registry.root, run_id, bars.reset_index(drop=True)


def scripted_config(symbols: Iterable[str] = SYMBOLS, **overrides: Any) -> LiveConfig:
    """A session's config for the stand-in members below (one ``direction`` member, run
    ``scripted``) on ``symbols``: crypto, 100,000 in cash, no trading rules, positions up
    to 1,000 units, rate limits out of the way; ``overrides`` replace top-level keys."""
    values: dict[str, Any] = {
        "symbols": list(symbols),
        "members": [{"role": "direction", "run": "scripted"}],
        "execution": {"instrument": "crypto", "initial_cash": 100_000.0, "rules": "none"},
        "risk": {"max_position": 1000.0},
        "rate_limits": {"all_per_window": 1000, "high_per_window": 1000},
    }
    values.update(overrides)
    return parse_live_config(values)


def cli_session(tmp_path: Path, root: Path, run_id: str, monkeypatch: Any, extra: str = "") -> Path:
    """The CLI tests' paper session: ``MOOLA_HOME`` at ``root``, no kill switch or database
    variable from the caller's environment, and ``tmp_path/live.yaml`` (BTC and ETH, the
    promoted ``run_id`` as the direction member, the journal ``tmp_path/paper.db``) with
    ``extra`` YAML lines on top. Returns the config's path."""
    monkeypatch.setenv("MOOLA_HOME", str(root))
    for name in ("KILL_SWITCH", "DB_URL", "DB_URL_PAPER"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "live.yaml"
    config.write_text(
        "mode: paper\n"
        "symbols: [BTC, ETH]\n"
        "members:\n"
        f"  - {{role: direction, run: {run_id}, up_class: retracement}}\n"
        "execution: {instrument: crypto, initial_cash: 10000, rules: none}\n"
        "risk: {max_position: 5}\n"
        f"{extra}"
        f"journal_url: sqlite:///{tmp_path / 'paper.db'}\n",
        encoding="utf-8",
    )
    return config


def two_symbol_bars(n: int, seed: int, *, open_noise: float = 0.0) -> pd.DataFrame:
    """``n`` seeded one-minute random-walk bars of each of ``SYMBOLS`` (BTC about 100, ETH
    about 200), from 2024-01-01 UTC; ``open_noise`` moves each open off the previous close
    (a relative normal step), so an open is not the last close."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, symbol in enumerate(SYMBOLS):
        close = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        open_ = np.r_[close[0], close[:-1]]
        if open_noise:
            open_ = open_ * (1 + rng.normal(0, open_noise, n))
        spread = np.abs(rng.normal(0, 0.001, n)) * close
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
                    "open": open_,
                    "high": np.maximum(open_, close) + spread,
                    "low": np.minimum(open_, close) - spread,
                    "close": close,
                    "volume": rng.uniform(1, 10, n),
                    "symbol": symbol,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def product_bars(n: int, seed: int) -> pd.DataFrame:
    """``two_symbol_bars(n, seed)`` named by ``PRODUCTS`` (BTC-USD, ETH-USD)."""
    bars = two_symbol_bars(n, seed)
    bars["symbol"] = bars["symbol"].map(PRODUCTS)
    return bars


def last_closes(bars: pd.DataFrame) -> dict[str, float]:
    """Each symbol's last close in ``bars``: the prices to give a fake exchange, so that a
    buy's IOC cap above the last price holds."""
    return {s: float(frame["close"].iloc[-1]) for s, frame in bars.groupby("symbol", sort=False)}


@dataclass(frozen=True)
class MinuteFlip:
    """A stand-in member (fast to fork, no model): p(up) 0.9 for ``period`` minutes of bar
    time, then 0.1 for ``period``, so both symbols buy and sell several times in a short
    feed; None until ``bars_needed`` bars have been seen. ``period=None`` never flips: 0.9
    on every bar (``RISING``)."""

    period: int | None = 15
    name: str = "direction"
    run_id: str = "scripted"
    weight: float = 0.35
    bars_needed: int = 20
    rows_needed: int = 0

    def value(self, symbol, bars, rows):
        if len(bars) < self.bars_needed:
            return None
        if self.period is None:
            return 0.9
        minute = bars["timestamp"].iloc[-1].minute
        return 0.9 if (minute // self.period) % 2 == 0 else 0.1


#: p(up) 0.9 on every bar once 20 bars are in: the engine buys each symbol once, then holds.
RISING = MinuteFlip(period=None)


class Notes:
    """A notifier stand-in: what it was told, in order."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, kind):
        return lambda *args, **kwargs: self.calls.append((kind, args, kwargs)) or True


class Recorder:
    """``inner`` (a journal, a broker) with each call of the methods ``names`` kept in
    ``calls`` as (name, args, kwargs), in order, before it goes through."""

    def __init__(self, inner, *names: str):
        self._inner, self._names, self.calls = inner, names, []

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name not in self._names:
            return attr

        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return attr(*args, **kwargs)

        return call
