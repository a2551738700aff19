"""``moola rl scan | train | eval``: reinforcement learning on the simulation core.

``scan`` stores a momentum-day index of a raw dataset (a curriculum's reset points);
``train`` trains an agent on a split's training period and records the run (best models
by evaluation return on the held-out period, compared with flat and buy-and-hold at the
same costs, replayed through the backtest); ``eval`` plays a recorded run's best model on
its val period, or once on its test period.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from moola.cli._common import console, settings_of
from moola.core.errors import ConfigError
from moola.core.settings import load_config, parse_config
from moola.data.registry import Registry

app = typer.Typer(
    help="Reinforcement learning: a trading environment on the backtest's own broker, "
    "Stable-Baselines3 agents (PPO, MaskablePPO, A2C), a momentum curriculum."
)


def _registry(ctx: typer.Context) -> Registry:
    return Registry(settings_of(ctx).data_root)


def _json_flag(value: str | None, flag: str) -> dict[str, Any] | None:
    """A ``--flag '{"key": value}'`` JSON object, or None when not given."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} is not valid JSON ({exc}): {value}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f'{flag} must be a JSON object, e.g. {{"key": 1}}; got {value}')
    return parsed


def _yaml_or_json(value: str | None, flag: str) -> dict[str, Any] | None:
    """A ``--flag`` given as a YAML file path or inline JSON."""
    if value is None:
        return None
    path = Path(value)
    if value.strip().startswith("{"):
        return _json_flag(value, flag)
    if not path.is_file():
        raise ConfigError(f"{flag} {value}: no such file (give a YAML file or a JSON object).")
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{flag} {path} must hold a mapping of keys to values.")
    return loaded


def _timescales(values: list[str] | None) -> dict[str, int] | None:
    """``--timescale 1h=24`` flags as ``{"1h": 24}`` (None when none is given)."""
    if not values:
        return None
    out: dict[str, int] = {}
    for value in values:
        timeframe, _, bars = value.partition("=")
        if not timeframe or not bars.strip().isdigit():
            raise ConfigError(f"--timescale {value!r}: give TIMEFRAME=BARS, e.g. 1h=24.")
        out[timeframe.strip()] = int(bars)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@app.command()
def scan(
    ctx: typer.Context,
    raw: str = typer.Argument(..., help="Raw dataset NAME or NAME@vN."),
    out: str = typer.Option(..., "--out", help="Name of the stored momentum index."),
    symbol: str | None = typer.Option(None, help="Symbol to scan (default: the only one)."),
    timezone: str = typer.Option("UTC", help="Where trading days start (IANA name)."),
    session: str | None = typer.Option(
        None, help='Local session, e.g. "09:30-16:00": only its bars belong to a day.'
    ),
    reset_every: int = typer.Option(30, help="Bars between a day's reset points."),
    lookback: int = typer.Option(20, help="Earlier days the volume and range baselines use."),
) -> None:
    """Store a momentum-day index (reset points for `moola rl train --curriculum`).

    Each finished day is scored on its gap, relative volume, range expansion and trend
    persistence (quality in [0, 1]), against baselines of earlier days only.
    """
    from moola.pipeline.rl import scan_momentum

    window: tuple[str, str] | None = None
    if session is not None:
        parts = [p.strip() for p in session.split("-")]
        if len(parts) != 2:
            raise ConfigError(f'--session {session!r}: give it as "HH:MM-HH:MM".')
        window = (parts[0], parts[1])
    result = scan_momentum(
        _registry(ctx),
        raw,
        name=out,
        symbol=symbol,
        timezone=timezone,
        session=window,
        reset_every=reset_every,
        lookback=lookback,
    )
    console.print(
        f"stored {result.ref}: {result.days} days, {result.reset_points} reset points, "
        f"quality {result.quality[0]:.2f}-{result.quality[1]:.2f}"
    )


def _status(info: dict[str, Any]) -> None:
    lines = "\n".join(f"[bold]{key}[/]: {value}" for key, value in info.items())
    console.print(Panel(lines, title="RL run", expand=False))


def _results(evaluation: dict[str, Any], run_dir: Path | None, title: str) -> None:
    table = Table(title=title)
    for column in ("policy", "mean return", "mean reward", "final equity", "invalid actions"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for key, name in (("policy", "agent"), ("flat", "flat"), ("buy_and_hold", "buy and hold")):
        result = evaluation.get(key)
        if result:
            table.add_row(
                name,
                f"{result['mean_return']:.2%}",
                _fmt(result["mean_reward"]),
                f"{result['mean_final_equity']:,.2f}",
                str(result["invalid_actions"]),
            )
    console.print(table)
    parity = evaluation.get("parity_max_rel_diff")
    console.print(f"env vs backtest replay, largest relative equity difference: {parity:.1e}")
    if run_dir is not None:
        console.print(f"run folder: {run_dir}")


@app.command()
def train(
    ctx: typer.Context,
    algo: str | None = typer.Option(None, help="ppo (default), maskable_ppo or a2c."),
    dataset: str | None = typer.Option(None, help="Windows dataset NAME or NAME@vN."),
    split: str | None = typer.Option(
        None, help="Split NAME[@vN] with train and val parts by time (or walk-forward folds)."
    ),
    timesteps: int | None = typer.Option(None, help="Environment steps to train for."),
    n_envs: int | None = typer.Option(None, "--n-envs", help="Environments stepped together."),
    action_space: str | None = typer.Option(
        None, help="discrete12 (default), target or continuous."
    ),
    symbol: str | None = typer.Option(None, help="Symbol to trade (default: the only one)."),
    fold: int | None = typer.Option(None, help="Walk-forward split: the fold (default last)."),
    max_steps: int | None = typer.Option(None, help="Training episode length (steps)."),
    eval_freq: int | None = typer.Option(None, help="Steps between evaluations."),
    curriculum: str | None = typer.Option(
        None, help="Momentum index (moola rl scan) whose reset points episodes start from."
    ),
    timescale: list[str] = typer.Option(
        None,
        "--timescale",
        help="Also observe completed coarser bars: TIMEFRAME=BARS, e.g. 1h=24 (repeatable; "
        "use with --extractor multi_timescale).",
    ),
    extractor: str | None = typer.Option(
        None, help="flat (default) or multi_timescale (one branch per window)."
    ),
    execution: str | None = typer.Option(
        None, help="Execution terms: a YAML file or a JSON object (costs, latency, rules)."
    ),
    reward: str | None = typer.Option(
        None, help="Reward components: a YAML file or a JSON object (RewardSpec)."
    ),
    params: str | None = typer.Option(
        None, help='Algorithm hyperparameters as JSON, e.g. {"n_steps": 128}.'
    ),
    from_run: str | None = typer.Option(
        None,
        "--from",
        help="Continue this RL run's best model as the next version (v2, v3...), the "
        "learning rate annealed linearly to a tenth of its own.",
    ),
    config: Path | None = typer.Option(None, help="YAML run config; flags override it."),
    seed: int | None = typer.Option(None, help="Seed (default: the global --seed, else 0)."),
    resume: str | None = typer.Option(
        None, help="Continue an interrupted run (its id) from its latest saved model."
    ),
) -> None:
    """Train an agent on a split's training period and record the run.

    The best models by evaluation return on the held-out period are kept; the best is
    compared with flat and buy-and-hold at the same costs and replayed through the backtest.
    Interrupted, it continues with `moola rl train --resume RUN`.
    """
    from moola.cli._progress import stage_display
    from moola.pipeline.rl import RLConfig, train_rl
    from moola.training.callbacks import ProgressUpdate

    overrides: dict[str, Any] = {
        "algo": algo,
        "dataset": dataset,
        "split": split,
        "timesteps": timesteps,
        "n_envs": n_envs,
        "action_space": action_space,
        "symbol": symbol,
        "fold": fold,
        "max_steps": max_steps,
        "eval_freq": eval_freq,
        "curriculum": curriculum,
        "timescales": _timescales(timescale),
        "extractor": extractor,
        "from_run": from_run,
        "execution": _yaml_or_json(execution, "--execution"),
        "reward": _yaml_or_json(reward, "--reward"),
        "params": _json_flag(params, "--params"),
        "seed": seed if seed is not None else ctx.find_root().params.get("seed"),
    }
    if resume is not None:
        extra = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
        extra = [flag for flag in extra if flag != "--seed" or seed is not None]
        if extra or config is not None:
            raise ConfigError(
                f"--resume continues run {resume} with the config it started with; drop "
                + ", ".join(extra + (["--config"] if config is not None else []))
                + "."
            )
        resolved = None
    elif config is not None:
        resolved = load_config(config, RLConfig, **overrides)
    else:
        missing = [flag for flag in ("dataset", "split") if overrides[flag] is None]
        if missing:
            raise ConfigError(
                "moola rl train needs "
                + ", ".join(f"--{m}" for m in missing)
                + " (or a --config file that sets them)."
            )
        given = {key: value for key, value in overrides.items() if value is not None}
        resolved = parse_config(RLConfig, given, where="moola rl train flags")
    started: dict[str, str] = {}
    with stage_display(console) as display:

        def on_event(kind: str, info: dict[str, Any]) -> None:
            if kind == "status":
                started["run_id"] = info["run_id"]
                _status(info)
                display.stage(f"training {info['algo']} on {info['symbol']}")
            elif kind == "resumed":
                console.print(f"resuming at step {info['step']:,}")
            elif kind == "evaluation":
                promoted = " (curriculum: next stage)" if info.get("promoted") else ""
                console.print(
                    f"  evaluation at step {info['step']:,}: reward {_fmt(info['reward'])}, "
                    f"return {info['return']:.2%}{promoted}"
                )

        def on_step(step: int, total: int) -> None:
            display.update(ProgressUpdate(min(step, total), total, f"step {step:,}/{total:,}"))

        try:
            result = train_rl(
                _registry(ctx), resolved, on_event=on_event, on_step=on_step, resume=resume
            )
        except KeyboardInterrupt:
            if "run_id" in started:
                console.print(
                    "[yellow]interrupted[/]: continue with "
                    f"`moola rl train --resume {started['run_id']}`"
                )
            raise typer.Exit(130) from None
    _results(result.evaluation, result.run_dir, "evaluation on the held-out period")


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="RL run id (a unique prefix is enough)."),
    test: bool = typer.Option(
        False, "--test", help="Play the split's test period (once; recorded in the journal)."
    ),
    allow_reuse: bool = typer.Option(
        False, "--allow-reuse", help="Look at an already-seen test period again (recorded)."
    ),
    episodes: int = typer.Option(1, help="Episodes to play."),
) -> None:
    """Play a run's best model on its held-out period against flat and buy-and-hold."""
    from moola.pipeline.rl import evaluate_rl

    record = evaluate_rl(
        _registry(ctx),
        run,
        part="test" if test else "val",
        n_episodes=episodes,
        allow_reuse=allow_reuse,
    )
    period = record["period"]
    _results(
        record,
        None,
        f"{record['part']} period {period['first']} .. {period['last']} ({period['bars']} bars)",
    )
