"""RL environment benchmark: steps per second of ``VecTradingEnv`` and ``TradingEnv``.

Run: ``.venv/bin/python benchmarks/bench_rl_env.py [--bars 20000] [--steps 2000]
[--repeats 3]``.

One seeded random walk of 1-minute bars and one ``ExecutionConfig`` with every cost on
(spread, 1 bp fixed slippage, 2 bps commission with a minimum, latency 2 bars, a daily and
a total loss limit set wide so that they stream on every bar without ending episodes);
``discrete12`` actions drawn at random (an order on most steps); episodes of at most 1,000
steps, so copies reset along the way. Observations are the full Dict (a 60-bar window of
the built-in 5 features + the 7 portfolio fields). In the same run, best of ``--repeats``:

- **bare numpy loop (reference)**: the same arithmetic on the same arrays with no env
  around it: each step decodes nothing, sizes the target, fills the order due at the open
  with spread, slippage and commission (latency ring), marks the equity; numpy over the
  ``(n,)`` arrays, one step per Python iteration. No observation, reward, rules or info:
  the floor of a numpy-stepped env;
- ``_step_kernel`` alone: the compiled kernel ``VecTradingEnv.step_wait`` calls once a
  step (all copies), without the observation, reward, decoding and infos around it;
- ``VecTradingEnv.step`` with ``n_envs = 1`` and ``1024``: what an SB3 learner calls
  (decode, kernel, reward, the Dict observation, lazy infos, auto-reset);
- the parts of that step: the observation window copy (``windows_at``), the portfolio
  fields (``portfolio_state``), the reward (``Reward.__call__``), the action decoding
  (``decode_many``; ``decode`` and the scalar ``portfolio_state`` for one copy, as the
  step does) and the list of infos (one lazy mapping per copy), timed alone;
- ``TradingEnv.step`` (one env, ``moola.sim.Broker``) and ``DummyVecEnv`` over 8 of them,
  for scale.

Steps/s counts env steps (one copy advancing one bar), so a vectorised step of 1024 copies
is 1024 steps. Targets (issue 17): >= 100K steps/s for one env, >= 2M for 1024.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from _common import print_table, random_walk_bars  # benchmarks/ is on sys.path as scripts
from moola.rl.env import TradingEnv
from moola.rl.rewards import StepOutcome
from moola.rl.vec_env import VecTradingEnv, _step_kernel

EXECUTION = {
    "instrument": "equity",
    "initial_cash": 1_000_000.0,
    "spread": 0.01,
    "slippage": 1.0,
    "commission": {"rate": 0.0002, "minimum": 1.0},
    "latency_bars": 2,
    "rules": [
        {"rule": "daily_loss_limit", "pct": 0.5, "timezone": "Europe/Prague"},
        {"rule": "total_loss_limit", "pct": 0.9},
    ],
}
ENV = {"window": 60, "execution": EXECUTION, "action_space": "discrete12", "max_steps": 1_000}


def _best(repeats: int, func, *args) -> tuple[float, float]:
    """Fewest wall seconds and fewest CPU seconds of this process (``time.process_time``)
    over ``repeats`` calls (garbage collected before each)."""
    wall = cpu = np.inf
    for _ in range(repeats):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        func(*args)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def bare_numpy(open_, close, n_envs: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """The reference: the fills and marks of the env on the same arrays, numpy over copies."""
    n_bars = close.shape[0]
    latency, half, slip_rate, comm_rate, comm_min = 2, 0.005, 1e-4, 2e-4, 1.0
    targets = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(steps, n_envs))
    bar = rng.integers(60, n_bars - steps - 2, n_envs)
    cash = np.full(n_envs, 1_000_000.0)
    pos = np.zeros(n_envs)
    avg = np.zeros(n_envs)
    equity = cash.copy()
    committed = np.zeros(n_envs)
    ring = np.zeros((latency, n_envs))
    for k in range(steps):
        f = targets[k]
        units = np.trunc(f * equity / close[bar])
        dq = units - committed
        committed += dq
        ring[k % latency] = dq
        bar += 1
        q = ring[(k + 1) % latency]
        ref = open_[bar]
        price = ref + np.sign(q) * (half + slip_rate * ref)
        fee = np.where(q != 0.0, np.maximum(comm_rate * np.abs(q) * price, comm_min), 0.0)
        new = pos + q
        same = (pos == 0.0) | (np.sign(pos) == np.sign(q))
        grows = same & (new != 0.0)
        avg = np.where(
            grows, (avg * np.abs(pos) + price * np.abs(q)) / np.where(new, np.abs(new), 1.0), avg
        )
        closed = np.where(same, 0.0, np.minimum(np.abs(q), np.abs(pos)))
        cash = cash - fee + closed * (price - avg) * np.sign(pos)
        flips = ~same & (np.abs(q) > np.abs(pos))
        avg = np.where(flips, price, np.where(new == 0.0, 0.0, avg))
        pos = new
        ring[(k + 1) % latency] = 0.0
        equity = cash + pos * (close[bar] - avg)
    return equity


def kernel_only(env: VecTradingEnv, steps: int, targets: np.ndarray) -> None:
    """``_step_kernel`` once per step over every copy (no decode, reward, observation)."""
    env._bar[:] = env.start_points[0]  # room for ``steps`` bars ahead of every copy
    args = _kernel_args(env)
    for k in range(steps):
        _step_kernel(targets[k], *args)


def _kernel_args(env: VecTradingEnv) -> tuple:
    inst = env.instrument
    return (
        env._open,
        env._close,
        env._half,
        env._slip_rate,
        0.0,
        0.0,
        *env._comm,
        float(inst.point_value),
        float(inst.lot_size),
        float(inst.max_leverage),
        inst.dust,
        env.execution.latency_bars,
        env._cfg_days,
        env._rule_kind,
        env._rule_pct,
        env._rule_on_initial,
        env._rule_initial,
        env._rule_days,
        env._bar,
        env._prev_f,
        env._committed,
        env._pos,
        env._avg,
        env._cash,
        env._equity,
        env._peak,
        env._realised_cum,
        env._fees_cum,
        env._held,
        env._last_units,
        env._ring,
        env._day,
        env._day_start,
        env._rule_day,
        env._rule_sod,
        env._eq_before,
        env._realised,
        env._fees,
        env._costs,
        env._traded,
        env._breach,
    )


def vec_steps(env: VecTradingEnv, actions: np.ndarray) -> None:
    for a in actions:
        env.step(a)


def single_steps(env: TradingEnv, actions: np.ndarray) -> None:
    for a in actions:
        _, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            env.reset()


def window_copies(env: VecTradingEnv, steps: int) -> None:
    source, bars = env.source, env._bar
    for _ in range(steps):
        source.windows_at(bars)


def portfolio_fields(env: VecTradingEnv, steps: int) -> None:
    for _ in range(steps):
        env._portfolio(slice(None))


def decodes(env: VecTradingEnv, steps: int, actions: np.ndarray) -> None:
    """The decoding the step does: ``decode_many``, or ``decode`` for one copy."""
    codec, positions = env.codec, env._prev_f
    if env.num_envs == 1:
        position = float(positions[0])
        for a in actions[:steps]:
            codec.decode(a.reshape(1, -1)[0], position)
        return
    for a in actions[:steps]:
        codec.decode_many(a, positions)


def infos(env: VecTradingEnv, steps: int) -> None:
    n = env.num_envs
    none = np.zeros(n, dtype=bool)
    parts = {"equity_change": np.zeros(n)}
    ending = np.zeros(n, dtype=np.int64)
    for _ in range(steps):
        env._infos(none, parts, ending, none, {})


def rewards(env: VecTradingEnv, steps: int) -> None:
    n = env.num_envs
    ones = np.ones(n)
    outcome = StepOutcome(
        equity_before=env._equity,
        equity_after=env._equity * 1.0001,
        initial_cash=1_000_000.0,
        realised_pnl=ones,
        costs=ones,
        position_before=ones * 0.5,
        position_after=ones,
        turnover=ones * 0.5,
        traded=ones,
        drawdown=ones * 0.01,
        headroom=ones,
        invalid=ones * 0.0,
        bars_in_position=ones,
    )
    for _ in range(steps):
        env.reward(outcome)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=2_000, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    bars, _ = random_walk_bars(args.bars, rng)
    open_, close = bars["open"].to_numpy(), bars["close"].to_numpy()
    steps = args.steps
    rows: list[dict] = []

    def row(name: str, n_envs: int, seconds: tuple[float, float], n_steps: int, note: str) -> None:
        wall, cpu = (sec / n_steps for sec in seconds)
        rows.append(
            {
                "step": name,
                "n_envs": n_envs,
                "µs per call": wall * 1e6,
                "µs per call (cpu)": cpu * 1e6,
                "steps/s": f"{n_envs / wall:,.0f}",
                "steps/s (cpu)": f"{n_envs / cpu:,.0f}",
                "note": note,
            }
        )

    for n_envs in (1, 1024):
        sec = _best(args.repeats, bare_numpy, open_, close, n_envs, steps, np.random.default_rng(1))
        row("bare numpy loop (reference)", n_envs, sec, steps, "fills + marks only")
    for n_envs in (1, 1024):
        env = VecTradingEnv(bars, n_envs, **ENV)
        env.seed(0)
        env.reset()
        actions = np.random.default_rng(2).integers(0, 12, (steps, n_envs))
        env.step(actions[0])  # compile
        targets = np.random.default_rng(3).choice([-1.0, -0.5, 0.0, 0.5, 1.0], (steps, n_envs))
        sec = _best(args.repeats, kernel_only, env, steps, targets)
        row("_step_kernel alone", n_envs, sec, steps, "one call, all copies")
        env.seed(0)
        env.reset()
        sec = _best(args.repeats, vec_steps, env, actions)
        row("**VecTradingEnv.step**", n_envs, sec, steps, "Dict obs, reward, infos")
        sec = _best(args.repeats, window_copies, env, steps)
        row("  part: window copy (windows_at)", n_envs, sec, steps, "60 x 5 float32 each")
        sec = _best(args.repeats, portfolio_fields, env, steps)
        row("  part: portfolio_state", n_envs, sec, steps, "7 fields")
        sec = _best(args.repeats, rewards, env, steps)
        row("  part: Reward (equity_change)", n_envs, sec, steps, "default spec")
        sec = _best(args.repeats, decodes, env, steps, actions)
        row("  part: decoding the actions", n_envs, sec, steps, "discrete12")
        sec = _best(args.repeats, infos, env, steps)
        row("  part: the infos list (lazy)", n_envs, sec, steps, "one mapping per copy")
    single = TradingEnv(bars, **ENV)
    single.reset(seed=0)
    actions = np.random.default_rng(2).integers(0, 12, steps)
    sec = _best(args.repeats, single_steps, single, actions)
    row("TradingEnv.step (Broker)", 1, sec, steps, "one env")
    dummy = DummyVecEnv([lambda: TradingEnv(bars, **ENV) for _ in range(8)])
    dummy.seed(0)
    dummy.reset()
    actions = np.random.default_rng(2).integers(0, 12, (steps // 4, 8))
    sec = _best(args.repeats, vec_steps, dummy, actions)
    row("DummyVecEnv(8 x TradingEnv).step", 8, sec, steps // 4, "SB3's Python vec env")
    title = (
        f"RL env steps/s ({args.bars:,} 1-minute bars, discrete12 random actions, spread + "
        f"1 bp slippage + 2 bps commission, latency 2, 2 loss limits, best of {args.repeats})"
    )
    print_table(title, rows)
    by = {(r["step"], r["n_envs"]): r for r in rows}

    def rate(step: str, n_envs: int, column: str) -> float:
        return float(by[(step, n_envs)][column].replace(",", ""))

    for n_envs, goal in ((1, 100_000), (1024, 2_000_000)):
        for column in ("steps/s", "steps/s (cpu)"):
            got = rate("**VecTradingEnv.step**", n_envs, column)
            ref = rate("bare numpy loop (reference)", n_envs, column)
            kernel = rate("_step_kernel alone", n_envs, column)
            verdict = "met" if got >= goal else "NOT met"
            print(
                f"Target n_envs={n_envs} ({column}): >= {goal:,}: {verdict} by the env step "
                f"({got:,.0f}, {got / ref:.2f}x the bare numpy loop); the kernel alone "
                f"{kernel:,.0f}."
            )


if __name__ == "__main__":
    main()
