"""WebhookNotifier against a local webhook: payload shape, retries, and never raising."""

from __future__ import annotations

import logging
import socket

import pytest

from moola.core.errors import ConfigError
from moola.runtime.notify import WebhookNotifier
from tests.runtime.fake_webhook import Hook

TOKEN = "123456:SECRET-bot-token"


@pytest.fixture
def hook():
    server = Hook(f"/bot{TOKEN}/sendMessage")
    yield server
    server.close()


@pytest.fixture
def sleeps():
    return []


def _notifier(url: str, sleeps: list, **kw) -> WebhookNotifier:
    kw = {"chat_id": -100123, "timeout": 2.0, "max_retries": 2, "backoff": 0.1, **kw}
    return WebhookNotifier(url, sleep=sleeps.append, **kw)


def test_signal_posts_a_telegram_payload(hook, sleeps):
    notifier = _notifier(hook.url, sleeps)
    assert notifier.signal(symbol="BTC-USD", side="buy", tier="high", probability=0.8123,
                           qty=0.015, price=50_000.0)  # fmt: skip
    assert notifier.signal(symbol="BTC-USD", side="sell", tier="low", probability=0.42)
    loud, quiet = hook.bodies
    assert loud == {
        "chat_id": -100123,
        "text": "<b>BUY BTC-USD</b> (high tier, p=0.812)\nqty 0.01500000 @ 50000.00",
        "parse_mode": "HTML",
        "disable_notification": False,
    }
    assert quiet["disable_notification"] is True and quiet["text"].startswith("<b>SELL BTC-USD")
    assert sleeps == []


def test_denials_halts_and_errors_escape_their_text(hook, sleeps):
    notifier = _notifier(hook.url, sleeps, chat_id=None)
    assert notifier.denial(symbol="ETH-USD", side="buy", reasons=["daily loss <5%> & more"])
    assert notifier.halt("total_loss_limit breached")
    assert notifier.error("broker <timeout>")
    denial, halt, error = hook.bodies
    assert "chat_id" not in denial and denial["disable_notification"] is True
    assert denial["text"] == "<b>Denied</b> BUY ETH-USD\n- daily loss &lt;5%&gt; &amp; more"
    assert halt["text"] == "<b>HALT</b>: total_loss_limit breached"
    assert halt["disable_notification"] is False
    assert error["text"] == "<b>Error</b>: broker &lt;timeout&gt;"


def test_retries_on_5xx_and_429_then_delivers(hook, sleeps):
    hook.script = [(500, {}, {}), (429, {"ok": False}, {"Retry-After": "4"})]
    assert _notifier(hook.url, sleeps).halt("x") is True
    assert len(hook.bodies) == 3 and sleeps == [0.1, 4.0]


def test_gives_up_returns_false_and_logs_without_the_token(hook, sleeps, caplog):
    hook.script = [(502, {}, {})] * 3
    with caplog.at_level(logging.WARNING, logger="moola.runtime.notify"):
        assert _notifier(hook.url, sleeps).error("down") is False
    assert len(hook.bodies) == 3 and sleeps == [0.1, 0.2]
    [record] = caplog.records
    assert "gave up after 3 attempt(s); last: HTTP 502" in record.getMessage()
    assert TOKEN not in record.getMessage() and TOKEN not in repr(_notifier(hook.url, []))


def test_a_refusal_is_not_retried(hook, sleeps, caplog):
    hook.script = [(400, {"ok": False, "description": "Bad Request: chat not found"}, {})]
    with caplog.at_level(logging.WARNING, logger="moola.runtime.notify"):
        assert _notifier(hook.url, sleeps).halt("x") is False
    assert len(hook.bodies) == 1 and sleeps == []
    assert "chat not found" in caplog.records[0].getMessage()
    hook.script = [(200, {"ok": False, "description": "Forbidden"}, {})]
    assert _notifier(hook.url, sleeps).halt("x") is False and len(hook.bodies) == 2


def test_an_unreachable_webhook_never_raises(sleeps):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notifier = _notifier(f"http://127.0.0.1:{port}/hook", sleeps, max_retries=1)
    assert notifier.signal(symbol="BTC-USD", side="buy", tier="high", probability=0.9) is False
    assert sleeps == [0.1]
    with pytest.raises(ConfigError, match="url must be an http"):
        WebhookNotifier("ftp://example.org/hook")
