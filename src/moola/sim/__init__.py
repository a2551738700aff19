"""Simulation core: instruments, costs, orders, exact accounting and two engines.

Pure numpy/pandas (+ numba for the vectorised kernel); no torch and no I/O. The backtest,
the RL environment and the live runtime all account through :class:`Portfolio`.

Conventions (see each module's docstring for the full contract):

- Target positions are fractions of equity (``[-1, 1]``, clipped to the instrument's
  ``max_leverage``). A change of target at bar ``t`` is decided at ``t``'s close and fills
  at the open of bar ``t + latency_bars`` (default 1); the position is re-sized only when
  the target changes. Units: :meth:`Instrument.units_for` (equity and close at ``t``,
  rounded toward zero to ``lot_size``).
- Costs: buy fills at ``reference + half_spread + slippage``, sells at ``reference -
  half_spread - slippage``; commission per order (:mod:`moola.sim.costs`).
- Accounting is cash-settled PnL: ``equity = initial + realised - fees + unrealised``.
- Fill rules on OHLC bars (limit needs a trade-through, stops fill gaps at the worse open,
  stop before take-profit in one bar): :mod:`moola.sim.orders`.

Execution terms are one frozen :class:`ExecutionConfig` (``moola.sim.execution``), whose
hash is recorded with every backtest; :class:`Broker` (``moola.sim.broker``) is the
steppable kernel the event engine, the trading environment and the live runtime share.

Entry points::

    Broker(ExecutionConfig(...)): advance(bar) -> fills, submit(order) -> Accepted | Denied,
                                  cancel(order_id), mark(bar), state, result()

    backtest_positions(open, high, low, close, volume, target_fraction, execution=None,
                       *, symbol="ASSET", timestamp=None) -> SimResult     # fast path
    EventEngine(bars, ExecutionConfig(...), *, symbol=None).run(strategy) -> SimResult
                                  # the config's rules stream inside; on_breach decides
    TargetPositionStrategy(target_fraction)   # reproduces backtest_positions exactly
    evaluate_rules(equity, trades, rules=FTMO_DEFAULTS) -> list[RuleResult]
    rule.stream(): update(time, equity, fills) -> Breach | None, pre_trade(order, state)
                   -> reasons, result() -> RuleResult (== rule.check on the same points)
    stream_rules(rules, times, equity, fills) -> breaches   # a finished run, as a broker
"""

from __future__ import annotations

from moola.sim._result import FILL_COLUMNS, REJECTION_COLUMNS, SimResult
from moola.sim.broker import (
    BREACH_COLUMNS,
    Accepted,
    Bar,
    Broker,
    BrokerState,
    Denied,
    Fill,
    stream_rules,
)
from moola.sim.costs import (
    CommissionModel,
    FixedBps,
    SlippageModel,
    SlippageTerms,
    SpreadModel,
    SquareRootImpact,
    VolatilityScaled,
)
from moola.sim.engine import BarContext, EventEngine, Strategy, TargetPositionStrategy
from moola.sim.execution import ExecutionConfig
from moola.sim.instruments import (
    Instrument,
    crypto_instrument,
    equity_instrument,
    futures_instrument,
    fx_instrument,
)
from moola.sim.limits import MaxOpenPositions, MaxPosition, RiskPerTrade, TradingHalt
from moola.sim.orders import Order, OrderType, limit, market, stop
from moola.sim.portfolio import TRADE_COLUMNS, Portfolio, Trade, trades_frame
from moola.sim.propfirm import (
    FTMO_DEFAULTS,
    Breach,
    DailyLossLimit,
    MinimumTradingDays,
    ProfitTarget,
    Rule,
    RuleResult,
    RuleStream,
    TotalLossLimit,
    challenge_passed,
    evaluate_rules,
)
from moola.sim.vectorised import backtest_positions

__all__ = [
    "BREACH_COLUMNS",
    "FILL_COLUMNS",
    "FTMO_DEFAULTS",
    "REJECTION_COLUMNS",
    "TRADE_COLUMNS",
    "Accepted",
    "Bar",
    "BarContext",
    "Breach",
    "Broker",
    "BrokerState",
    "CommissionModel",
    "DailyLossLimit",
    "Denied",
    "EventEngine",
    "ExecutionConfig",
    "Fill",
    "FixedBps",
    "Instrument",
    "MaxOpenPositions",
    "MaxPosition",
    "MinimumTradingDays",
    "Order",
    "OrderType",
    "Portfolio",
    "ProfitTarget",
    "RiskPerTrade",
    "Rule",
    "RuleResult",
    "RuleStream",
    "SimResult",
    "SlippageModel",
    "SlippageTerms",
    "SpreadModel",
    "SquareRootImpact",
    "Strategy",
    "TargetPositionStrategy",
    "TotalLossLimit",
    "Trade",
    "TradingHalt",
    "VolatilityScaled",
    "backtest_positions",
    "challenge_passed",
    "crypto_instrument",
    "equity_instrument",
    "evaluate_rules",
    "futures_instrument",
    "fx_instrument",
    "limit",
    "market",
    "stop",
    "stream_rules",
    "trades_frame",
]
