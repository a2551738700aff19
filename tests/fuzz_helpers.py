"""What the input fuzz suite shares: running ``moola`` in-process, judging the outcome,
snapshotting folders, valid seed files of every format and the ways to break them.

The rule under test (see ``moola.core.errors``): a bad input gives exit code 2 and a
one-paragraph error naming the file, row, key or flag, and leaves every folder it was
given byte-identical. An uncaught exception (exit 1, a traceback) is always a bug.

``MOOLA_FUZZ_TALLY=FILE`` appends one JSON line per case (target, exit code, whether it
crashed), so a run can be counted; ``MOOLA_FUZZ_MEASURE=1`` records without asserting,
which is how the "tracebacks before the fixes" figure is taken. Leave it unset otherwise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from moola.cli.main import main
from moola.core.errors import MoolaError

FIXTURES = Path(__file__).parent / "fixtures"
MEASURE_ONLY = os.environ.get("MOOLA_FUZZ_MEASURE") == "1"
_BOX = re.compile(r"[\s│╭╮╰╯─]+")


def budget(weight: float = 1.0) -> settings:
    """Settings for one fuzz test: the loaded profile's ``max_examples`` times ``weight``.

    The profile (``tests/conftest.py``) keeps ``make test`` quick and ``make fuzz`` deep;
    the weight makes slow targets (training) run fewer cases than cheap ones (parsing).
    """
    return settings(
        max_examples=max(2, round(settings.default.max_examples * weight)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@dataclass(frozen=True)
class Outcome:
    """What a user would see: exit code, stdout, stderr; ``crash`` holds an uncaught traceback."""

    code: int
    out: str
    err: str
    crash: str | None


def run_cli(argv: list[str]) -> Outcome:
    """Run ``moola ARGV`` in this process, capturing output; never raises."""
    out, err = io.StringIO(), io.StringIO()
    crash = None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(arg) for arg in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            raise
        except BaseException:  # a traceback and exit code 1 (Rust panics are BaseException)
            code, crash = 1, traceback.format_exc()
    return Outcome(code, out.getvalue(), err.getvalue(), crash)


def run_library(call: Callable[[], object]) -> Outcome:
    """Call a library function as the CLI would: a ``MoolaError`` is exit 2 with its
    message; anything else escaping is a crash."""
    try:
        call()
    except MoolaError as exc:
        return Outcome(exc.exit_code, "", str(exc), None)
    except KeyboardInterrupt:
        raise
    except BaseException:
        return Outcome(1, "", "", traceback.format_exc())
    return Outcome(0, "", "", None)


def snapshot(*folders: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folders``: equal means byte-identical."""
    found: dict[str, str] = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = f"{folder.name}/{path.relative_to(folder)}"
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def flat(text: str) -> str:
    """``text`` without whitespace or rich's box characters, for wrap-proof matching."""
    return _BOX.sub("", text)


def problems(
    outcome: Outcome, names: list[str], before: dict[str, str], after: dict[str, str]
) -> list[str]:
    """How ``outcome`` breaks the rule (empty: it does not): a traceback, an exit code
    other than 0 or 2, an error naming none of ``names``, files changed by a failure."""
    found = []
    if outcome.crash is not None or "Traceback" in outcome.out + outcome.err:
        found.append("traceback")
    if outcome.code not in (0, 2):
        found.append(f"exit code {outcome.code}")
    if outcome.code != 0 and outcome.crash is None:
        said = flat(outcome.err)
        parts = [p for name in names for p in (name, name.strip(), *name.split("@"))]
        wanted = [flat(p) for p in parts if len(flat(p)) >= 2] + [flat(repr(p)) for p in parts]
        # Click's usage errors always name the option or token they refuse.
        if not said.startswith("Usage:") and not any(name in said for name in wanted):
            found.append("names no input")
        if before != after:
            found.append("changed files")
    return found


def record(target: str, outcome: Outcome, found: list[str]) -> None:
    """Append this case to the tally file named by ``MOOLA_FUZZ_TALLY`` (if set)."""
    path = os.environ.get("MOOLA_FUZZ_TALLY")
    if not path:
        return
    line = {
        "target": target,
        "code": outcome.code,
        "traceback": "traceback" in found,
        "problems": found,
        "error": (outcome.crash or "").strip().splitlines()[-1:] or None,
        "message": None if outcome.crash else " ".join(outcome.err.split())[:300],
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def check_clean(
    target: str,
    outcome: Outcome,
    names: list[str],
    before: dict[str, str],
    after: dict[str, str],
) -> None:
    """Assert the rule: exit 0 or 2, no traceback, a failure names one of ``names`` and
    leaves the snapshotted folders unchanged."""
    found = problems(outcome, names, before, after)
    record(target, outcome, found)
    if MEASURE_ONLY or not found:
        return
    changed = sorted(set(before.items()) ^ set(after.items()))[:5]
    raise AssertionError(
        f"{target}: {', '.join(found)} (wanted one of {names} named; changed: {changed})\n"
        f"{outcome.crash or outcome.err}"
    )


# --- valid seed files, one per format ------------------------------------------------


def bars_frame(n: int = 120) -> pd.DataFrame:
    """A small valid bar table (timestamp text, OHLCV) to write in any tabular format."""
    from tests.conftest import random_walk_bars

    bars = random_walk_bars(n, symbol="ES")
    frame = bars[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame


def csv_bytes() -> bytes:
    return bars_frame().to_csv(index=False).encode()


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    bars_frame().to_parquet(buffer, index=False)
    return buffer.getvalue()


def histdata_bytes() -> bytes:
    return (FIXTURES / "src_DAT_ASCII_EURUSD_M1_202403.csv").read_bytes()


def coinbase_json_bytes() -> bytes:
    return (FIXTURES / "src_coinbase_candles.json").read_bytes()


def coinbase_csv_bytes() -> bytes:
    return (FIXTURES / "src_coinbase_candles.csv").read_bytes()


def dbn_bytes(*, compress: bool = False) -> bytes:
    """A DBN OHLCV-1m file written with databento_dbn's own encoder (as Databento does)."""
    import tempfile

    from tests.test_source_dbn import ES_BARS, write_dbn

    with tempfile.TemporaryDirectory() as folder:
        path = write_dbn(Path(folder) / "seed.dbn", ES_BARS, compress=compress)
        return path.read_bytes()


@dataclass(frozen=True)
class Format:
    """One source format: the seed file, its file name and the flags its reader needs."""

    name: str
    file_name: str
    seed: bytes
    flags: tuple[str, ...]


def formats() -> list[Format]:
    """Every source format moola reads, with a valid seed file each."""
    return [
        Format("csv", "bars.csv", csv_bytes(), ("--symbol", "ES", "--timeframe", "1m")),
        Format("parquet", "bars.parquet", parquet_bytes(), ("--symbol", "ES", "--timeframe", "1m")),
        Format("histdata", "DAT_ASCII_EURUSD_M1_202403.csv", histdata_bytes(), ()),
        Format("coinbase", "btc.json", coinbase_json_bytes(), ("--symbol", "BTC-USD")),
        Format(
            "coinbase",
            "btc.csv",
            coinbase_csv_bytes(),
            ("--symbol", "BTC-USD", "--format", "coinbase"),
        ),
        Format("dbn", "es.dbn", dbn_bytes(), ()),
        Format("dbn", "es.dbn.zst", dbn_bytes(compress=True), ()),
    ]


# --- ways to break a file --------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` truncated, bit-flipped, spliced, line-edited, or replaced by noise."""
    how = draw(
        st.sampled_from(
            ["truncate", "bitflip", "splice", "line", "drop-line", "text", "bytes", "empty"]
        )
    )
    data = bytearray(seed)
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    if how == "bitflip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=40)) + bytes(data[at:])
    if how in ("line", "drop-line"):
        lines = bytes(data).split(b"\n")
        at = draw(st.integers(0, len(lines) - 1))
        if how == "drop-line":
            del lines[at]
        else:
            lines[at] = draw(hostile_text()).encode("utf-8", "surrogatepass")
        return b"\n".join(lines)
    if how == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    if how == "bytes":
        return draw(st.binary(max_size=300))
    return b""


def hostile_text() -> st.SearchStrategy[str]:
    """Short text a careless or hostile user might type where a value belongs."""
    return st.one_of(
        st.sampled_from(
            [
                "",
                " ",
                "abc",
                "nan",
                "inf",
                "-inf",
                "-1",
                "0",
                "1e309",
                "10.5",
                "null",
                "None",
                "[]",
                "{}",
                "../x",
                "a,b",
                "2024-13-45",
                "not-a-time",
                "9" * 30,
                "é☃\u200b",
            ]
        ),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
        st.integers(-(10**6), 10**6).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    )


def flag_value(valid: list[str] | st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value for a flag: one of the valid ones or a hostile one."""
    good = st.sampled_from(valid) if isinstance(valid, list) else valid
    return st.one_of(good, good, hostile_text())


def timestamp_text() -> st.SearchStrategy[str]:
    """Timestamps as text, some valid, some absurd."""
    return st.one_of(
        st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(str),
        hostile_text(),
    )
