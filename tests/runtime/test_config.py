"""LiveConfig: a session's settings from YAML, typed and frozen; bad keys named with the file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from moola.core.errors import ConfigError
from moola.runtime.config import LiveConfig, load_live_config, parse_live_config

MINIMAL = {"symbols": ["BTC-USD"], "members": [{"role": "direction", "run": "r1"}]}


def _yaml(tmp_path, text: str):
    path = tmp_path / "live.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_signal_bots(tmp_path):
    config = load_live_config(
        _yaml(
            tmp_path,
            "symbols: [BTC-USD, ETH-USD]\n"
            "members:\n  - {role: direction, run: r1}\n  - {role: trend, run: r2}\n"
            "  - {role: rl, run: r3}\n",
        )
    )
    assert config.mode == "paper" and config.broker == "paper"
    assert config.weights == {"direction": 0.35, "trend": 0.40, "rl": 0.25}
    assert config.tiers.as_tuple() == (("high", 0.75), ("medium", 0.65), ("low", 0.55))
    assert config.rate_limits.limits() == {"all": (10, 3600), "high": (5, 3600)}
    risk = config.risk
    assert (risk.daily_loss, risk.total_loss, risk.risk_per_trade) == (0.05, 0.10, 0.01)
    assert config.journal_url is None and config.notifier_url is None


def test_the_resolved_config_and_its_hash_identify_the_session():
    a = parse_live_config(MINIMAL)
    b = parse_live_config({**MINIMAL, "timeframe": "1m", "calibration": True})
    assert a.resolved() == b.resolved() and a.config_hash == b.config_hash
    c = parse_live_config({**MINIMAL, "risk": {"risk_per_trade": 0.02}})
    assert c.config_hash != a.config_hash
    assert a.resolved()["execution"]["initial_cash"] == a.execution.initial_cash
    with pytest.raises(ValidationError):  # frozen
        a.mode = "live"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bogus: 1\n", "bogus"),
        ("risk: {daily_loss: 0}\n", "risk.daily_loss"),
        ("risk: {risk_per_trade: -0.01}\n", "risk.risk_per_trade"),
        ("risk: {max_open_positions: 0}\n", "risk.max_open_positions"),
        ("risk: {atr_multiple: 0}\n", "risk.atr_multiple"),
        ("execution: {comission: 0.001}\n", "comission"),
        ("tiers: {high: 0.6, medium: 0.65}\n", "tiers"),
        ("timeframe: 7q\n", "timeframe"),
        ("mode: live\n", "broker"),
        ("feed: {source: coinbase, poll_interval: 5}\n", "feed.poll_interval"),
        ("feed: {source: binance}\n", "feed.source"),
        ("feed: {granularity: 5m}\n", "feed.granularity"),
        ("feed: {lookback_bars: 0}\n", "feed.lookback_bars"),
        ("feed: {poll_seconds: 0}\n", "feed.poll_seconds"),
        ("coinbase: {max_slippage_bps: 0}\n", "coinbase.max_slippage_bps"),
        ("coinbase: {base_url: ftp://x}\n", "coinbase.base_url"),
        ("coinbase: {api_key: secret}\n", "coinbase.api_key"),
    ],
)
def test_a_bad_key_is_named_with_its_file(tmp_path, text, named):
    body = "symbols: [BTC-USD]\nmembers: [{role: direction, run: r1}]\n" + text
    path = _yaml(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_live_config(path)
    assert named in str(caught.value) and str(path) in str(caught.value)


def test_a_member_role_named_twice_is_refused():
    with pytest.raises(ConfigError, match="direction"):
        parse_live_config({"symbols": ["X"], "members": [{"role": "direction", "run": "a"}] * 2})


def test_with_mode_validates_again():
    config = parse_live_config({**MINIMAL, "broker": "coinbase"})
    assert config.with_mode("live").mode == "live"
    with pytest.raises(ConfigError, match="broker"):
        parse_live_config(MINIMAL).with_mode("live")
    assert isinstance(config.with_mode(None), LiveConfig)


def test_the_feed_section_polls_the_sessions_timeframe(tmp_path):
    config = load_live_config(
        _yaml(
            tmp_path,
            "symbols: [BTC-USD]\ntimeframe: 5m\nmembers: [{role: direction, run: r1}]\n"
            "feed: {source: coinbase, poll_seconds: 10, lookback_bars: 120}\n",
        )
    )
    feed = config.feed
    assert feed is not None and (feed.source, feed.poll_seconds, feed.lookback_bars) == (
        "coinbase",
        10.0,
        120,
    )
    assert feed.granularity is None  # the session's timeframe
    assert parse_live_config(MINIMAL).feed is None  # no feed: a session needs --replay
    assert config.coinbase.max_slippage_bps == 50.0
