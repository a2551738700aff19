"""The README's examples run as written (docs that drift are bugs): its Python block, and
every command of its "Command line" list, with flags that exist, on small data."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "('consolidation', 'retracement')" in out
    assert (tmp_path / "moola_data" / "data" / "splits" / "es-fc" / "v1.json").is_file()


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if line and not line.startswith("#")][-1]
    assert command.strip() in README.read_text()


# -- the "Command line" list ---------------------------------------------------------------
#
# Every command the README lists runs here, in the order a user would type them, on tiny
# data (a 3,000-bar random walk, 40 labelled windows, one-epoch 8-unit networks). Values
# in braces are filled in when the command runs: {tmp} (input files), {root} (the data
# root), {oof} / {holdout} (the last out-of-fold classification / holdout run), {forecast}
# (the last regression run), {rl} (the last RL run), {session} (the last paper session).

TINY_LSTM = json.dumps({"epochs": 1, "hidden": 8, "heads": 2, "fc": [8], "batch_size": 16})
TINY_BILSTM = json.dumps({"epochs": 1, "hidden": 8, "fc": [8], "batch_size": 32})
TINY_ENHANCED = json.dumps({"epochs": 1, "feature_hidden": [8], "fc": [8], "batch_size": 16})
ENCODER = "{root}/artifacts/encoders/bilstm_mae_rel11_v1.pt"
RL_REWARD = json.dumps(
    {"components": [{"name": "equity_change"}, {"name": "overtrading", "weight": -0.001}]}
)
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("doctor",),
    ("data", "ingest", "{tmp}/es.csv", "--name", "es", "--format", "csv", "--symbol", "ES",
     "--timeframe", "1m", "--mode", "strict", "--calendar", "futures", "--tz", "UTC"),
    ("data", "ingest", "{tmp}/es-part*.csv", "--name", "es-parts", "--symbol", "ES",
     "--timeframe", "1m", "--force"),
    # the GKG fixture files (tests/fixtures/gdelt) fall inside es's bars
    ("sentiment", "ingest", "{tmp}/2024*.gkg.csv.zip", "--name", "news", "--pair", "EURUSD"),
    ("sentiment", "score", "news", "--scorer", "tone"),
    ("sentiment", "features", "--raw", "es", "--news", "news-tone", "--lag", "15min",
     "--name", "es-sent"),
    ("sentiment", "ablation", "--raw", "es", "--news", "news-tone", "--length", "8",
     "--regime-window", "60", "--epochs", "1", "--stride", "5"),
    ("data", "synth", "--name", "mkt", "--bars", "3000", "--seed", "0",
     "--calendar", "crypto", "--patterns", "5", "--labels-out", "{tmp}/planted.csv"),
    # windows to label from mkt (nothing labelled there yet); the labels a person gives in
    # the browser (tests/annotate drive the page) are recorded before the commit below
    ("annotate", "extract", "mkt", "--n", "3", "--length", "30", "--context", "5",
     "--name", "b1", "--weights", "session"),
    ("annotate", "commit", "--batch", "b1", "--into", "mkt-hand"),
    ("annotate", "stats", "--json"),
    ("data", "synth", "--name", "crypto3", "--symbols", "BTC-USD,ETH-USD,SOL-USD",
     "--timeframe", "1m", "--bars", "2000", "--calendar", "crypto", "--correlation", "0.7"),
    ("data", "list"),
    ("data", "show", "es@v1"),
    ("data", "verify", "--full"),
    ("data", "gc"),
    ("data", "windows", "mkt", "--name", "unl", "--length", "105", "--stride", "10"),
    ("data", "windows", "es@v1", "--name", "pat", "--length", "105",
     "--labels", "{tmp}/labels.csv"),
    ("data", "split", "pat", "--strategy", "purged-kfold", "--folds", "3", "--purge", "105",
     "--embargo", "1h", "--name", "kf"),
    ("data", "split", "pat", "--strategy", "forward-chaining", "--purge", "30min",
     "--val-fraction", "0.25", "--test-fraction", "0.25", "--name", "fc"),
    ("data", "augment", "pat", "--split", "fc", "--method", "scaling", "--name", "pat-syn",
     "--sigma", "0.01", "--copies", "1", "--seed", "0"),
    ("data", "split", "pat", "--strategy", "walk-forward", "--folds", "2", "--test-size", "8",
     "--train-size", "16", "--purge", "105", "--name", "wf"),
    ("features", "list"),
    ("features", "build", "--raw", "es", "--set", "intraday31", "--name", "es-f"),
    ("features", "show", "es-f", "--rows", "3"),
    ("features", "build", "--bars", "{tmp}/es.csv", "--set", "relative11",
     "--out", "{tmp}/rel.parquet", "--symbol", "ES", "--timeframe", "1m"),
    ("bars", "dc", "--raw", "es", "--threshold", "0.001", "--out", "{tmp}/dc.csv"),
    ("labels", "build", "--kind", "triple-barrier", "--horizon", "10", "--raw", "es",
     "--name", "es-tb", "--pt-mult", "2", "--sl-mult", "1"),
    ("data", "windows", "es", "--name", "es-tbw", "--length", "30", "--labels-from", "es-tb",
     "--label-column", "label"),
    ("data", "windows", "es", "--name", "es-fw", "--features", "intraday31", "--length", "30",
     "--stride", "5", "--labels-from", "es-tb", "--label-column", "label"),
    ("data", "windows", "es", "--name", "es-fws", "--features", "intraday31", "--length", "30",
     "--stride", "5", "--labels-from", "es-tb", "--label-column", "label",
     "--extra-features", "es-sent"),
    ("labels", "build", "--kind", "realized-vol", "--horizon", "10", "--raw", "es",
     "--name", "es-rv"),
    ("data", "windows", "es", "--name", "es-mt", "--features", "intraday31", "--length", "30",
     "--stride", "5", "--labels-from", "es-tb", "--labels-from", "es-rv", "--target", "label",
     "--target", "realized_vol"),
    ("data", "windows", "mkt,crypto3", "--name", "fw-multi", "--features", "intraday31",
     "--length", "30", "--stride", "50"),
    ("data", "windows", "es", "--name", "es-rvw", "--features", "intraday31", "--length", "30",
     "--stride", "5", "--labels-from", "es-rv", "--target", "realized_vol"),
    ("data", "split", "es-rvw", "--strategy", "walk-forward", "--folds", "2", "--purge", "10",
     "--name", "es-rvwf"),
    ("train", "--model", "bilstm", "--dataset", "es-rvw", "--split", "es-rvwf",
     "--params", TINY_BILSTM, "--bootstrap", "20"),
    ("promote", "{forecast}", "--gate", "ic>-1"),
    ("backtest", "run", "{forecast}", "--policy", "sign", "--threshold", "0.0005",
     "--hold-bars", "5"),
    ("backtest", "run", "{forecast}", "--policy", "scaled", "--allow-short", "--hold-bars", "5"),
    ("labels", "build", "--kind", "forward-return", "--horizon", "5", "--bars", "{tmp}/es.csv",
     "--out", "{tmp}/fwd.csv", "--symbol", "ES", "--timeframe", "1m", "--neutral-band", "0.0001"),
    ("pretrain", "masked-ae", "--unlabeled", "unl", "--epochs", "1", "--mask-ratio", "0.15",
     "--hidden", "8", "--layers", "1", "--max-windows", "64", "--batch-size", "32"),
    ("pretrain", "ts2vec", "--unlabeled", "unl", "--epochs", "1", "--hidden", "8",
     "--repr-dim", "16", "--depth", "1", "--max-windows", "64", "--batch-size", "32"),
    ("models", "list"),
    ("train", "--model", "simple_lstm", "--dataset", "pat", "--split", "kf",
     "--params", TINY_LSTM, "--bootstrap", "20", "--pretrained-encoder", ENCODER),
    ("train", "--config", "{tmp}/run.yaml"),
    ("train", "--model", "fm_probe", "--dataset", "pat", "--split", "kf", "--params",
     '{"backbone": "chronos", "path": "{tmp}/chronos"}', "--bootstrap", "20"),
    ("foundation", "register", "chronos", "{tmp}/chronos"),
    ("foundation", "features", "es", "--kind", "chronos", "--path", "{tmp}/chronos",
     "--name", "es-fm", "--context", "32", "--horizon", "5", "--quantiles", "0.5,0.1,0.9"),
    ("train", "--model", "logistic_regression", "--dataset", "pat", "--split", "kf",
     "--backend", "local", "--parallel", "2", "--bootstrap", "20"),
    ("train", "--model", "random_forest", "--dataset", "pat", "--split", "kf", "--seeds",
     "0,1", "--bootstrap", "20", "--params", '{"n_estimators": 5}'),
    ("train", "--model", "logistic_regression", "--dataset", "pat", "--split", "fc",
     "--synthetic", "pat-syn", "--allow-low-quality-synthetic", "--bootstrap", "20"),
    ("train", "--model", "enhanced_simple_lstm", "--dataset", "pat", "--split", "fc",
     "--inputs", "relative", "--calibration", "temperature", "--params", TINY_ENHANCED,
     "--bootstrap", "20", "--pretrained-encoder", ENCODER),
    ("evaluate", "{holdout}", "--test"),
    ("annotate", "review", "{oof}", "--limit", "5", "--name", "rev1"),
    ("tune", "run", "--space", "{tmp}/space.yaml", "--study", "s1", "--trials", "2",
     "--seed", "1", "--sampler", "random", "--pruner", "median"),
    ("tune", "show", "s1", "--limit", "2"),
    ("tune", "report", "s1"),
    ("tune", "phases", "{tmp}/phases.yaml", "--seed", "2"),
    ("runs", "list"),
    ("runs", "show", "{oof}"),
    ("runs", "compare", "--sort", "ece", "--ascending"),
    ("runs", "migrate", "{oof}", "--trust"),
    ("runs", "journal", "--last", "5"),
    ("runs", "journal", "--kind", "test_look", "--run", "{oof}", "--json"),
    ("report", "{oof}"),
    ("promote", "{holdout}", "--min-accuracy", "0", "--max-ece", "1"),
    ("backtest", "file", "--bars", "{tmp}/es.csv", "--signals", "{tmp}/signals.csv",
     "--out", "{tmp}/bt", "--symbol", "ES", "--timeframe", "1m", "--instrument", "futures:NQ",
     "--commission", "0.0005", "--spread", "0.25", "--slippage-bps", "1", "--latency", "1",
     "--engine", "event"),
    ("backtest", "run", "{oof}", "--long-class", "up", "--short-class", "down",
     "--hold-bars", "10", "--threshold", "0.55"),
    ("promote", "{oof}", "--min-accuracy", "0", "--max-ece", "1", "--min-sharpe", "-100",
     "--max-drawdown", "1"),
    # {tmp}/live.yaml names the run just promoted (written before each command); its
    # daily loss limit is tiny, so the session halts and `unlock` has a halt to lift
    ("live", "run", "--config", "{tmp}/live.yaml", "--mode", "paper", "--replay", "es",
     "--max-bars", "300"),
    ("live", "status", "--config", "{tmp}/live.yaml"),
    ("live", "signals", "--config", "{tmp}/live.yaml", "--since", "2024-01-01", "--format",
     "json"),
    ("live", "unlock", "--config", "{tmp}/live.yaml", "--by", "ops", "--reason", "reviewed"),
    ("live", "kill", "on", "--config", "{tmp}/live.yaml", "--by", "ops", "--reason", "drill"),
    ("live", "kill", "off", "--config", "{tmp}/live.yaml"),
    ("live", "parity", "{session}", "--config", "{tmp}/live.yaml", "--format", "json"),
    ("rl", "scan", "es", "--out", "es-mom", "--reset-every", "60", "--timezone", "UTC"),
    ("rl", "train", "--dataset", "pat", "--split", "fc", "--algo", "a2c", "--timesteps", "64",
     "--n-envs", "2", "--action-space", "target", "--max-steps", "40", "--eval-freq", "32",
     "--execution", '{"spread": 0.25, "commission": 0.0005}', "--reward", RL_REWARD,
     "--params", '{"n_steps": 8}'),
    ("rl", "eval", "{rl}"),
    ("rl", "train", "--dataset", "pat", "--split", "fc", "--algo", "a2c", "--timesteps", "32",
     "--n-envs", "2", "--action-space", "target", "--max-steps", "40", "--eval-freq", "32",
     "--params", '{"n_steps": 8}', "--from", "{rl}"),
    ("rl", "train", "--dataset", "pat", "--split", "fc", "--timesteps", "32", "--eval-freq",
     "32", "--params", '{"n_steps": 16}', "--timescale", "15m=4", "--extractor",
     "multi_timescale"),
    ("rl", "eval", "{rl}", "--test", "--allow-reuse"),
    ("data", "blacklist", "add", "es", "--start-ts", "2024-01-01 01:00", "--end-ts",
     "2024-01-01 01:30", "--reason", "bad ticks", "--symbol", "ES"),
    ("data", "blacklist", "list"),
)  # fmt: skip


def _cli_tree() -> Any:
    from typer.main import get_command

    from moola.cli.main import app

    return get_command(app)


def _command_name(argv: tuple[str, ...] | list[str], tree: Any) -> str:
    """``moola ARGV``'s command: ``data ingest``, ``train``, ``data blacklist add``..."""
    names, command = [], tree
    for arg in argv:
        if not hasattr(command, "commands") or arg not in command.commands:
            break
        command = command.commands[arg]
        names.append(arg)
    return " ".join(names)


def _readme_entries() -> list[str]:
    """The "Command line" block's entries: each ``moola ...`` line joined with its
    continuation lines, comments dropped."""
    section = README.read_text().split("## Command line", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, flags=re.S).group(1)
    entries: list[str] = []
    for line in block.splitlines():
        text = re.sub(r"(^|\s)#.*$", "", line).strip()
        if text.startswith("moola "):
            entries.append(text)
        elif text:
            entries[-1] += " " + text
    return entries


def _entry_commands(entry: str, tree: Any) -> list[str]:
    """Command names in one README entry; ``runs list | show RUN | compare`` names three."""
    tokens = entry.split()[1:]
    group = tree.commands.get(tokens[0])
    assert group is not None, f"README lists `moola {tokens[0]}`, which is no moola command"
    if not hasattr(group, "commands"):
        return [tokens[0]]
    if hasattr(group.commands.get(tokens[1]), "commands"):  # a group in a group
        group, tokens = group.commands[tokens[1]], [f"{tokens[0]} {tokens[1]}", *tokens[2:]]
    subs = [tokens[1]] + [b for a, b in itertools.pairwise(tokens) if a == "|"]
    for sub in subs[:1]:
        assert sub in group.commands, f"README lists `moola {tokens[0]} {sub}`: no such command"
    return [f"{tokens[0]} {sub}" for sub in subs if sub in group.commands]


def _required_flags(entry: str) -> set[str]:
    """Flags an entry shows outside ``[optional]`` and ``(alternative)`` groups."""
    text, previous = entry, None
    while text != previous:
        previous, text = text, re.sub(r"\[[^\[\]]*\]|\([^()]*\)", "", text)
    return set(re.findall(r"--[a-z][a-z0-9-]*", text))


def _options(tree: Any, name: str) -> set[str]:
    command = tree
    for part in name.split():
        command = command.commands[part]
    return {
        flag
        for param in command.params
        if param.param_type_name == "option"
        for flag in (*param.opts, *param.secondary_opts)
    }


def test_the_readme_lists_commands_and_every_one_has_a_runnable_invocation():
    tree = _cli_tree()
    listed = {name for entry in _readme_entries() for name in _entry_commands(entry, tree)}
    assert {"data ingest", "train", "runs compare", "backtest file", "backtest run"} <= listed
    covered = {_command_name(argv, tree) for argv in COMMANDS}
    assert listed <= covered, f"README commands without an invocation here: {listed - covered}"
    for entry in _readme_entries():  # each form: `train --model simple_lstm`, `enhanced_...`
        names, required = _entry_commands(entry, tree), _required_flags(entry)
        models = set(re.findall(r"--model ([a-z_]+)", entry))
        assert any(
            _command_name(argv, tree) in names
            and required <= set(argv)
            and models <= {b for a, b in itertools.pairwise(argv) if a == "--model"}
            for argv in COMMANDS
        ), f"no invocation here runs the README's `{entry[:70]}...`"


def test_every_flag_the_readme_shows_exists_on_its_command():
    tree = _cli_tree()
    global_flags = {f for p in tree.params for f in (*p.opts, *p.secondary_opts)}
    for entry in _readme_entries():
        valid = set(global_flags)
        for name in _entry_commands(entry, tree):
            valid |= _options(tree, name)
        unknown = set(re.findall(r"--[a-z][a-z0-9-]*", entry)) - valid
        assert not unknown, f"README line `{entry[:60]}...` shows flags moola lacks: {unknown}"


@pytest.fixture
def inputs(tmp_path) -> Path:
    """The files the commands read: bars, labels (40 windows), signals and a run config."""
    from moola.testing.foundation import tiny_chronos_bolt
    from tests.conftest import random_walk_bars

    folder = tmp_path / "in"
    folder.mkdir()
    bars = random_walk_bars(3_000, symbol="ES")
    frame = bars[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame.to_csv(folder / "es.csv", index=False)
    frame.iloc[:1_600].to_csv(folder / "es-part1.csv", index=False)  # overlapping halves
    frame.iloc[1_500:].to_csv(folder / "es-part2.csv", index=False)
    starts = np.arange(40) * 70
    pd.DataFrame({"start": starts, "label": np.where(starts % 140, "up", "down")}).to_csv(
        folder / "labels.csv", index=False
    )
    rows = np.arange(0, 3_000, 50)
    pd.DataFrame(
        {"timestamp": frame["timestamp"].iloc[rows], "position": np.sign(np.sin(rows))}
    ).to_csv(folder / "signals.csv", index=False)
    tiny_chronos_bolt(folder / "chronos")  # stands in for downloaded Chronos-Bolt weights
    for gkg in (Path(__file__).parent / "fixtures" / "gdelt").glob("2024*.gkg.csv.zip"):
        shutil.copy(gkg, folder / gkg.name)
    space = (
        "run: {kind: train, model: logistic_regression, dataset: pat, split: kf, n_bootstrap: 20}\n"
    )
    space += "objective: {metric: log_loss}\nparams:\n"
    (folder / "space.yaml").write_text(
        space + "  params.C: {type: float, low: 0.01, high: 10.0, log: true}\n"
    )
    (folder / "calibration.yaml").write_text(
        space + "  calibration: {type: categorical, choices: [none, platt]}\n"
    )
    (folder / "phases.yaml").write_text(
        "name: ph\nphases:\n  - {space: space.yaml, trials: 2}\n"
        "  - {space: calibration.yaml, trials: 1}\n"
    )
    (folder / "run.yaml").write_text(
        "model: logistic_regression\ndataset: pat\nsplit: fc\nn_bootstrap: 20\n"
    )
    return folder


def _filled(arg: str, values: dict[str, str]) -> str:
    pattern = r"\{(tmp|root|oof|holdout|forecast|rl|session)\}"
    return re.sub(pattern, lambda match: values[match[1]], arg)


def _last_session(db: Path) -> str:
    """The newest paper session's id in ``db`` ("-" before there is one)."""
    import sqlite3

    if not db.is_file():
        return "-"
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT id FROM sessions ORDER BY started_at DESC").fetchone()
    return "-" if row is None else str(row[0])


def _live_config(path: Path, run_id: str) -> None:
    """A paper session's config trading ES with ``run_id`` (classes up/down) as its one
    member, read uncalibrated with tiers just above 0.5 so that the one-epoch network's
    probabilities make signals, and a daily loss limit of 0.01% so that the first order's
    fee halts the session (``unlock`` then has a halt to lift)."""
    path.write_text(
        "mode: paper\nsymbols: [ES]\n"
        f"members:\n  - {{role: direction, run: {run_id}, up_class: up}}\n"
        "execution: {instrument: equity, initial_cash: 100000, commission: 0.001}\n"
        "risk: {max_position: 50, daily_loss: 0.0001}\n"
        "calibration: false\n"  # the tiny member's raw probabilities, barely off 0.5
        "tiers: {high: 0.502, medium: 0.501, low: 0.5001}\n",
        encoding="utf-8",
    )


def _label_batch(root: Path, name: str) -> None:
    """What a person does in the labelling page: the first window labelled and graded A,
    the second graded D (blacklisted), the rest skipped."""
    from moola.annotate.model import NewAction
    from moola.annotate.store import BatchStore

    store = BatchStore.open(root, name)
    first, second, *rest = [window.window_id for window in store.batch.windows]
    store.record(NewAction(window_id=first, kind="label", label="consolidation", by="readme"))
    store.record(NewAction(window_id=first, kind="grade", grade="A", by="readme"))
    store.record(NewAction(window_id=second, kind="grade", grade="D", by="readme"))
    for window in rest:
        store.record(NewAction(window_id=window, kind="skip", by="readme"))


def test_every_readme_command_runs_on_small_data(tmp_path, inputs):
    from typer.testing import CliRunner

    from moola.cli.main import app
    from moola.tracking.runs import RunStore

    root = tmp_path / "moola_data"
    runner = CliRunner()
    for argv in COMMANDS:
        runs = RunStore(root).results() if root.exists() else []
        values = {
            "tmp": str(inputs),
            "root": str(root),
            "oof": next(
                (
                    r["run_id"]
                    for r in reversed(runs)
                    if r.get("mode") == "oof"
                    and r.get("task", "classification") == "classification"
                ),
                "-",
            ),
            "forecast": next(
                (r["run_id"] for r in reversed(runs) if r.get("task") == "regression"), "-"
            ),
            "holdout": next(
                (r["run_id"] for r in reversed(runs) if r.get("mode") == "holdout"), "-"
            ),
            "rl": next((r["run_id"] for r in reversed(runs) if r.get("kind") == "rl"), "-"),
            "session": _last_session(root / "live" / "paper.db"),
        }
        args = [_filled(arg, values) for arg in argv]
        _live_config(inputs / "live.yaml", values["oof"])
        if args[:2] == ["annotate", "commit"]:
            _label_batch(root, "b1")
        result = runner.invoke(app, ["--data-root", str(root), *args])
        assert result.exit_code == 0, (
            f"`moola {' '.join(args)}` exited {result.exit_code}:\n{result.output}"
            f"{result.exception!r}"
        )


def _run_walkthroughs(section_title: str, root: Path, run_kind: str) -> list[str]:
    """Run the ```bash blocks of README section ``section_title`` line by line from the
    current folder (``python ...`` lines as subprocesses, ``moola ...`` through the CLI);
    ``RUN`` is the last recorded run of kind ``run_kind``. Returns the blocks' texts."""
    import shlex
    import subprocess
    import sys

    from typer.testing import CliRunner

    from moola.cli.main import app
    from moola.tracking.runs import RunStore

    section = README.read_text().split(f"## {section_title}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    # ```yaml blocks whose first line is "# NAME" are the files NAME the commands read
    files = {
        text.splitlines()[0].removeprefix("# ").strip(): text
        for text in re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
        if text.startswith("# ")
    }
    runner = CliRunner()
    for block in blocks:
        for line in block.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            argv = shlex.split(line)
            if argv[0] == "python":
                subprocess.run([sys.executable, *argv[1:]], check=True)
                continue
            assert argv[0] == "moola", line
            runs = [r for r in RunStore(root).results() if r.get("kind") == run_kind]
            argv = [runs[-1]["run_id"] if arg == "RUN" else arg for arg in argv[1:]]
            for name, text in files.items():
                run = runs[-1]["run_id"] if runs else "RUN"
                Path(name).write_text(re.sub(r"\bRUN\b", run, text), encoding="utf-8")
            result = runner.invoke(app, ["--data-root", str(root), *argv])
            assert result.exit_code == 0, f"`{line}` exited {result.exit_code}:\n{result.output}"
    return blocks


def test_the_forecasting_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """The "Forecasting on feature windows" section's two walkthroughs, command by command
    (``RUN`` is the run the previous ``train`` recorded), on synthetic and on real prices."""
    from moola.tracking.runs import RunStore

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "moola_data"
    blocks = _run_walkthroughs("Forecasting on feature windows", root, "train")
    assert len(blocks) == 2
    trained = [r for r in RunStore(root).results() if r.get("kind") == "train"]
    assert [r["task"] for r in trained] == ["classification", "regression", "regression"]


def test_the_rl_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """The "Reinforcement learning" section's walkthrough on the S&P 500 daily bars, command
    by command (``RUN`` is the RL run the previous ``rl train`` recorded)."""
    from moola.tracking.runs import RunStore

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "moola_data"
    assert len(_run_walkthroughs("Reinforcement learning", root, "rl")) == 1
    store = RunStore(root)
    (run,) = [r for r in store.results() if r.get("kind") == "rl"]
    looks = [r for r in store.results() if r.get("kind") == "rl-evaluate"]
    assert [r["part"] for r in looks] == ["val", "test"]
    report = (store.run_dir(run["run_id"]) / "report.html").read_text()
    assert "Curriculum" in report and "Test period, played" in report


def test_the_tuning_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """The "Tuning" section: its space and phases files and commands, in order; every trial
    is a recorded run of its study, and no trial looked at the test part."""
    from moola.tracking.runs import RunStore

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "moola_data"
    assert len(_run_walkthroughs("Tuning", root, "train")) == 1
    results = RunStore(root).results()
    trials = [r for r in results if r.get("study") == "pat-lr"]
    assert sorted(r["trial"] for r in trials) == [0, 1, 2, 3]
    assert (root / "artifacts" / "studies" / "pat-lr" / "report.html").is_file()
    assert not [r for r in results if r.get("kind") == "evaluate"]  # no test look


def test_the_paper_trading_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """The "Paper and live trading" section: its live.yaml and commands, in order; the
    session decides every bar, sends orders, and its journal reads back."""
    import sqlite3

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KILL_SWITCH", raising=False)
    monkeypatch.delenv("DB_URL_PAPER", raising=False)
    root = tmp_path / "moola_data"
    assert len(_run_walkthroughs("Paper and live trading", root, "train")) == 1
    with sqlite3.connect(root / "live" / "paper.db") as db:
        (intents,) = db.execute("SELECT COUNT(*) FROM order_intents").fetchone()
        (iterations,) = db.execute("SELECT COUNT(*) FROM iterations").fetchone()
    assert iterations == 600 and intents > 0
