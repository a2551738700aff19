"""Several correlated symbols from one synthetic market config (issue 16, Many symbols):
one raw dataset, one shared time grid, returns correlated as asked, patterns per symbol."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from moola.data.registry import Registry
from moola.data.sources.synthetic import SyntheticMarket, SyntheticMarketConfig, generate_market
from moola.data.validation import validate_bars
from moola.data.windows import window_starts
from moola.pipeline.datasets import planted_labeled, planted_labels_file, synthesize_raw
from tests.test_cli import run
from tests.test_synthetic import _digest

CRYPTO = ("BTC-USD", "ETH-USD", "SOL-USD")


def _returns(bars: pd.DataFrame) -> pd.DataFrame:
    """1-bar log returns, one column per symbol (rows: the shared timestamps)."""
    close = bars.pivot(index="timestamp", columns="symbol", values="close")
    return np.log(close).diff().iloc[1:]


def _corr_and_se(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sample correlation and its standard error from the sample itself (delta method for
    non-normal data: var(r) ~ var(xy - r (x^2 + y^2) / 2) / n on standardised x, y), so a
    fat-tailed, volatility-clustered series gets the wider error it really has."""
    x = (x - x.mean()) / x.std()
    y = (y - y.mean()) / y.std()
    r = float(np.mean(x * y))
    influence = x * y - r * (x**2 + y**2) / 2.0
    return r, float(influence.std() / np.sqrt(x.size))


# --------------------------------------------------------------------------- one symbol


# Digest of the generator's market before ``symbols`` existed (also pinned in
# test_synthetic.py): one symbol, given either way, keeps stored datasets byte for byte.
_ONE_SYMBOL = {"n_bars": 20_000, "n_patterns": 40, "seed": 11}
_ONE_SYMBOL_DIGEST = "93bb1dbb9ee7ee7cc82dd28db132771d4cbbb2c6913c2e6b38119f1450fae2b2"


def test_one_symbol_markets_are_unchanged_bit_for_bit() -> None:
    assert _digest(generate_market(SyntheticMarketConfig(**_ONE_SYMBOL))) == _ONE_SYMBOL_DIGEST
    same = SyntheticMarketConfig(symbols=("SYN",), **_ONE_SYMBOL)
    assert _digest(generate_market(same)) == _ONE_SYMBOL_DIGEST
    named = generate_market(SyntheticMarketConfig(symbol="BTC-USD", **_ONE_SYMBOL))
    listed = generate_market(SyntheticMarketConfig(symbols=("BTC-USD",), **_ONE_SYMBOL))
    assert _digest(named) == _digest(listed)


def test_one_symbol_dataset_keeps_its_recorded_config(tmp_path) -> None:
    """The manifest's config (and hash) of a one-symbol market is the one recorded before
    several symbols existed, so stored datasets are not re-identified."""
    registry = Registry(tmp_path)
    ref, _ = synthesize_raw(registry, "one", n_bars=3_000, calendar="crypto", n_patterns=5)
    manifest = json.loads((registry.dataset_dir("raw", ref.name, 1) / "manifest.json").read_text())
    (source,) = [s for s in manifest["sources"] if s.get("generator")]
    assert "symbols" not in source["config"] and "correlation" not in source["config"]
    expected = "sha256:2b8d6d2871e177d4822d4e5915019e8bb5f151d1849a1299f789f73f2f57b9a8"
    assert source["config_hash"] == expected


# --------------------------------------------------------------------------- several symbols


@pytest.fixture(scope="module")
def crypto() -> SyntheticMarket:
    config = SyntheticMarketConfig(
        symbols=CRYPTO, n_bars=4_000, calendar="crypto", n_patterns=4, seed=3
    )
    return generate_market(config)


@pytest.mark.parametrize("calendar", ["crypto", "fx", "futures"])
def test_every_bar_is_canonical_and_symbols_share_one_time_grid(calendar: str) -> None:
    config = SyntheticMarketConfig(
        symbols=CRYPTO, n_bars=3_000, calendar=calendar, n_patterns=3, seed=1
    )
    bars = generate_market(config).bars
    checked, report = validate_bars(bars, mode="strict")  # raises on any broken rule
    pd.testing.assert_frame_equal(checked, bars)
    assert report.violations == () and report.n_output == 3 * 3_000
    assert list(bars["symbol"].unique()) == sorted(CRYPTO)  # sorted by symbol, then time
    stamps = [group["timestamp"].to_numpy() for _, group in bars.groupby("symbol")]
    assert all(len(s) == 3_000 and np.array_equal(s, stamps[0]) for s in stamps)
    # windows never cross from one symbol into the next
    starts = window_starts(bars, 105, stride=50)
    assert (bars["symbol"].to_numpy()[starts] == bars["symbol"].to_numpy()[starts + 104]).all()


def test_symbols_have_distinct_levels_and_volatilities(crypto: SyntheticMarket) -> None:
    first = crypto.bars.groupby("symbol")["open"].first()
    assert first.to_dict() == {"BTC-USD": 15_000.0, "ETH-USD": 7_500.0, "SOL-USD": 3_750.0}
    vol = _returns(crypto.bars).std()
    assert vol["BTC-USD"] < vol["ETH-USD"] < vol["SOL-USD"]


@pytest.mark.parametrize("rho", [0.7, 0.2, -0.3])
def test_realised_correlation_matches_the_request_within_sampling_error(rho: float) -> None:
    config = SyntheticMarketConfig(
        symbols=CRYPTO, correlation=rho, n_bars=40_000, calendar="crypto", seed=7
    )
    returns = _returns(generate_market(config).bars).to_numpy()
    for i, j in ((0, 1), (0, 2), (1, 2)):
        r, se = _corr_and_se(returns[:, i], returns[:, j])
        assert abs(r - rho) < 4.5 * se, (i, j, r, se)


def test_a_full_correlation_matrix_is_followed_pair_by_pair() -> None:
    matrix = ((1.0, 0.8, -0.2), (0.8, 1.0, 0.1), (-0.2, 0.1, 1.0))
    config = SyntheticMarketConfig(
        symbols=CRYPTO, correlation=matrix, n_bars=40_000, calendar="fx", seed=2
    )
    returns = _returns(generate_market(config).bars).to_numpy()
    for i, j in ((0, 1), (0, 2), (1, 2)):
        r, se = _corr_and_se(returns[:, i], returns[:, j])
        assert abs(r - matrix[i][j]) < 4.5 * se, (i, j, r, se)


def test_same_seed_same_bytes_and_another_seed_other_bars(crypto: SyntheticMarket) -> None:
    again = generate_market(crypto.config)
    assert _digest(again) == _digest(crypto)
    other = generate_market(crypto.config.model_copy(update={"seed": 4}))
    assert _digest(other) != _digest(crypto)


def test_symbol_order_does_not_change_any_symbols_path() -> None:
    """Listing the same symbols in another order (with their settings reordered to match)
    gives the same bars and patterns byte for byte."""
    matrix = ((1.0, 0.8, 0.5), (0.8, 1.0, 0.3), (0.5, 0.3, 1.0))
    base = {"n_bars": 2_000, "calendar": "crypto", "n_patterns": 2, "seed": 9}
    config = SyntheticMarketConfig(
        symbols=CRYPTO, correlation=matrix, start_prices=(40_000.0, 2_000.0, 100.0), **base
    )
    order = [2, 0, 1]
    reordered = SyntheticMarketConfig(
        symbols=tuple(CRYPTO[i] for i in order),
        correlation=tuple(tuple(matrix[i][j] for j in order) for i in order),
        start_prices=tuple((40_000.0, 2_000.0, 100.0)[i] for i in order),
        **base,
    )
    assert _digest(generate_market(config)) == _digest(generate_market(reordered))
    assert generate_market(config).bars.groupby("symbol")["open"].first()["SOL-USD"] == 100.0


def test_patterns_are_planted_per_symbol_and_name_it(crypto: SyntheticMarket) -> None:
    patterns, bars = crypto.patterns, crypto.bars
    assert patterns.groupby("symbol").size().to_dict() == dict.fromkeys(CRYPTO, 4)
    assert (bars["symbol"].to_numpy()[patterns["start"]] == patterns["symbol"].to_numpy()).all()
    assert (bars["symbol"].to_numpy()[patterns["end"]] == patterns["symbol"].to_numpy()).all()
    assert (bars["timestamp"].to_numpy()[patterns["start"]] == patterns["start_ts"]).all()
    labels = planted_labels_file(crypto)
    assert list(labels.columns) == ["symbol", "start_ts", "label", "source"]
    assert labels["symbol"].tolist() == patterns["symbol"].astype(str).tolist()


def test_planted_windows_of_several_symbols_store_as_labeled(tmp_path) -> None:
    registry = Registry(tmp_path)
    raw, market = synthesize_raw(
        registry, "c3", n_bars=3_000, symbols=CRYPTO, calendar="crypto", n_patterns=3
    )
    stored = registry.load_raw(raw.name, raw.version)
    pd.testing.assert_frame_equal(stored, market.bars, check_dtype=False)
    labeled = planted_labeled(registry, "c3-planted", raw, market)
    windows = pd.read_parquet(
        registry.dataset_dir("labeled", labeled.name, labeled.version) / "windows.parquet"
    )
    assert sorted(windows["symbol"].astype(str).unique()) == sorted(CRYPTO)
    assert len(windows) == 9


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"symbols": CRYPTO, "correlation": 1.0}, "correlation"),
        ({"symbols": CRYPTO, "correlation": -0.6}, "correlation -0.6 is not positive definite"),
        ({"symbols": CRYPTO, "correlation": ((1.0, 0.5), (0.5, 1.0))}, "3x3"),
        (
            {"symbols": CRYPTO, "correlation": ((1, 0.5, 0), (0.4, 1, 0), (0, 0, 1))},
            "symmetric",
        ),
        (
            {"symbols": CRYPTO, "correlation": ((1, 0.9, -0.9), (0.9, 1, 0.9), (-0.9, 0.9, 1))},
            "not positive definite",
        ),
        ({"symbols": ("A", "B", "A")}, "'A'"),
        ({"symbols": ("A", " ")}, "empty"),
        ({"symbols": ("A", "B"), "symbol": "A"}, "symbol 'A' and symbols"),
        ({"symbols": ("A", "B"), "start_prices": (1.0,)}, "start_prices"),
        ({"symbols": ("A", "B"), "annual_vols": (0.2, -1.0)}, "annual_vols"),
    ],
)
def test_bad_symbol_settings_are_refused_by_name(overrides: dict, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        SyntheticMarketConfig(n_bars=100, **overrides)


# --------------------------------------------------------------------------- CLI


def test_cli_synth_symbols_stores_correlated_symbols(capsys, tmp_path) -> None:
    root = str(tmp_path / "root")
    code, out, err = run(
        capsys, "--data-root", root, "data", "synth", "--name", "c3",
        "--symbols", ",".join(CRYPTO), "--timeframe", "1m", "--bars", "2000",
        "--calendar", "crypto", "--correlation", "0.5", "--patterns", "2",
        "--labels-out", str(tmp_path / "planted.csv"),
    )  # fmt: skip
    assert code == 0, err
    assert "3 symbols (BTC-USD, ETH-USD, SOL-USD), 2,000 bars each" in out
    bars = Registry(tmp_path / "root").load_raw("c3", 1)
    assert bars.groupby("symbol").size().to_dict() == dict.fromkeys(CRYPTO, 2_000)
    labels = pd.read_csv(tmp_path / "planted.csv")
    assert labels["symbol"].value_counts().to_dict() == dict.fromkeys(CRYPTO, 2)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--symbol", "A", "--symbols", "A,B"), "--symbol and --symbols are both given"),
        (("--correlation", "0.5"), "--correlation sets how several symbols"),
        (("--symbols", "A,,B"), "--symbols 'A,,B' has an empty name"),
        (("--symbols", "A,B", "--correlation", "1.5"), "--correlation 1.5 must lie"),
    ],
)
def test_cli_synth_refuses_bad_symbol_flags(capsys, tmp_path, flags, message) -> None:
    root = tmp_path / "root"
    code, _, err = run(
        capsys, "--data-root", str(root), "data", "synth", "--name", "x", "--bars", "500", *flags
    )
    assert code != 0
    assert message in err
    assert not (root / "data" / "raw" / "x").exists()
