"""Fuzzing every input a user hands moola: bad input is a clean error, never a traceback.

For each case hypothesis breaks a file (truncated, bit-flipped, spliced, noise) or a flag
(wrong type, out of range, absurd text), runs ``moola`` as a user would, and checks the
rule of ``moola.core.errors``: exit code 0 or 2, no traceback, on failure a message naming
the input (file name or flag), and the data root, inputs and outputs byte-identical.

Cases per test follow the hypothesis profile loaded in ``tests/conftest.py``: small for
``make test``, deep for ``make fuzz`` (``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moola.core.settings import load_config
from moola.data.registry import Registry
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from tests.fuzz_helpers import (
    Format,
    budget,
    check_clean,
    csv_bytes,
    flag_value,
    formats,
    hostile_text,
    mutated,
    record,
    run_cli,
    run_library,
    snapshot,
    timestamp_text,
)

FORMATS = formats()
LENGTH = 30  # window length of the template's datasets
_MARKET = {"n_bars": 6_000, "n_patterns": 40, "pattern_length": LENGTH, "seed": 2}


@dataclass(frozen=True)
class Work:
    """One case's folders: a copy of the template data root, its input and output files."""

    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def inputs(self) -> Path:
        return self.folder / "in"

    @property
    def outputs(self) -> Path:
        return self.folder / "out"

    def write(self, name: str, data: bytes) -> Path:
        path = self.inputs / name
        path.write_bytes(data)
        return path

    def moola(self, target: str, argv: list[str], names: list[str]) -> None:
        """Run ``moola --data-root ROOT ARGV`` and check the rule on the outcome."""
        before = snapshot(self.folder)
        outcome = run_cli(["--data-root", str(self.root), *argv])
        check_clean(target, outcome, names, before, snapshot(self.folder))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A small data root: raw ``mkt``, labeled ``pat`` with splits ``fc`` and ``kf``,
    unlabeled ``uw``; plus valid bar and signal files in ``in/``."""
    folder = tmp_path_factory.mktemp("fuzz-template")
    registry = Registry(folder / "root")
    raw, market = synthesize_raw(registry, "mkt", **_MARKET)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc")
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=LENGTH)
    registry.write_unlabeled("uw", raw, length=LENGTH, stride=LENGTH)
    inputs = folder / "in"
    inputs.mkdir()
    (inputs / "bars.csv").write_bytes(csv_bytes())
    bars = pd.read_csv(inputs / "bars.csv")
    signals = pd.DataFrame({"timestamp": bars["timestamp"], "position": [1.0, 0.0, -1.0] * 40})
    signals.to_csv(inputs / "signals.csv", index=False)
    (folder / "out").mkdir()
    return folder


@contextmanager
def workspace(template: Path) -> Iterator[Work]:
    """A fresh copy of the template for one case, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="moola-fuzz-"))
    try:
        shutil.copytree(template, folder, dirs_exist_ok=True)
        yield Work(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- source files ------------------------------------------------------------------------


@budget(3.0)
@given(fmt=st.sampled_from(FORMATS), data=st.data())
def test_broken_source_files_are_clean_errors(template, fmt: Format, data):
    """Every reader (CSV, Parquet, HistData, Coinbase JSON/CSV, DBN) through ``data ingest``."""
    broken = data.draw(mutated(fmt.seed), label="file bytes")
    with workspace(template) as work:
        path = work.write(fmt.file_name, broken)
        work.moola(
            f"ingest:{fmt.file_name}",
            ["data", "ingest", path, "--name", "fz", *fmt.flags],
            [fmt.file_name, *fmt.flags[::2]],
        )


_CONSUMERS = {
    "features": "features build --set relative11 --allow-short --out {out}/f.parquet",
    "dc": "bars dc --threshold 0.001 --out {out}/dc.csv",
    "labels": "labels build --kind forward-return --horizon 3 --out {out}/l.csv",
    "backtest": "backtest file --signals {inputs}/signals.csv --out {out}/bt",
}


def _consumer_argv(command: str, path: Path, work: Work, flags: tuple[str, ...]) -> list[str]:
    """``command`` reading the bars file ``path`` with the reader's ``flags`` (only
    ``features build`` takes ``--format``)."""
    text = _CONSUMERS[command].format(out=work.outputs, inputs=work.inputs)
    pairs = [flags[i : i + 2] for i in range(0, len(flags), 2)]
    kept = [x for pair in pairs if command == "features" or pair[0] != "--format" for x in pair]
    return [*text.split(), "--bars", str(path), *kept]


@budget(1.5)
@given(
    fmt=st.sampled_from(FORMATS),
    command=st.sampled_from(["features", "dc", "labels", "backtest"]),
    data=st.data(),
)
def test_broken_bar_files_given_to_other_commands(template, fmt: Format, command: str, data):
    """``features build``, ``bars dc``, ``labels build`` and ``backtest`` read ``--bars`` too."""
    broken = data.draw(mutated(fmt.seed), label="file bytes")
    with workspace(template) as work:
        path = work.write(fmt.file_name, broken)
        work.moola(
            f"{command}:{fmt.file_name}",
            _consumer_argv(command, path, work, fmt.flags),
            [fmt.file_name, "--bars", "--symbol", "--timeframe", "signals.csv"],
        )


@budget(1.0)
@given(data=st.data())
def test_broken_signal_files_are_clean_errors(template, data):
    """``backtest --signals``: a broken signals file names itself."""
    seed = (template / "in" / "signals.csv").read_bytes()
    broken = data.draw(mutated(seed), label="signals bytes")
    with workspace(template) as work:
        path = work.write("signals.csv", broken)
        work.moola(
            "backtest:signals",
            [
                "backtest",
                "file",
                "--bars",
                work.inputs / "bars.csv",
                "--signals",
                path,
                "--out",
                work.outputs / "bt",
                "--symbol",
                "ES",
                "--timeframe",
                "1m",
            ],
            ["signals.csv", "--signals"],
        )


# --- labels files ------------------------------------------------------------------------

_LABEL_COLUMNS = ["start", "start_ts", "label", "grade", "source", "symbol", "extra"]


@functools.cache
def _bar_times() -> list[str]:
    """Open times of the template's first bars (same seed, same market), as text."""
    market = generate_market(SyntheticMarketConfig(**_MARKET))
    return market.bars["timestamp"].iloc[:400].astype(str).tolist()


def _label_cell(column: str) -> st.SearchStrategy[object]:
    if column == "start":
        return st.one_of(
            st.integers(-50, 7_000), st.floats(allow_nan=True), hostile_text(), st.none()
        )
    if column == "start_ts":
        return st.one_of(st.sampled_from(_bar_times()), timestamp_text(), st.none())
    if column == "label":
        return st.one_of(st.sampled_from(["up", "down"]), hostile_text(), st.integers(), st.none())
    if column == "grade":
        return st.one_of(st.sampled_from(list("ABCDE")), hostile_text(), st.none())
    return st.one_of(hostile_text(), st.none())


@st.composite
def labels_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A labels table (CSV or Parquet) with plausible or hostile columns and cells."""
    columns = draw(st.lists(st.sampled_from(_LABEL_COLUMNS), min_size=1, max_size=5, unique=True))
    rows = draw(st.integers(0, 8))
    table = pd.DataFrame(
        {c: draw(st.lists(_label_cell(c), min_size=rows, max_size=rows)) for c in columns}
    )
    if draw(st.booleans()):
        return "labels.csv", table.to_csv(index=False).encode("utf-8", "surrogatepass")
    buffer = io.BytesIO()
    try:
        table.astype(str).to_parquet(buffer, index=False)
    except Exception:  # a cell pyarrow cannot store: write CSV instead
        return "labels.csv", table.to_csv(index=False).encode("utf-8", "surrogatepass")
    data = buffer.getvalue()
    return "labels.parquet", draw(st.one_of(st.just(data), mutated(data)))


@budget(2.0)
@given(file=labels_files())
def test_broken_labels_files_are_clean_errors(template, file):
    """``data windows RAW --labels FILE``: wrong columns, types, fractions, rows, bytes."""
    name, data = file
    with workspace(template) as work:
        path = work.write(name, data)
        work.moola(
            "windows:labels",
            ["data", "windows", "mkt", "--name", "lw", "--length", str(LENGTH), "--labels", path],
            [name, "--labels"],
        )


# --- configs and --params ----------------------------------------------------------------

_CONFIG_KEYS = [
    "model",
    "dataset",
    "split",
    "inputs",
    "params",
    "calibration",
    "seed",
    "n_bootstrap",
    "synthetic",
    "base_runs",
    "nonsense",
]
_CONFIG_VALUES = {
    "model": ["logistic_regression", "random_forest", "nope"],
    "dataset": ["pat", "pat@v1", "pat@v7", "mkt"],
    "split": ["fc", "kf", "kf@v9"],
}
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text(),
)
_JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text(), inner)
)


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    """A YAML run config: a plausible mapping with hostile values, noise, or broken bytes."""
    values = {key: draw(st.sampled_from(choices)) for key, choices in _CONFIG_VALUES.items()} | {
        "n_bootstrap": 10
    }
    for key in draw(st.lists(st.sampled_from(_CONFIG_KEYS), max_size=3, unique=True)):
        values[key] = draw(_JSON)
    if values.get("model") == "random_forest" or not isinstance(values.get("n_bootstrap"), int):
        values["n_bootstrap"] = 10
    text = yaml.safe_dump(values).encode()
    return draw(st.one_of(st.just(text), mutated(text), st.binary(max_size=200)))


@budget(1.0)
@given(data=config_files())
def test_load_config_raises_only_config_errors(tmp_path_factory, data):
    """The library reader of YAML configs: a result or a ``ConfigError`` naming the file."""
    from moola.pipeline.train import TrainConfig

    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_bytes(data)
    outcome = run_library(lambda: load_config(path, TrainConfig))
    check_clean("load_config", outcome, ["run.yaml"], {}, {})


@budget(1.0)
@given(data=config_files())
def test_broken_train_configs_are_clean_errors(template, data):
    """``moola train --config FILE``: noise, broken YAML, wrong keys and types."""
    with workspace(template) as work:
        path = work.write("run.yaml", data)
        work.moola(
            "train:config",
            ["train", "--config", path],
            [
                "run.yaml",
                "--config",
                *_CONFIG_KEYS,
                *(v for values in _CONFIG_VALUES.values() for v in values),
            ],
        )


_PARAMS = {
    "logistic_regression": ["C", "penalty", "solver", "max_iter", "tol", "fit_intercept"],
    "random_forest": ["n_estimators", "max_depth", "min_samples_leaf", "criterion"],
    "gradient_boosting": ["n_estimators", "learning_rate", "num_leaves", "max_depth"],
}


@st.composite
def params_json(draw: st.DrawFn, model: str) -> str:
    """``--params`` text: a JSON object of the model's parameters with hostile values."""
    keys = draw(st.lists(st.sampled_from([*_PARAMS[model], "nope"]), max_size=3, unique=True))
    values = {key: draw(_SCALARS) for key in keys}
    if "n_estimators" in values and isinstance(values["n_estimators"], int):
        values["n_estimators"] = min(values["n_estimators"], 20)
    text = json.dumps(values)
    return draw(st.one_of(st.just(text), st.just(text), hostile_text()))


@budget(1.0)
@given(model=st.sampled_from(sorted(_PARAMS)), data=st.data())
def test_bad_model_params_are_clean_errors(template, model: str, data):
    """``moola train --params JSON``: unknown names, wrong types, values out of range."""
    params = data.draw(params_json(model), label="--params")
    with workspace(template) as work:
        work.moola(
            f"train:params:{model}",
            [
                "train",
                "--model",
                model,
                "--dataset",
                "pat",
                "--split",
                "fc",
                "--bootstrap",
                "10",
                "--params",
                params,
            ],
            ["--params", *_PARAMS[model], "nope"],
        )


# --- flags of every command that takes input ---------------------------------------------

Argv = tuple[list[object], list[str]]


def _options(data, flags: dict[str, st.SearchStrategy[str]]) -> list[str]:
    """Some of ``flags``, each with a drawn value."""
    chosen = data.draw(st.lists(st.sampled_from(sorted(flags)), unique=True), label="flags")
    argv: list[str] = []
    for flag in chosen:
        argv += [flag, data.draw(flags[flag], label=flag)]
    return argv


def _small_int() -> st.SearchStrategy[str]:
    return st.integers(-3, 60).map(str)


def _ingest(data, work: Work) -> Argv:
    flags = {
        "--format": flag_value(["csv", "parquet", "histdata", "coinbase", "dbn"]),
        "--symbol": flag_value(["ES"]),
        "--timeframe": flag_value(["1m", "5m", "1h"]),
        "--mode": flag_value(["strict", "repair"]),
        "--calendar": flag_value(["crypto", "fx", "futures", "equities"]),
        "--tz": flag_value(["UTC", "America/New_York", "Mars/Olympus"]),
    }
    name = data.draw(flag_value(["fz", "mkt"]), label="--name")
    argv = ["data", "ingest", work.inputs / "bars.csv", "--name", name, *_options(data, flags)]
    return argv, ["bars.csv", "--name", "name", name, *flags, *argv[5:]]


def _synth(data, work: Work) -> Argv:
    flags = {
        "--bars": flag_value(["500", "2000", "0", "-5"]),
        "--seed": flag_value(["0", "-1", "7"]),
        "--symbol": flag_value(["SYN", ""]),
        "--timeframe": flag_value(["1m", "5m", "1h", "1d", "7m"]),
        "--calendar": flag_value(["crypto", "fx", "futures", "bogus"]),
        "--patterns": flag_value(["0", "3", "1000"]),
        "--pattern-strength": flag_value(["1.0", "0.5", "0", "2"]),
    }
    options = _options(data, flags)
    if "--bars" not in options:
        options += ["--bars", "1000"]
    name = data.draw(flag_value(["syn", "mkt"]), label="--name")
    argv = ["data", "synth", "--name", name, *options]
    return argv, ["--name", "name", name, *flags, *options]


def _windows(data, work: Work) -> Argv:
    flags = {
        "--length": flag_value(["30", "2", "1", "99999"]),
        "--stride": flag_value(["1", "30", "0"]),
        "--allow-gaps": st.just(""),
    }
    raw = data.draw(flag_value(["mkt", "mkt@v1", "mkt@v3", "pat"]), label="RAW")
    options = [o for o in _options(data, flags) if o != ""]
    name = data.draw(flag_value(["w", "mkt"]), label="--name")
    argv = ["data", "windows", raw, "--name", name, *options]
    return argv, [raw, "--name", "name", name, *flags, *options]


def _split(data, work: Work) -> Argv:
    flags = {
        "--name": flag_value(["s1", "fc"]),
        "--purge": flag_value(["0", "5", "30min", "-1"]),
        "--embargo": flag_value(["0", "5", "1h"]),
        "--folds": flag_value(["2", "3", "1"]),
        "--val-fraction": flag_value(["0.15", "0", "0.9", "1.5"]),
        "--test-fraction": flag_value(["0.15", "0", "0.9"]),
        "--test-size": flag_value(["5", "0", "100"]),
        "--train-size": flag_value(["5", "0", "100"]),
        "--seed": flag_value(["0", "3"]),
    }
    strategy = data.draw(
        flag_value(["forward-chaining", "purged-kfold", "walk-forward", "stratified"]),
        label="--strategy",
    )
    dataset = data.draw(flag_value(["pat", "uw", "mkt", "pat@v2"]), label="DATASET")
    argv = ["data", "split", dataset, "--strategy", strategy, *_options(data, flags)]
    if data.draw(st.booleans(), label="--time-independent"):
        argv.append("--time-independent")
    return argv, [dataset, "--strategy", "strategy", strategy, *flags, *argv[5:]]


def _features(data, work: Work) -> Argv:
    feature_set = data.draw(flag_value(["relative11", "intraday31", "nope"]), label="--set")
    if data.draw(st.booleans(), label="from raw"):
        raw = data.draw(flag_value(["mkt", "mkt@v2"]), label="--raw")
        name = data.draw(flag_value(["feat", "mkt"]), label="--name")
        argv = ["features", "build", "--set", feature_set, "--raw", raw, "--name", name]
    else:
        out = data.draw(flag_value(["f.parquet", "f.csv", "f.txt"]), label="--out")
        argv = [
            "features",
            "build",
            "--set",
            feature_set,
            "--bars",
            work.inputs / "bars.csv",
            "--out",
            work.outputs / out,
            "--symbol",
            "ES",
        ]
    flags = {"--format": flag_value(["csv", "parquet"]), "--timeframe": flag_value(["1m", "5m"])}
    argv += _options(data, flags)
    if data.draw(st.booleans(), label="--allow-short"):
        argv.append("--allow-short")
    return argv, ["--set", "set", *flags, "--raw", "--name", "--out", "--bars", *map(str, argv)]


def _dc(data, work: Work) -> Argv:
    flags = {
        "--threshold": flag_value(["0.001", "0.01", "0", "1", "-0.1"]),
        "--down": flag_value(["0.002", "0", "2"]),
        "--out": flag_value(["dc.csv", "dc.parquet", "dc.json"]).map(lambda n: f"out/{n}"),
        "--dc-bars-out": flag_value(["b.csv", "b.xlsx"]).map(lambda n: f"out/{n}"),
        "--name": flag_value(["events", "mkt"]),
        "--dc-bars-name": flag_value(["dcb"]),
    }
    options = _options(data, flags)
    options = [str(work.folder / o) if o.startswith("out/") else o for o in options]
    if "--threshold" not in options:
        options += ["--threshold", "0.002"]
    source = data.draw(st.sampled_from(["--raw", "--bars", "both"]), label="source")
    argv = ["bars", "dc", *options]
    if source in ("--raw", "both"):
        argv += ["--raw", data.draw(flag_value(["mkt", "mkt@v4"]), label="--raw")]
    if source in ("--bars", "both"):
        argv += ["--bars", work.inputs / "bars.csv", "--symbol", "ES"]
    return argv, [*flags, "--raw", "--bars", "threshold", *map(str, argv)]


def _labels(data, work: Work) -> Argv:
    flags = {
        "--neutral-band": flag_value(["0.001", "-1", "0"]),
        "--pt-mult": flag_value(["2", "0", "-1"]),
        "--sl-mult": flag_value(["1", "0"]),
        "--atr-period": flag_value(["14", "0", "-3"]),
        "--window": flag_value(["50", "0", "1"]),
        "--low-quantile": flag_value(["0.2", "0.9", "2"]),
        "--high-quantile": flag_value(["0.8", "0.1"]),
        "--name": flag_value(["lab", "mkt", "bad name/"]),
        "--out": flag_value(["l.csv", "l.parquet", "l.json"]).map(lambda n: f"out/{n}"),
    }
    kind = data.draw(
        flag_value(
            ["forward-return", "triple-barrier", "trend-strength", "realized-vol", "vol-regime"]
        ),
        label="--kind",
    )
    horizon = data.draw(flag_value(["5", "0", "-2", "100000"]), label="--horizon")
    options = _options(data, flags)
    options = [str(work.folder / o) if o.startswith("out/") else o for o in options]
    argv = ["labels", "build", "--kind", kind, "--horizon", horizon, *options]
    if data.draw(st.booleans(), label="raw or bars"):
        argv += ["--raw", data.draw(flag_value(["mkt", "pat"]), label="--raw")]
    else:
        argv += ["--bars", work.inputs / "bars.csv", "--symbol", "ES"]
    return argv, ["--kind", "kind", "--horizon", "horizon", *flags, "--raw", *map(str, argv)]


def _train(data, work: Work) -> Argv:
    flags = {
        "--calibration": flag_value(["none", "platt", "isotonic", "temperature"]),
        "--inputs": flag_value(["auto", "relative", "price_action", "ohlc"]),
        "--seed": flag_value(["0", "5", "-1"]),
        "--synthetic": flag_value(["uw", "nope"]),
        "--base-run": flag_value(["nope"]),
        "--pretrained-encoder": flag_value(["missing.pt"]),
    }
    model = data.draw(flag_value(["logistic_regression", "random_forest", "simple_lstm"]))
    dataset = data.draw(flag_value(["pat", "uw", "mkt"]), label="--dataset")
    split = data.draw(flag_value(["fc", "kf", "nope"]), label="--split")
    params = {"random_forest": '{"n_estimators": 10}', "simple_lstm": '{"epochs": 1}'}
    argv = [
        "train",
        "--model",
        model,
        "--dataset",
        dataset,
        "--split",
        split,
        "--bootstrap",
        data.draw(flag_value(["10", "0", "-1"]), label="--bootstrap"),
        "--params",
        params.get(model, "{}"),
        *_options(data, flags),
    ]
    return argv, ["--model", "--dataset", "--split", "--bootstrap", *flags, *map(str, argv)]


def _backtest(data, work: Work) -> Argv:
    flags = {
        "--symbol": flag_value(["ES", "NQ"]),
        "--timeframe": flag_value(["1m", "1h"]),
        "--cash": flag_value(["100000", "0", "-5"]),
        "--commission": flag_value(["0.0005", "0", "5"]),
        "--commission-per-unit": flag_value(["1", "0"]),
        "--spread": flag_value(["0.25", "0"]),
        "--slippage-bps": flag_value(["1", "0"]),
        "--latency": flag_value(["1", "0", "1000"]),
        "--instrument": flag_value(["equity", "futures:ES", "futures:ZZ", "fx", "crypto"]),
        "--engine": flag_value(["vectorised", "event"]),
        "--threshold": flag_value(["0.5"]),
    }
    argv = [
        "backtest",
        "file",
        "--bars",
        work.inputs / "bars.csv",
        "--signals",
        work.inputs / "signals.csv",
        "--out",
        work.outputs / "bt",
        *_options(data, flags),
    ]
    if data.draw(st.booleans(), label="--overwrite"):
        argv.append("--overwrite")
    return argv, [*flags, "--bars", "--signals", "--out", *map(str, argv)]


COMMANDS: dict[str, Callable[..., Argv]] = {
    "data ingest": _ingest,
    "data synth": _synth,
    "data windows": _windows,
    "data split": _split,
    "features build": _features,
    "bars dc": _dc,
    "labels build": _labels,
    "train": _train,
    "backtest file": _backtest,
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@budget(1.0)
@given(data=st.data())
def test_flags_of_every_input_command(template, command: str, data):
    """Each command that takes input, with valid and hostile flag values mixed."""
    with workspace(template) as work:
        argv, names = COMMANDS[command](data, work)
        work.moola(f"flags:{command}", [str(a) for a in argv], [str(n) for n in names])


def test_the_rule_catches_crashes_silence_and_half_written_files(tmp_path, monkeypatch):
    """The judge behind every case (and the before/after tally) sees each way to fail."""
    from tests.fuzz_helpers import Outcome, problems

    crash = Outcome(1, "", "", "Traceback ...\nValueError: boom")
    assert problems(crash, ["x.csv"], {}, {}) == ["traceback", "exit code 1"]
    vague = Outcome(2, "", "error: something went wrong", None)
    assert problems(vague, ["x.csv", "--bars"], {}, {}) == ["names no input"]
    clean = Outcome(2, "", "error: x.csv row 3: bad", None)
    assert problems(clean, ["x.csv"], {"a": "1"}, {"a": "2"}) == ["changed files"]
    assert problems(clean, ["x.csv"], {"a": "1"}, {"a": "1"}) == []
    tally = tmp_path / "tally.jsonl"
    monkeypatch.setenv("MOOLA_FUZZ_TALLY", str(tally))
    record("demo", crash, problems(crash, [], {}, {}))
    line = json.loads(tally.read_text())
    assert line["traceback"] and line["error"] == ["ValueError: boom"]
