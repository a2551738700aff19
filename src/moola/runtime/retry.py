"""One HTTP attempt of a retried call, shared by the broker adapter and the notifier.

Both retry the same failures with the same exponential backoff: a timeout, a dropped
connection, HTTP 429 (waiting at least its ``Retry-After``, capped at
``MAX_RETRY_AFTER_S``) and HTTP 5xx. :func:`attempt` sends once and says whether the
answer is final (any other status: the caller reads it, success or refusal) or what went
wrong and how long to wait before the next try; the caller keeps its own loop, logging and
what it does when the tries run out (raise, or give up quietly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import httpx

#: The longest a 429's Retry-After is honoured (a longer one waits this long).
MAX_RETRY_AFTER_S = 60.0


class Attempt(NamedTuple):
    """A final ``response`` (None when the try failed), else ``failure`` (what went wrong)
    and ``delay`` (seconds to wait before the next try)."""

    response: httpx.Response | None
    failure: str
    delay: float


def attempt(
    send: Callable[[], httpx.Response],
    *,
    number: int,
    backoff: float,
    timeout: float,
    retry_after: Callable[[httpx.Response], float],
) -> Attempt:
    """Send try ``number`` (0 first): the backoff doubles with each try, a 429 waits at
    least ``retry_after(response)`` seconds (capped)."""
    delay = backoff * 2**number
    try:
        response = send()
    except httpx.TimeoutException:
        return Attempt(None, f"timed out after {timeout:g} s", delay)
    except httpx.TransportError as exc:
        return Attempt(None, f"connection failed ({type(exc).__name__})", delay)
    status = response.status_code
    if status == 429:
        return Attempt(None, f"HTTP {status}", max(delay, min(retry_after(response),
                                                              MAX_RETRY_AFTER_S)))  # fmt: skip
    if status >= 500:
        return Attempt(None, f"HTTP {status}", delay)
    return Attempt(response, "", delay)


__all__ = ["MAX_RETRY_AFTER_S", "Attempt", "attempt"]
