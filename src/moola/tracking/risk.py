"""Risk decisions into the journal: one event per breach and per denied or capped order.

A broker (``moola.sim.Broker``) keeps two tables of its risk decisions: ``breaches`` (a
rule crossed: when, which rule, the value against the limit, the size of the flattening
order) and ``rejections`` (an order refused or capped by a pre-trade check, with its
reasons). :func:`journal_risk` turns their rows into :class:`RiskBreach` and
:class:`OrderDenied` events, in time order, so ``moola runs journal`` shows why a backtest
or a session stopped trading. The backtest pipeline calls it before it stores the
backtest's files (journal first, then act); a live session calls it as decisions happen.

This module takes the plain tables, not the broker: ``tracking`` sits below ``sim`` in
the layers and must not import it. The column names are the broker's
(``moola.sim.BREACH_COLUMNS``, ``moola.sim.REJECTION_COLUMNS``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pandas as pd
from pydantic import ValidationError

from moola.core.errors import ConfigError
from moola.core.numbers import as_number
from moola.tracking.journal import (
    Journal,
    JournalEvent,
    OrderDenied,
    OrderDeniedPayload,
    RiskBreach,
    RiskBreachPayload,
)

__all__ = ["BREACH_FIELDS", "REJECTION_FIELDS", "OnBreach", "journal_risk", "risk_events"]

#: What a broker does on a breach (``ExecutionConfig.on_breach``).
OnBreach = Literal["record", "halt", "flatten"]
_ACTIONS: dict[str, str] = {"record": "recorded", "halt": "halted", "flatten": "flattened"}

#: The columns :func:`journal_risk` reads from a breaches table (``action`` is optional).
BREACH_FIELDS: tuple[str, ...] = (
    "timestamp",
    "bar",
    "rule",
    "value",
    "limit",
    "detail",
    "flatten_qty",
)
#: The columns :func:`journal_risk` reads from a rejections table.
REJECTION_FIELDS: tuple[str, ...] = (
    "timestamp",
    "bar",
    "order_id",
    "requested_qty",
    "accepted_qty",
    "reason",
)


def journal_risk(
    journal: Journal,
    source: str,
    breaches: pd.DataFrame,
    rejections: pd.DataFrame,
    *,
    on_breach: OnBreach | None = None,
) -> int:
    """Append one event per breach and per rejection, in time order; return how many.

    Parameters
    ----------
    journal : Journal
        Where to record them (``Journal.extend``: in order, all durable on return).
    source : str
        Where the decisions were taken: ``backtest:<run id>/<folder>`` or ``session:<id>``.
    breaches : pd.DataFrame
        Rule breaches with :data:`BREACH_FIELDS` (``Broker.breaches``).
    rejections : pd.DataFrame
        Denied or capped orders with :data:`REJECTION_FIELDS` (``Broker.rejections``).
    on_breach : "record", "halt" or "flatten", optional
        What the broker did on a breach (the ``ExecutionConfig``'s ``on_breach``), which
        the table does not say: each event's action is then ``recorded``, ``halted``, or
        ``flattened`` (``halted`` when no flattening order was needed, ``flatten_qty ==
        0``). Needed when there are breaches, unless the table has an ``action`` column.

    Both tables are checked before anything is written, so a bad row leaves the journal
    untouched. Within one bar a breach comes before the denials: the broker judges the
    bar's mark before the orders decided at its close.
    """
    events = risk_events(source, breaches, rejections, on_breach=on_breach)
    journal.extend(events)
    return len(events)


def risk_events(
    source: str,
    breaches: pd.DataFrame,
    rejections: pd.DataFrame,
    *,
    on_breach: OnBreach | None = None,
) -> list[JournalEvent]:
    """The events :func:`journal_risk` would append, in its order, without writing them."""
    if on_breach is not None and on_breach not in _ACTIONS:
        raise ConfigError(
            f"journal_risk: on_breach={on_breach!r}; use one of {', '.join(_ACTIONS)}."
        )
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(
            "journal_risk: source must name where the decisions were taken, e.g. "
            f"'backtest:<run id>/<folder>' or 'session:<id>'; got {source!r}."
        )
    keyed: list[tuple[int, int, int, JournalEvent]] = []
    tables = ((breaches, BREACH_FIELDS, "breaches", _breach),
              (rejections, REJECTION_FIELDS, "rejections", _denial))  # fmt: skip
    for order, (table, fields, name, build) in enumerate(tables):
        for row, record in enumerate(_rows(table, fields, name)):
            try:
                event = build(source, record, row, on_breach)
            except ValidationError as exc:
                problem = "; ".join(
                    f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                    for error in exc.errors()
                )
                raise ConfigError(f"{_where(name, row)}: {problem}.") from None
            keyed.append((event.payload.bar, order, row, event))
    keyed.sort(key=lambda item: item[:3])
    return [event for *_, event in keyed]


def _rows(table: pd.DataFrame, fields: tuple[str, ...], name: str) -> list[dict[str, Any]]:
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(
            f"journal_risk: {name} must be a pandas DataFrame (the broker's {name} table); "
            f"got {type(table).__name__}."
        )
    missing = [field for field in fields if field not in table.columns]
    if missing:
        raise ConfigError(
            f"journal_risk: the {name} table lacks column(s) {', '.join(missing)}; it needs "
            f"{', '.join(fields)}."
        )
    return table.to_dict("records")


def _where(name: str, row: int) -> str:
    return f"journal_risk: {name} row {row}"


def _time(value: Any, name: str, row: int) -> str:
    """A bar's time as text: ISO 8601 for a timestamp, the number for a bar number."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        raise ConfigError(f"{_where(name, row)}: timestamp is missing.")
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _bar(value: Any, name: str, row: int) -> int:
    number = as_number(value)
    if not (math.isfinite(number) and number >= 0 and number == int(number)):
        raise ConfigError(f"{_where(name, row)}: bar must be a bar index >= 0; got {value!r}.")
    return int(number)


def _quantity(value: Any, column: str, name: str, row: int) -> float:
    number = as_number(value)
    if not math.isfinite(number):
        raise ConfigError(f"{_where(name, row)}: {column} must be a finite number; got {value!r}.")
    return number


def _finite_or_none(value: Any) -> float | None:
    """A measured value as JSON can hold it: a non-finite or missing one becomes None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _breach(source: str, record: dict[str, Any], row: int, on_breach: str | None) -> RiskBreach:
    flatten = _quantity(record["flatten_qty"], "flatten_qty", "breaches", row)
    action = record.get("action")
    if action is None or (not isinstance(action, str) and pd.isna(action)):
        if on_breach is None:
            raise ConfigError(
                f"{_where('breaches', row)}: the table does not say what the breach led to; "
                "pass on_breach='record', 'halt' or 'flatten' (the ExecutionConfig's "
                "on_breach), or give the table an action column."
            )
        action = _ACTIONS[on_breach] if not (on_breach == "flatten" and not flatten) else "halted"
    if action not in ("recorded", "halted", "flattened"):
        raise ConfigError(
            f"{_where('breaches', row)}: action {action!r} is not one of recorded, halted, "
            "flattened."
        )
    return RiskBreach(
        payload=RiskBreachPayload(
            source=source,
            rule=str(record["rule"]),
            time=_time(record["timestamp"], "breaches", row),
            bar=_bar(record["bar"], "breaches", row),
            value=_finite_or_none(record["value"]),
            limit=_finite_or_none(record["limit"]),
            detail="" if record["detail"] is None else str(record["detail"]),
            flatten_qty=flatten,
            action=action,
        )
    )


def _denial(source: str, record: dict[str, Any], row: int, on_breach: str | None) -> OrderDenied:
    order_id = record["order_id"]
    reason = record["reason"]
    if reason is None or (not isinstance(reason, str) and pd.isna(reason)) or not str(reason):
        raise ConfigError(f"{_where('rejections', row)}: reason is empty; a denial says why.")
    return OrderDenied(
        payload=OrderDeniedPayload(
            source=source,
            time=_time(record["timestamp"], "rejections", row),
            bar=_bar(record["bar"], "rejections", row),
            order_id=None if order_id is None or pd.isna(order_id) else int(order_id),
            requested_qty=_quantity(record["requested_qty"], "requested_qty", "rejections", row),
            accepted_qty=_quantity(record["accepted_qty"], "accepted_qty", "rejections", row),
            reasons=(str(reason),),  # the broker joins a denial's reasons into one text
        )
    )
