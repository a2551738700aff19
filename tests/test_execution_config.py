"""ExecutionConfig: one frozen set of execution terms, refused when wrong, hashed into every
backtest, read from flags or a YAML file, and built from the old keyword arguments."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from moola.backtest import run
from moola.cli.backtest import app
from moola.core.errors import ConfigError
from moola.core.settings import Settings
from moola.sim import (
    CommissionModel,
    ExecutionConfig,
    FixedBps,
    TotalLossLimit,
    futures_instrument,
)
from tests.conftest import random_walk_bars

NQ_TERMS = {
    "instrument": "futures:NQ",
    "initial_cash": 500_000.0,
    "commission": {"per_unit": 2.5},
    "spread": 0.25,
    "slippage": 1.0,
    "latency_bars": 2,
    "rules": [{"rule": "total_loss_limit", "pct": 0.1}],
}


@pytest.mark.parametrize(
    ("terms", "names"),
    [
        ({"comission": 0.001}, ["'comission'", "Did you mean 'commission'"]),
        ({"slippage": {"model": "fixed_bps", "bsp": 2}}, ["'bsp'", "Did you mean 'bps'"]),
        ({"commission": -0.001}, ["commission.rate", "greater than or equal to 0"]),
        ({"commission": {"per_unit": -1}}, ["commission.per_unit"]),
        ({"spread": -0.25}, ["spread", ">= 0"]),
        ({"slippage": -1.0}, ["slippage", "bps"]),
        ({"initial_cash": 0}, ["initial_cash"]),
        ({"latency_bars": 0}, ["latency_bars"]),
        ({"engine": "events"}, ["Did you mean 'event'"]),
        ({"instrument": "crpyto"}, ["Did you mean 'crypto'"]),
        ({"rules": [{"rule": "daily_loss_limit", "pct": 1.5}]}, ["pct", "less than or equal to 1"]),
        ({"rules": [{"rule": "minimum_trading_days", "days": 0}]}, ["days"]),
        ({"rules": [{"rule": "total_loss_limit", "timezone": "UTC"}]}, ["'timezone'"]),
        ({"timezone": "Mars/Olympus"}, ["Mars/Olympus"]),
    ],
)
def test_wrong_terms_are_refused_naming_the_key(terms, names) -> None:
    with pytest.raises(ConfigError) as caught:
        ExecutionConfig(**terms)
    for name in names:
        assert name in str(caught.value)


def test_the_config_is_frozen_and_its_hash_is_its_content() -> None:
    config = ExecutionConfig(**NQ_TERMS)
    with pytest.raises(ValueError, match="frozen"):
        config.spread = 0.5  # type: ignore[misc]
    again = ExecutionConfig.model_validate(json.loads(config.model_dump_json()))
    assert again == config and again.config_hash == config.config_hash
    assert config.config_hash.startswith("sha256:")
    assert ExecutionConfig(**{**NQ_TERMS, "spread": 0.5}).config_hash != config.config_hash
    assert ExecutionConfig().config_hash != config.config_hash


# Hashes taken before ``on_breach`` existed: a config that leaves it at its default must
# keep them, or every recorded backtest would lose its identity.
PINNED_HASHES = {
    "sha256:cfc5f5672537e889a64c0e041e91ed8528514c1ae7999d4971fe8c54044a75ef": {},
    "sha256:e682f7703025ed2d96996ac5b2908dec9d74546be215ca38085cb079e283416d": {
        "engine": "event",
        "rules": "none",
        "commission": 0.0005,
        "slippage": 1.0,
        "spread": 0.01,
        "latency_bars": 2,
    },
}


@pytest.mark.parametrize("expected", sorted(PINNED_HASHES))
def test_configs_from_before_on_breach_keep_their_hash(expected) -> None:
    terms = PINNED_HASHES[expected]
    assert ExecutionConfig(**terms).config_hash == expected
    assert ExecutionConfig(**terms, on_breach="record").config_hash == expected
    halting = ExecutionConfig(**{**terms, "engine": "event"}, on_breach="halt")
    assert halting.config_hash not in PINNED_HASHES  # a new choice is a new identity


def test_on_breach_is_checked_against_the_engine() -> None:
    assert ExecutionConfig().on_breach == "record"
    for choice in ("halt", "flatten"):
        assert ExecutionConfig(engine="event", on_breach=choice).on_breach == choice
        with pytest.raises(ConfigError) as caught:
            ExecutionConfig(on_breach=choice)  # the vectorised engine cannot stop mid-run
        assert "on_breach" in str(caught.value) and "engine='event'" in str(caught.value)
    with pytest.raises(ConfigError, match="Did you mean 'halt'"):
        ExecutionConfig(engine="event", on_breach="hlat")


def test_old_keyword_arguments_build_the_same_config_and_the_same_backtest() -> None:
    bars = random_walk_bars(300, symbol="NQ", timeframe="1h", seed=1)
    positions = np.where(np.arange(300) % 40 < 20, 1.0, -1.0)
    old = {
        "instrument": futures_instrument("NQ"),
        "initial_cash": 500_000.0,
        "commission": CommissionModel(per_unit=2.5),
        "spread": 0.25,
        "slippage": FixedBps(1.0),
        "latency_bars": 2,
        "prop_firm_rules": [TotalLossLimit(0.1)],
    }
    with pytest.warns(DeprecationWarning, match="execution=moola.sim.ExecutionConfig"):
        legacy = run(bars, positions, **old)
    config = ExecutionConfig.from_terms(**old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = run(bars, positions, config)
    assert legacy.stats == new.stats and len(new.trades) > 5
    assert legacy.config["execution_hash"] == new.config["execution_hash"] == config.config_hash
    assert new.config["execution"] == config.model_dump(mode="json")
    with pytest.raises(ConfigError, match="not both"):
        run(bars, positions, config, spread=0.25)
    with pytest.raises(ConfigError, match="Did you mean 'latency_bars'"):
        run(bars, positions, latency_bar=2)


def test_a_latency_longer_than_the_data_is_refused() -> None:
    bars = random_walk_bars(5)
    with pytest.raises(ConfigError, match="latency_bars=5 but there are only 5 bars"):
        run(bars, np.ones(5), ExecutionConfig(latency_bars=5, rules="none"))
    run(bars, np.ones(5), ExecutionConfig(latency_bars=4, rules="none"))  # bar 0 -> bar 4


def test_yaml_file_loads_and_unknown_keys_name_the_file(tmp_path) -> None:
    good = tmp_path / "nq.yaml"
    good.write_text(
        "instrument: futures:NQ\ninitial_cash: 500000\ncommission: {per_unit: 2.5}\n"
        "spread: 0.25\nslippage: 1.0\nlatency_bars: 2\n"
        "rules:\n  - {rule: total_loss_limit, pct: 0.1}\n"
    )
    assert ExecutionConfig.from_yaml(good) == ExecutionConfig(**NQ_TERMS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("spread: 0.25\nlatency: 2\n")
    with pytest.raises(ConfigError) as caught:
        ExecutionConfig.from_yaml(bad)
    assert str(bad) in str(caught.value) and "'latency'" in str(caught.value)
    assert "Did you mean 'latency_bars'" in str(caught.value)


def test_cli_builds_the_config_from_a_file_and_flags(tmp_path) -> None:
    bars = random_walk_bars(400, symbol="ES", timeframe="1h")
    bars_path = tmp_path / "es.csv"
    bars[["timestamp", "open", "high", "low", "close", "volume"]].to_csv(bars_path, index=False)
    signals = bars[["timestamp"]].assign(position=np.where(np.arange(400) % 30 < 15, 1.0, 0.0))
    signals_path = tmp_path / "signals.csv"
    signals.to_csv(signals_path, index=False)
    terms = tmp_path / "terms.yaml"
    terms.write_text("initial_cash: 50000\nspread: 0.02\nlatency_bars: 2\nrules: none\n")
    runner = CliRunner()

    def invoke(out: str, *extra: str):
        args = ["--bars", str(bars_path), "--signals", str(signals_path), "--symbol", "ES"]
        args += ["--timeframe", "1h"]
        args += ["--out", str(tmp_path / out), *extra]
        return runner.invoke(app, args, obj=Settings(home=tmp_path / "home"))

    result = invoke("a", "--execution", str(terms), "--commission", "0.0005")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "a" / "config.json").read_text())
    expected = ExecutionConfig(
        initial_cash=50_000.0, spread=0.02, latency_bars=2, rules=[], commission=0.0005
    )
    assert written["execution_hash"] == expected.config_hash
    assert written["latency_bars"] == 2 and written["initial_cash"] == 50_000.0
    terms.write_text("spread: 0.02\nlatency_bar: 2\n")
    result = invoke("b", "--execution", str(terms))
    assert isinstance(result.exception, ConfigError)
    assert str(terms) in str(result.exception) and "'latency_bar'" in str(result.exception)
    assert not (tmp_path / "b").exists()
    result = invoke("c", "--cash", "0")  # a refused flag value names the flag
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith("--cash: ") and "initial_cash" in str(result.exception)
    assert not (tmp_path / "c").exists()


def test_every_entry_point_reads_terms_one_way():
    config = ExecutionConfig(latency_bars=2)
    assert ExecutionConfig.of(config) is config
    assert ExecutionConfig.of({"latency_bars": 2}) == config
    assert ExecutionConfig.of(None) == ExecutionConfig()
    with pytest.raises(ConfigError, match=r"execution must be a moola\.sim\.ExecutionConfig"):
        ExecutionConfig.of(3)
    with pytest.raises(ConfigError, match="latncy_bars"):
        ExecutionConfig.of({"latncy_bars": 2})
