"""Databento trades -> 1-second bars: events per second, against a numpy floor.

Run: ``.venv/bin/python benchmarks/bench_ticks.py [--trades 5000000] [--repeats 3]``.

A DBN ``trades`` file of one US equity day is generated (no network): ``--trades``
trades from 04:00 to 20:00 New York, denser in regular hours, a random walk in cents,
with event times up to 2 ms before their receive times (files are in receive order, so
``ts_event`` steps back now and then, as in Databento's files), plus a few trades outside
the session. The records are written with numpy in DBN's layout; the first thousand are
checked against ``databento_dbn``'s own decoder so the layout cannot drift. Then, in the
same run (best of ``--repeats``):

- floors, the least any 1-second aggregation does: take each trade's second, find where
  the second changes and sum the sizes with one ``np.add.reduceat`` (no sessions, no sort,
  no OHLC, no filling), on the decoded arrays ("arrays"), and after reading the ``.dbn``
  file's bytes and viewing its records with ``np.frombuffer`` ("file");
- ``ticks_to_bars`` on the decoded arrays (the aggregation alone), against the arrays floor;
- ``read_dbn_ticks`` on the ``.dbn`` file and on the ``.dbn.zst`` file (the whole read:
  decompression, metadata, symbols, aggregation), against the file floor;
- pandas for scale: ``resample("1s").ohlc()`` of the prices and ``.sum()`` of the sizes
  (sorted first, no session filter, no filling rule), against the arrays floor.

Each row gives seconds, trades per second and the multiple of its floor. The bars are
checked: their volume and trade count equal the in-session trades'.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import pandas as pd
import zstandard

from _common import best_of, print_table  # benchmarks/ is on sys.path when run as scripts
from moola.data.sources.dbn import TRADE_RECORD, read_dbn_ticks
from moola.data.ticks import ticks_to_bars

NS = 1_000_000_000
DAY = pd.Timestamp("2024-03-01", tz="America/New_York")  # a Friday, EST (UTC-5)
TRADE = np.dtype(TRADE_RECORD)  # one DBN trades record, as moola reads it


def make_trades(n: int, seed: int = 0) -> np.ndarray:
    """``n`` trade records of one instrument over one extended-hours day, receive order."""
    rng = np.random.default_rng(seed)
    opens = (DAY + pd.Timedelta(hours=4)).value
    regular = (DAY + pd.Timedelta(hours=9, minutes=30)).value
    closes = (DAY + pd.Timedelta(hours=16)).value
    ends = (DAY + pd.Timedelta(hours=20)).value
    in_regular = rng.random(n) < 0.85  # most trading happens 09:30-16:00
    recv = np.where(
        in_regular,
        rng.integers(regular, closes, n),
        rng.integers(opens - 600 * NS, ends + 600 * NS, n),  # some just outside the session
    )
    recv.sort()
    event = recv - rng.integers(0, 2_000_000, n)  # up to 2 ms before receipt
    cents = 10_000 + np.cumsum(rng.choice([-1, 0, 0, 1], n))
    records = np.zeros(n, TRADE)
    records["length"] = TRADE.itemsize // 4
    records["rtype"] = dbn.RType.MBP_0.value
    records["publisher_id"] = 2
    records["instrument_id"] = 7
    records["ts_event"] = event
    records["price"] = cents * 10_000_000  # cents in units of 1e-9
    records["size"] = rng.choice([1, 10, 100, 100, 100, 200, 500], n)
    records["action"] = ord("T")
    records["side"] = rng.choice([ord("A"), ord("B"), ord("N")], n)
    records["ts_recv"] = recv
    records["sequence"] = np.arange(n)
    return records


def write_files(records: np.ndarray, folder: Path) -> tuple[Path, Path]:
    day = DAY.date()
    metadata = dbn.Metadata(
        dataset="XNAS.ITCH",
        start=int(records["ts_recv"][0]),
        end=int(records["ts_recv"][-1]) + 1,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.TRADES,
        symbols=["BENCH"],
        mappings=[
            SimpleNamespace(
                raw_symbol="BENCH",
                intervals=[
                    SimpleNamespace(start_date=day, end_date=day + dt.timedelta(days=2), symbol="7")
                ],
            )
        ],
    )
    data = metadata.encode() + records.tobytes()
    plain = folder / "bench.trades.dbn"
    plain.write_bytes(data)
    packed = folder / "bench.trades.dbn.zst"
    packed.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    check_layout(data, records[:1000])
    return plain, packed


def check_layout(data: bytes, expected: np.ndarray) -> None:
    """The first records, decoded by databento_dbn, equal what was written."""
    decoder = dbn.DBNDecoder()
    decoder.write(data[: 8 + int.from_bytes(data[4:8], "little") + expected.nbytes])
    got = [r for r in decoder.decode() if isinstance(r, dbn.TradeMsg)]
    assert len(got) == len(expected)
    for record, row in zip(got, expected, strict=True):
        assert (record.ts_event, record.price, record.size) == (
            int(row["ts_event"]),
            int(row["price"]),
            int(row["size"]),
        )
        assert (record.ts_recv, record.instrument_id) == (int(row["ts_recv"]), 7)


def floor_arrays(ts: np.ndarray, size: np.ndarray) -> np.ndarray:
    seconds = ts // NS
    starts = np.flatnonzero(np.r_[True, seconds[1:] != seconds[:-1]])
    return np.add.reduceat(size, starts)


def floor_file(path: Path) -> np.ndarray:
    data = path.read_bytes()
    body = memoryview(data)[8 + int.from_bytes(data[4:8], "little") :]
    records = np.frombuffer(body, dtype=TRADE)
    return floor_arrays(records["ts_event"], records["size"])


def pandas_resample(ts: np.ndarray, price: np.ndarray, size: np.ndarray) -> pd.DataFrame:
    order = np.argsort(ts, kind="stable")
    index = pd.to_datetime(ts[order], unit="ns", utc=True)
    prices = pd.Series(price[order], index=index)
    bars = prices.resample("1s").ohlc()
    bars["volume"] = pd.Series(size[order], index=index).resample("1s").sum()
    return bars


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    records = make_trades(args.trades)
    with tempfile.TemporaryDirectory() as tmp:
        plain, packed = write_files(records, Path(tmp))
        print(
            f"{args.trades:,} trades; {plain.stat().st_size / 1e6:.0f} MB plain, "
            f"{packed.stat().st_size / 1e6:.0f} MB zstd",
            flush=True,
        )
        ts = records["ts_event"].astype(np.int64)
        price = records["price"] / 1e9
        size = records["size"].astype(np.float64)

        bars = read_dbn_ticks(plain)
        inside = (ts >= (DAY + pd.Timedelta(hours=4)).value) & (
            ts < (DAY + pd.Timedelta(hours=20)).value
        )
        assert bars["volume"].sum() == size[inside].sum()
        assert bars["trades"].sum() == inside.sum()
        print(
            f"{len(bars):,} one-second bars ({int(bars['filled'].sum()):,} filled); volume and "
            "trade count match the in-session trades",
            flush=True,
        )
        arrays, file = "floor (arrays): second runs + one reduceat", "floor (file): + read"
        steps = {  # name -> (call, the floor it is compared with)
            arrays: (lambda: floor_arrays(ts, size), arrays),
            "ticks_to_bars (decoded arrays)": (
                lambda: ticks_to_bars(ts, price, size, symbol="BENCH"),
                arrays,
            ),
            "pandas resample ohlc + sum (reference)": (
                lambda: pandas_resample(ts, price, size),
                arrays,
            ),
            file: (lambda: floor_file(plain), file),
            "read_dbn_ticks (.dbn)": (lambda: read_dbn_ticks(plain), file),
            "read_dbn_ticks (.dbn.zst)": (lambda: read_dbn_ticks(packed), file),
        }
        times = {}
        for name, (step, _) in steps.items():
            times[name] = best_of(args.repeats, step)
            print(f"  {name}: {times[name]:.3f} s", flush=True)
    rows = [
        {
            "step": name,
            "trades": f"{args.trades:,}",
            "seconds": seconds,
            "trades/s": f"{args.trades / seconds:,.0f}",
            "x floor": seconds / times[steps[name][1]],
        }
        for name, seconds in times.items()
    ]
    print_table(f"DBN trades -> 1-second bars, best of {args.repeats}", rows)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}")


if __name__ == "__main__":
    main()
