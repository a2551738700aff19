"""Messages to people: signals, denials, halts and errors posted to a webhook.

:class:`WebhookNotifier` posts a Telegram-compatible JSON body (``{"chat_id", "text",
"parse_mode": "HTML", "disable_notification"}``) to a URL: Telegram's
``https://api.telegram.org/bot<TOKEN>/sendMessage`` or any webhook that takes the same
body. A notifier is a bystander of the trading loop: it retries what may pass later
(timeouts, dropped connections, HTTP 429 after its ``Retry-After``, 5xx) with exponential
backoff, gives up at once on other refusals, and never raises: each call returns True
when the message was delivered and False (with a logged warning) when it gave up.

The URL may hold a bot token, so logs and ``repr`` name its host only. Values put into
a message are HTML-escaped; text beyond Telegram's 4096 characters is cut.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from moola.core.errors import ConfigError
from moola.runtime import retry

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # Telegram's limit on a message's text


class WebhookNotifier:
    """Posts messages to a Telegram-compatible webhook; never raises into the caller.

    Parameters
    ----------
    url : str
        Where to POST (http or https).
    chat_id : int or str, optional
        Telegram's chat; left out of the body when None (a plain webhook).
    timeout : float
        Seconds per attempt.
    max_retries : int
        Retries after the first attempt.
    backoff : float
        First wait in seconds, doubled each retry.
    transport : httpx.BaseTransport, optional
        Passed to ``httpx.Client`` (a mock transport in tests).
    sleep : callable
        How to wait between retries (``time.sleep``).
    """

    def __init__(
        self,
        url: str,
        *,
        chat_id: int | str | None = None,
        timeout: float = 5.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (TypeError, httpx.InvalidURL):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError("url must be an http(s) URL of the webhook (e.g. Telegram's "
                              "https://api.telegram.org/bot<TOKEN>/sendMessage).")  # fmt: skip
        if not (isinstance(timeout, int | float) and timeout > 0):
            raise ConfigError(f"timeout must be a positive number of seconds; got {timeout!r}.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0; got {max_retries!r}.")
        if not (isinstance(backoff, int | float) and backoff >= 0):
            raise ConfigError(f"backoff must be a number of seconds >= 0; got {backoff!r}.")
        self._url = str(url)
        self.host = parsed.host
        self.chat_id = chat_id
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self._sleep = sleep
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), transport=transport)

    def __repr__(self) -> str:
        return f"WebhookNotifier(host={self.host!r}, chat_id={self.chat_id!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # ------------------------------------------------------------------ messages

    def signal(
        self,
        *,
        symbol: str,
        side: str,
        tier: str,
        probability: float,
        qty: float | None = None,
        price: float | None = None,
        bar_time: Any = None,
    ) -> bool:
        """A trade signal; only ``high``-tier signals make a sound."""
        lines = [
            f"<b>{_e(str(side).upper())} {_e(symbol)}</b> ({_e(tier)} tier, "
            f"p={_number(probability, 3)})"
        ]
        if qty is not None:
            lines.append(f"qty {_number(qty, 8)}" + (f" @ {_number(price, 2)}" if price else ""))
        if bar_time is not None:
            lines.append(f"bar {_e(str(bar_time))}")
        return self.send("\n".join(lines), silent=tier != "high")

    def denial(self, *, symbol: str, reasons: Sequence[str], side: str | None = None) -> bool:
        """An order the risk gate (or the broker) refused, with its reasons; silent."""
        head = f"<b>Denied</b> {_e(str(side).upper()) + ' ' if side else ''}{_e(symbol)}"
        return self.send("\n".join([head, *(f"- {_e(str(r))}" for r in reasons)]), silent=True)

    def halt(self, reason: str) -> bool:
        """Trading halted (a loss limit, the kill switch): loud."""
        return self.send(f"<b>HALT</b>: {_e(reason)}")

    def error(self, message: str) -> bool:
        """An error the engine stopped on or skipped over: loud."""
        return self.send(f"<b>Error</b>: {_e(message)}")

    def send(self, text: str, *, silent: bool = False) -> bool:
        """Post ``text`` (HTML, already escaped); True when delivered. Never raises."""
        try:
            return self._post(str(text)[:MAX_TEXT], silent)
        except Exception as exc:  # a notifier never takes the trading loop down
            log.warning("notifier %s failed: %s", self.host, type(exc).__name__)
            return False

    def _post(self, text: str, silent: bool) -> bool:
        payload: dict[str, Any] = {
            "text": text,
            "parse_mode": "HTML",
            "disable_notification": bool(silent),
        }
        if self.chat_id is not None:
            payload = {"chat_id": self.chat_id, **payload}
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            tried = retry.attempt(
                lambda: self._client.post(self._url, json=payload),
                number=attempt,
                backoff=self.backoff,
                timeout=self.timeout,
                retry_after=_retry_after,
            )
            last, delay, response = tried.failure, tried.delay, tried.response
            if response is not None:
                if response.status_code >= 400:
                    log.warning(
                        "notifier %s refused the message: HTTP %d %s",
                        self.host,
                        response.status_code,
                        _description(response),
                    )
                    return False
                if _ok(response):
                    return True
                log.warning("notifier %s answered ok=false: %s", self.host, _description(response))
                return False
            if attempt < self.max_retries:
                self._sleep(delay)
        log.warning(
            "notifier %s gave up after %d attempt(s); last: %s",
            self.host,
            self.max_retries + 1,
            last,
        )
        return False


def _e(value: Any) -> str:
    return html.escape(str(value), quote=False)


def _number(value: Any, digits: int) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _ok(response: httpx.Response) -> bool:
    """Telegram answers ``{"ok": true, ...}``; other webhooks any 2xx."""
    data = _json(response)
    return not (isinstance(data, dict) and data.get("ok") is False)


def _retry_after(response: httpx.Response) -> float:
    """Seconds to wait: the ``Retry-After`` header, or Telegram's
    ``parameters.retry_after``."""
    header = response.headers.get("Retry-After")
    data = _json(response)
    value: Any = header
    if value is None and isinstance(data, dict):
        value = (data.get("parameters") or {}).get("retry_after")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _description(response: httpx.Response) -> str:
    data = _json(response)
    if isinstance(data, dict) and data.get("description"):
        return str(data["description"])[:200]
    return response.reason_phrase
