"""Signal rate limits: at most N signals in any window, overall and per tier.

Each limit is a token bucket of ``capacity`` tokens over ``window`` seconds; a signal
spends one token from every bucket that applies to it: ``"all"`` applies to every signal,
any other bucket to the signals of the tier of that name (``"high"``). The defaults are
the crypto signal bot's: 10 signals an hour, 5 of them high-tier.

Refill. A spent token comes back exactly one window after it was spent (each token
refills on its own clock), so no window of ``window`` seconds ever holds more than
``capacity`` signals, and a burst of ``capacity`` signals is allowed. A bucket refilling
continuously at ``capacity / window`` would break that promise: it starts full, so it lets
``capacity`` signals through at once and nearly ``capacity`` more before the hour is out
(up to ``2 * capacity - 1`` in one hour); "10 signals an hour" would mean 19.

A signal is allowed only when every bucket that applies has a token; a denied signal
spends nothing and the reason names the limit that denied it. Time only moves forward:
a ``now`` before the last one seen is refused (``ConfigError``) rather than handing out
tokens for time that did not pass. ``state()`` is a JSON value (the spend times still
inside their window) and ``RateLimiter.from_state`` rebuilds the limiter from it, so the
limits survive a restart: the engine stores the state in the journal.

Pure computing: ``now`` is passed in (seconds since the epoch, or a datetime; a naive one
is UTC); no clock is read.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

from moola.core.errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "RateDecision", "RateLimiter", "TokenBucket", "seconds"]

#: name -> (capacity, window in seconds): 10 signals an hour, 5 high-tier.
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {"all": (10, 3600.0), "high": (5, 3600.0)}
_STATE_VERSION = 1


def seconds(now: Any) -> float:
    """``now`` as seconds since the epoch: a finite number as it is, a datetime (naive =
    UTC) or ``pd.Timestamp`` converted; anything else is a ``ConfigError``."""
    if isinstance(now, _dt.datetime):
        stamp = now if now.tzinfo is not None else now.replace(tzinfo=_dt.UTC)
        return stamp.timestamp()
    if isinstance(now, numbers.Real) and not isinstance(now, bool) and math.isfinite(now):
        return float(now)
    raise ConfigError(
        f"now={now!r}: give seconds since the epoch (a finite number) or a datetime.",
        param="now",
    )


class RateDecision(NamedTuple):
    """``allowed`` and, when not, the reason naming the limit that denied."""

    allowed: bool
    reason: str


class TokenBucket:
    """``capacity`` tokens over ``window`` seconds; each spent token returns one window
    after it was spent (module notes)."""

    def __init__(self, capacity: int, window: float, *, name: str = "bucket") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(
                f"limits[{name!r}] capacity={capacity!r}: must be a whole number >= 1.",
                param="limits",
            )
        try:
            span = float(window)
        except (TypeError, ValueError):
            span = math.nan
        if isinstance(window, bool) or not math.isfinite(span) or span <= 0.0:
            raise ConfigError(
                f"limits[{name!r}] window={window!r}: must be a finite number of seconds > 0.",
                param="limits",
            )
        self.name = name
        self.capacity = capacity
        self.window = span
        self._spent: list[float] = []  # spend times still inside their window, ascending
        self._last: float | None = None

    def _advance(self, now: Any) -> float:
        t = seconds(now)
        if self._last is not None and t < self._last:
            raise ConfigError(
                f"now={now!r} is before the last time seen ({self._last}); time only moves "
                "forward (a clock that went back would hand out tokens twice).",
                param="now",
            )
        self._last = t
        cut = bisect.bisect_right(self._spent, t - self.window)  # back at spend + window
        if cut:
            del self._spent[:cut]
        return t

    def available(self, now: Any) -> int:
        """Tokens left at ``now``."""
        self._advance(now)
        return self.capacity - len(self._spent)

    def next_token_at(self, now: Any) -> float:
        """When the next token is back (``now`` itself when one is left)."""
        t = self._advance(now)
        if len(self._spent) < self.capacity:
            return t
        return self._spent[len(self._spent) - self.capacity] + self.window

    def spend(self, now: Any) -> None:
        """Spend one token at ``now`` (``ConfigError`` when none is left)."""
        t = self._advance(now)
        if len(self._spent) >= self.capacity:
            raise ConfigError(f"rate limit {self.name!r}: no token left at {t}.")
        self._spent.append(t)

    def state(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "window": self.window,
            "spent": list(self._spent),
            "last": self._last,
        }


class RateLimiter:
    """The signal rate limits: one :class:`TokenBucket` per entry of ``limits`` (name ->
    ``(capacity, window seconds)``); ``"all"`` applies to every signal, any other name to
    the signals of that tier (module notes)."""

    def __init__(self, limits: Mapping[str, tuple[int, float]] | None = None) -> None:
        given = DEFAULT_LIMITS if limits is None else limits
        if not isinstance(given, Mapping) or not given:
            raise ConfigError(
                f"limits={limits!r}: give name -> (capacity, window seconds), e.g. "
                f"{DEFAULT_LIMITS}.",
                param="limits",
            )
        self._buckets: dict[str, TokenBucket] = {}
        for name, spec in given.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(
                    f"limits: name {name!r} must be a non-empty string.", param="limits"
                )
            try:
                capacity, window = spec
            except (TypeError, ValueError):
                raise ConfigError(
                    f"limits[{name!r}]={spec!r}: give (capacity, window seconds).",
                    param="limits",
                ) from None
            self._buckets[name] = TokenBucket(capacity, window, name=name)

    @property
    def limits(self) -> dict[str, tuple[int, float]]:
        """name -> (capacity, window seconds)."""
        return {n: (b.capacity, b.window) for n, b in self._buckets.items()}

    def _applying(self, tier: str) -> list[TokenBucket]:
        if not isinstance(tier, str) or not tier:
            raise ConfigError(
                f"tier={tier!r}: only a signal (a tier name such as 'high') is rate-limited.",
                param="tier",
            )
        return [b for n, b in self._buckets.items() if n in ("all", tier)]

    def check(self, tier: str, now: Any) -> RateDecision:
        """Would a signal of ``tier`` at ``now`` be allowed? Spends nothing."""
        applying = self._applying(tier)
        for bucket in self._buckets.values():  # every bucket sees the time (none goes back)
            bucket._advance(now)
        for bucket in applying:
            if bucket.available(now) < 1:
                return RateDecision(False, self._denial(bucket, tier, now))
        return RateDecision(True, "")

    def allow(self, tier: str, now: Any) -> RateDecision:
        """Allow a signal of ``tier`` at ``now`` and spend its tokens, or deny it (spending
        nothing) naming the limit."""
        decision = self.check(tier, now)
        if decision.allowed:
            for bucket in self._applying(tier):
                bucket.spend(now)
        return decision

    def _denial(self, bucket: TokenBucket, tier: str, now: Any) -> str:
        scope = "signals" if bucket.name == "all" else f"{bucket.name}-tier signals"
        back = bucket.next_token_at(now)
        return (
            f"rate_limit[{bucket.name}]: {bucket.capacity} {scope} in the last "
            f"{bucket.window:g} s already (this one: tier {tier}); next allowed at "
            f"{_dt.datetime.fromtimestamp(back, _dt.UTC).isoformat()}"
        )

    def state(self) -> dict[str, Any]:
        """JSON value: the limits and each bucket's spend times still in their window."""
        return {
            "version": _STATE_VERSION,
            "buckets": {name: bucket.state() for name, bucket in self._buckets.items()},
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], limits: Mapping[str, tuple[int, float]] | None = None
    ) -> RateLimiter:
        """The limiter ``state()`` described. ``limits`` (e.g. a changed config) replaces
        the stored capacities and windows; a bucket keeps the spend times stored under its
        name, and a new bucket starts full. A state that cannot be read is a
        ``ConfigError`` (the engine then refuses to trade rather than start with full
        buckets)."""
        try:
            if state.get("version") != _STATE_VERSION:
                raise ConfigError(
                    f"rate-limit state version {state.get('version')!r}; this moola reads "
                    f"version {_STATE_VERSION}.",
                    param="state",
                )
            stored = state["buckets"]
            saved = {n: (int(b["capacity"]), float(b["window"])) for n, b in stored.items()}
            limiter = cls(saved if limits is None else limits)
            for name, bucket in limiter._buckets.items():
                if name not in stored:
                    continue
                spent = sorted(float(t) for t in stored[name]["spent"])
                last = stored[name]["last"]
                if any(not math.isfinite(t) for t in spent):
                    raise ValueError("spend time not finite")
                bucket._spent = spent
                bucket._last = None if last is None else float(last)
                if bucket._last is not None and spent and spent[-1] > bucket._last:
                    raise ValueError("a spend after the last time seen")
                if bucket._last is not None:
                    bucket._advance(bucket._last)  # drop what left the (new) window
                del bucket._spent[: max(0, len(bucket._spent) - bucket.capacity)]
        except ConfigError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"rate-limit state cannot be read ({exc}); expected RateLimiter.state()'s "
                f"form, got {state!r}.",
                param="state",
            ) from None
        return limiter
