"""``moola train | evaluate | report | promote``: runs from training to promotion."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from moola.cli._common import console, settings_of
from moola.core.errors import ConfigError
from moola.core.settings import load_config, parse_config
from moola.data.registry import Registry

app = typer.Typer()


def _registry(ctx: typer.Context) -> Registry:
    return Registry(settings_of(ctx).data_root)


def _status_block(info: dict[str, Any]) -> None:
    lines = "\n".join(f"[bold]{key}[/]: {value}" for key, value in info.items())
    console.print(Panel(lines, title="run status", expand=False))


def _results_block(info: dict[str, Any]) -> None:
    table = Table(title=f"results ({info['mode']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    calibrated = info["metrics"] != info["uncalibrated"]  # a regression run: one column
    if calibrated:
        table.add_column("uncalibrated", justify="right")
    for key, value in info["metrics"].items():
        raw = info["uncalibrated"].get(key)
        table.add_row(key, _fmt(value), *([_fmt(raw)] if calibrated else []))
    console.print(table)
    console.print(f"run folder: {info['run_dir']}")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _on_event(kind: str, info: dict[str, Any]) -> None:
    if kind == "status":
        _status_block(info)
    elif kind == "fold":
        console.print(
            f"  fold {info.get('fold')}: "
            + ", ".join(
                f"{k} {_fmt(v)}" for k, v in info.items() if k != "fold" and not isinstance(v, dict)
            )
        )
    elif kind == "results":
        _results_block(info)


@app.command()
def train(
    ctx: typer.Context,
    model: str | None = typer.Option(None, help="Model name (see `moola models list`)."),
    dataset: str | None = typer.Option(None, help="Labeled dataset NAME or NAME@vN."),
    split: str | None = typer.Option(None, help="Split NAME or NAME@vN (folds: OOF run)."),
    config: Path | None = typer.Option(None, help="YAML run config; flags override it."),
    params: str | None = typer.Option(None, help='Model params as JSON, e.g. {"epochs": 20}.'),
    calibration: str | None = typer.Option(
        None,
        help="auto (default: chosen out of fold, never at the minority class's expense), "
        "none, platt, isotonic or temperature.",
    ),
    inputs: str | None = typer.Option(
        None,
        help="auto, relative, price_action or ohlc (enhanced_simple_lstm: relative or ohlc, "
        "beside each window's 20 price-action features).",
    ),
    synthetic: str | None = typer.Option(None, help="Synthetic set to add to train only."),
    allow_low_quality_synthetic: bool | None = typer.Option(
        None,
        "--allow-low-quality-synthetic",
        help="Use a --synthetic set whose KS p-value is below 0.1 anyway (recorded in the run).",
    ),
    base_run: list[str] = typer.Option(None, help="Base run ids for the stack model."),
    pretrained_encoder: Path | None = typer.Option(
        None,
        help="Encoder artifact (moola pretrain) to load into the model before training "
        "(turns simple_lstm's encoder_projection on).",
    ),
    seed: int | None = typer.Option(
        None, help="Seed (default: the global --seed, else the --config file's seed, else 0)."
    ),
    seeds: str | None = typer.Option(
        None,
        help="Repeat the run once per seed, comma-separated (e.g. 0,1,2): each seed an "
        "ordinary recorded run sharing one repeat id (repeat_of), then each metric's mean, "
        "standard deviation, min and max over the seeds. The seeds run as tasks of "
        "--backend/--parallel; instead of --seed.",
    ),
    bootstrap: int | None = typer.Option(None, help="Bootstrap resamples for intervals."),
    symbol: list[str] = typer.Option(
        None,
        "--symbol",
        help="Train on this symbol's windows only (repeatable; feature windows over several "
        "symbols): a per-symbol model, cut at the split's times.",
    ),
    resume: str | None = typer.Option(
        None,
        help="Continue an interrupted run (its id) from its checkpoints, with the config it "
        "started with: finished folds are kept, the fit in progress goes on from its last "
        "epoch.",
    ),
    backend: str = typer.Option(
        "local",
        help="Where an out-of-fold run's folds (with --seeds: the seeds' runs) run: local "
        "(this machine; --parallel processes) or ray (Ray tasks; see --address). Same as "
        "moola tune's.",
    ),
    parallel: int = typer.Option(
        1,
        min=1,
        help="Folds (with --seeds: seeds) at once (local processes, or CPUs of a local Ray "
        "instance).",
    ),
    address: str | None = typer.Option(
        None,
        help="Ray cluster for --backend ray: auto or HOST:PORT of its head (default: start a "
        "local Ray instance).",
    ),
    nproc: int = typer.Option(
        1,
        min=1,
        help="Train each fit in N processes on this machine (torchrun; one GPU each on CUDA, "
        "else gloo on the CPU): each takes its share of every batch, only the first records.",
    ),
) -> None:
    """Train one model with out-of-fold or holdout validation and record the run.

    While it works, the run keeps checkpoints (finished folds, each epoch of a neural fit)
    under artifacts/checkpoints/RUN; if it is interrupted, `moola train --resume RUN`
    continues it to the result an uninterrupted run gives.
    """
    from moola.models import require_active
    from moola.pipeline.train import TrainConfig
    from moola.training import distributed

    if backend not in ("local", "ray"):
        raise ConfigError(f"Unknown backend {backend!r}; use local or ray.", param="backend")
    if address is not None and backend != "ray":
        raise ConfigError("--address names a Ray cluster; give --backend ray with it.")
    if nproc > 1 and (backend == "ray" or parallel > 1):
        raise ConfigError(
            "--nproc trains every fit in several processes; --backend ray and --parallel "
            "spread the folds instead. Choose one of them."
        )
    seed_list = _parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None:
        clash = [
            flag for flag, value in (("--seed", seed), ("--resume", resume)) if value is not None
        ] + (["--nproc"] if nproc > 1 else [])
        if clash:
            raise ConfigError(
                f"--seeds trains one run per seed it lists; drop {', '.join(clash)}.",
                param="seeds",
            )
    if nproc > 1 and not distributed.under_launcher():
        raise typer.Exit(distributed.launch(nproc, sys.argv[1:]))
    if backend == "local":
        backend = "serial" if parallel == 1 else "process"
    scale = {"backend": backend, "workers": parallel, "address": address}
    if resume is not None:
        given = {
            "--model": model, "--dataset": dataset, "--split": split, "--config": config,
            "--params": params, "--calibration": calibration, "--inputs": inputs,
            "--synthetic": synthetic, "--base-run": base_run or None,
            "--pretrained-encoder": pretrained_encoder, "--seed": seed,
            "--bootstrap": bootstrap, "--symbol": symbol or None,
        }  # fmt: skip
        extra = [flag for flag, value in given.items() if value is not None]
        if extra:
            raise ConfigError(
                f"--resume continues run {resume} with the config it started with; drop "
                + ", ".join(extra)
                + "."
            )
        _train_resumable(ctx, None, resume, scale)
        return

    overrides: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "split": split,
        "calibration": calibration,
        "inputs": inputs,
        "synthetic": synthetic,
        "allow_low_quality_synthetic": allow_low_quality_synthetic,
        "seed": seed,
        "n_bootstrap": bootstrap,
        "base_runs": base_run or None,
        "symbols": symbol or None,
    }
    if params is not None:
        try:
            overrides["params"] = json.loads(params)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--params is not valid JSON ({exc}): {params}") from None
        if not isinstance(overrides["params"], dict):
            raise ConfigError(
                f"--params must be a JSON object of parameter names and values, e.g. "
                f'{{"C": 0.5}}; got {params}'
            )
    if pretrained_encoder is not None:
        overrides["params"] = {
            **(overrides.get("params") or {}),
            "pretrained_encoder": str(pretrained_encoder),
        }
    # Seed precedence: this --seed, the global --seed, the config file's seed, then the
    # settings' seed (MOOLA_SEED or 0).
    if overrides["seed"] is None:
        overrides["seed"] = ctx.find_root().params.get("seed")
    fallback_seed = settings_of(ctx).seed
    if config is not None:
        resolved = load_config(config, TrainConfig, **overrides)
        if "seed" not in resolved.model_fields_set:
            resolved = resolved.model_copy(update={"seed": fallback_seed})
    else:
        overrides["seed"] = fallback_seed if overrides["seed"] is None else overrides["seed"]
        missing = [flag for flag in ("model", "dataset", "split") if overrides[flag] is None]
        if missing:
            raise ConfigError(
                "moola train needs "
                + ", ".join(f"--{m}" for m in missing)
                + " (or a --config file that sets them)."
            )
        given = {key: value for key, value in overrides.items() if value is not None}
        resolved = parse_config(TrainConfig, given, where="moola train flags")
    # A retired or unknown model is refused before the data is read.
    require_active(resolved.model)
    if seed_list is not None:
        _train_seeds(ctx, resolved, seed_list, scale)
        return
    _train_resumable(ctx, resolved, None, scale)


def _parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` as integers; anything else is refused naming the flag."""
    parts = [part.strip() for part in text.split(",")]
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise ConfigError(
            f"--seeds takes comma-separated integer seeds, e.g. 0,1,2; got {text!r}.",
            param="seeds",
        ) from None
    if any(seed < 0 for seed in seeds):
        raise ConfigError(f"--seeds must be non-negative; got {text!r}.", param="seeds")
    return seeds


def _train_seeds(ctx: typer.Context, config: Any, seeds: list[int], scale: dict[str, Any]) -> None:
    """Train ``config`` once per seed (``moola.pipeline.train.run_seed_repeats``) on the
    chosen backend, showing each finished seed, then the summary table."""
    from moola.cli._progress import stage_display
    from moola.pipeline.train import run_seed_repeats

    executor = None
    if scale["backend"] != "serial":
        from moola.tune.executors import make_fold_executor

        executor = make_fold_executor(  # connects now: a bad address fails here
            scale["backend"], workers=scale["workers"], address=scale.get("address")
        )
    done: list[int] = []
    try:
        with stage_display(console) as display:
            display.stage(f"training {config.model} for {len(seeds)} seeds")

            def on_event(kind: str, info: dict[str, Any]) -> None:
                if kind == "seed":
                    done.append(info["seed"])
                    display.stage(f"seeds done: {len(done)}/{len(seeds)}")
                    console.print(
                        f"  seed {info['seed']}: run {info['run_id']}, "
                        + ", ".join(
                            f"{key} {_fmt(value)}"
                            for key, value in info["metrics"].items()
                            if key in ("accuracy", "log_loss", "rmse", "ic")
                        )
                    )

            repeats = run_seed_repeats(
                _registry(ctx), config, seeds, executor=executor, on_event=on_event
            )
    finally:
        if executor is not None:
            executor.shutdown()
    table = Table(title=f"{len(seeds)} seeds ({', '.join(map(str, seeds))})")
    for column in ("metric", "mean", "std", "min", "max"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, stats in repeats.summary.items():
        table.add_row(key, *(_fmt(stats[name]) for name in ("mean", "std", "min", "max")))
    console.print(table)
    console.print(f"repeat id: {repeats.repeat_id} (repeat_of in each run's results line)")


class _RunEpochs:
    """Epoch progress of a whole run (every fold's fit, then the final one), set up from
    the run's ``status`` event, when the number of fits and epochs is known."""

    def __init__(self, report: Any) -> None:
        self.report = report
        self.inner: Any = None

    def configure(self, info: dict[str, Any]) -> None:
        from moola.models import validate_params
        from moola.training.callbacks import EpochProgress

        epochs = validate_params(info["model"], info["params"]).get("epochs")
        folds = int((info.get("counts") or {}).get("folds") or 0)
        if isinstance(epochs, int) and epochs > 0:
            self.inner = EpochProgress(folds + 1 if folds else 1, epochs, self.report)

    def on_train_start(self, state: Any) -> None:
        if self.inner is not None:
            self.inner.on_train_start(state)

    def on_epoch_end(self, state: Any) -> bool:
        return bool(self.inner is not None and self.inner.on_epoch_end(state))

    def on_train_end(self, state: Any) -> None:
        if self.inner is not None:
            self.inner.on_train_end(state)


def _train_resumable(
    ctx: typer.Context, config: Any, resume: str | None, scale: dict[str, Any] | None = None
) -> None:
    """Run (or resume) a training run with its epochs' progress shown; an interrupt says
    how to resume it. ``scale``: where the folds run (backend, workers, address)."""
    from moola.pipeline.train import run_training
    from moola.training import distributed

    scale = scale or {"backend": "serial"}
    with distributed.processes(settings_of(ctx).device) as group:
        if group is not None and not group.is_main:  # rank 0 shows and records the run
            run_training(_registry(ctx), config, resume=resume)
            return
        executor = None
        if scale["backend"] != "serial":
            from moola.tune.executors import make_fold_executor

            executor = make_fold_executor(  # connects now: a bad address fails here
                scale["backend"], workers=scale["workers"], address=scale.get("address")
            )
        try:
            _train_shown(ctx, config, resume, executor)
        finally:
            if executor is not None:
                executor.shutdown()


def _train_shown(ctx: typer.Context, config: Any, resume: str | None, executor: Any) -> None:
    """The run with its progress display; an interrupt says how to resume it."""
    from moola.cli._progress import stage_display
    from moola.pipeline.train import run_training

    started: dict[str, str] = {}
    with stage_display(console) as display:
        epochs = _RunEpochs(display.update)

        def on_event(kind: str, info: dict[str, Any]) -> None:
            if kind == "checkpoints":
                started["run_id"] = info["run_id"]
                console.print(f"checkpoints: {info['folder']}")
            if kind == "status":
                epochs.configure(info)
                display.stage(f"training {info['model']} on {info['data']}")
            _on_event(kind, info)

        try:
            run_training(
                _registry(ctx),
                config,
                on_event=on_event,
                resume=resume,
                # Epoch progress lives in this process; folds run elsewhere report per fold.
                callbacks=[epochs] if executor is None else [],
                executor=executor,
            )
        except KeyboardInterrupt:
            _interrupted(started)
            raise typer.Exit(130) from None


def _interrupted(started: dict[str, str]) -> None:
    """Say how to finish an interrupted run."""
    if "run_id" in started:
        console.print(
            f"[yellow]interrupted[/]: continue with `moola train --resume {started['run_id']}`"
        )


@app.command()
def evaluate(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id (a unique prefix works)."),
    test: bool = typer.Option(False, "--test", help="Score the split's untouched test part."),
    allow_test_reuse: bool = typer.Option(
        False, help="Score a test part that was already looked at (recorded)."
    ),
) -> None:
    """Score a run on its test part, once; every look is recorded in the test ledger."""
    from moola.pipeline.lifecycle import evaluate_test

    if not test:
        raise ConfigError(
            "Say what to evaluate: `moola evaluate RUN --test` scores the test "
            "part (once). Validation/OOF metrics are already in the run."
        )
    report = evaluate_test(_registry(ctx), run_id, allow_reuse=allow_test_reuse)
    heads = report["heads"] if report.get("task") == "multitask" else {"": report}
    for head, inner in heads.items():
        _interval_table(f"test part {head}".strip(), inner)


def _interval_table(title: str, report: dict[str, Any]) -> None:
    """A report's metrics with their bootstrap intervals."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    intervals = report.get("intervals") or {}
    for key, value in report["metrics"].items():
        interval = intervals.get(key) or {}
        table.add_row(
            key, _fmt(value), f"[{_fmt(interval.get('low'))}, {_fmt(interval.get('high'))}]"
        )
    console.print(table)


@app.command()
def report(ctx: typer.Context, run_id: str = typer.Argument(..., help="Run id or prefix.")) -> None:
    """Write the run's self-contained HTML report and print its path."""
    from moola.pipeline.lifecycle import write_report

    console.print(str(write_report(_registry(ctx), run_id)))


@app.command()
def promote(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id or prefix."),
    min_accuracy: float | None = typer.Option(
        None, help="Gate: minimum accuracy (classification runs: 0.68 unless given)."
    ),
    max_ece: float | None = typer.Option(
        None, help="Gate: maximum expected calibration error (classification runs: 0.05)."
    ),
    gate: list[str] = typer.Option(
        [],
        "--gate",
        help="Gate on any metric of the run's report, repeatable: 'ic>0.02', 'rmse<0.01', "
        "'accuracy_ci_low>=0.6', '<head>.<metric>' for a multi-task run.",
    ),
    min_sharpe: float | None = typer.Option(
        None, help="Gate: minimum Sharpe ratio of the run's latest valid backtest, e.g. 1.0."
    ),
    max_drawdown: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Gate: maximum drawdown of the run's latest valid backtest, a fraction of the "
        "peak (0.15 = 15%).",
    ),
) -> None:
    """Copy a run's model into artifacts/models/promoted if it passes every gate.

    --min-sharpe and --max-drawdown judge the run's latest backtest whose leakage check
    passed (`moola backtest run RUN ...`).
    """
    from moola.evaluation.gates import parse_gate
    from moola.pipeline.lifecycle import NoBacktestError
    from moola.pipeline.lifecycle import promote as promote_run

    given = {
        "min_accuracy": min_accuracy,
        "max_ece": max_ece,
        "min_sharpe": min_sharpe,
        "max_drawdown": max_drawdown,
    }
    overrides = {key: value for key, value in given.items() if value is not None}
    overrides["metric_gates"] = tuple(parse_gate(text) for text in gate)
    try:
        decision = promote_run(_registry(ctx), run_id, overrides=overrides)
    except NoBacktestError as exc:
        flags = " and ".join("--" + gate.replace("_", "-") for gate in exc.gates)
        raise ConfigError(
            f"Run {exc.run_id} has no backtest whose leakage check passed, so {flags} have "
            f"nothing to judge: run `moola backtest run {exc.run_id} --long-class CLASS "
            "--hold-bars N` (a regression run: `--policy sign|scaled --hold-bars N`) first, "
            "then promote again (or drop " + flags + ")."
        ) from None
    console.print(f"[green]promoted[/] on {decision['basis']} metrics: {decision['path']}")
    if "backtest" in decision:
        console.print(f"  backtest gates judged on {decision['backtest']}")
