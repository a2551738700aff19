"""Sentiment benchmarks: reading GKG files, scoring, and aligning news to bars.

Run: ``.venv/bin/python benchmarks/bench_sentiment.py [--lines N] [--bars N] [--items N]
[--repeats N]``.

1. ``read_gkg`` on one generated GKG 2.1 file of N lines (default 20,000, about a day of
   EUR/USD-relevant news; a 15-minute GDELT file holds 1,000-3,000) whose records are
   shaped like real ones (a ~2 KB GCAM field, 3-8 themes, 1-4 locations, names and
   organisations; 60% carry an economic theme, 40% mention the euro area or the US),
   zipped as GDELT ships it: lines per second with no filter and with the EUR/USD filter.
2. Scoring: the tone scorer on the records, the VADER lexicon on 2,000 record texts
   (texts per second). The transformer scorer needs weights; it is not timed here.
3. ``sentiment_features`` of M items (default 100,000) over N one-minute bars (default
   1M): bars per second, the alignment (``align_items``) timed alone beside it.
"""

from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from _common import best_of, print_table, random_walk_bars  # benchmarks/ is on sys.path
from moola.data.sources.gdelt import GKG_COLUMNS, Relevance, read_gkg, record_texts
from moola.features.sentiment import SentimentParams, align_items, sentiment_features
from moola.models.sentiment import LexiconScorer, ToneScorer

THEMES = ["ECON_CENTRALBANK", "ECON_INFLATION", "ECON_INTEREST_RATES", "ECON_STOCKMARKET"]
OTHER = ["SOC_POINTSOFINTEREST", "TAX_FNCACT_PRESIDENT", "LEADER", "WB_696_PUBLIC_SECTOR"]
PLACES = [("Germany", "GM"), ("France", "FR"), ("United States", "US"), ("Japan", "JA")]
PLACES += [("Brazil", "BR"), ("India", "IN"), ("Nigeria", "NI"), ("Canada", "CA")]
QUOTES = ["rates will stay high for longer", "growth is slowing sharply", "inflation eased"]


def gkg_file(folder: Path, lines: int, rng: np.random.Generator) -> Path:
    """A zipped GKG 2.1 file of ``lines`` generated records (see the module docstring)."""
    gcam = "wc:640," + ",".join(
        f"c{i}.{j}:{(i * j) % 17}" for i in range(1, 60) for j in range(1, 8)
    )
    rows = []
    for n in range(lines):
        econ = rng.random() < 0.6
        themes = list(rng.choice(OTHER, size=rng.integers(1, 4), replace=False))
        if econ:
            themes += list(rng.choice(THEMES, size=rng.integers(1, 4), replace=False))
        picks = rng.choice(4, size=rng.integers(1, 4)) + (0 if rng.random() < 0.4 else 4)
        places = [PLACES[i] for i in picks]
        v1 = ";".join(f"1#{name}#{code}#{code}#10#10#{code}" for name, code in places)
        v2 = ";".join(
            f"1#{name}#{code}#{code}##10#10#{code}#{40 * k}"
            for k, (name, code) in enumerate(places)
        )
        tone = rng.normal(0, 3)
        fields = [""] * len(GKG_COLUMNS)
        fields[0], fields[1], fields[2] = f"20240102101500-{n}", "20240102101500", "1"
        fields[3], fields[4] = "example.com", f"https://example.com/news/{n}"
        fields[7] = ";".join(themes) + ";"
        fields[8] = ";".join(f"{t},{30 * k}" for k, t in enumerate(themes))
        fields[9], fields[10] = v1, v2
        fields[13] = "european central bank;federal reserve" if econ else "city council"
        fields[15] = f"{tone:.4f},{max(tone, 0) + 2:.4f},{max(-tone, 0) + 2:.4f},4.1,20.3,0.5,640"
        fields[17] = gcam
        fields[22] = f"495|30|said|{QUOTES[n % 3]}#" if n % 4 == 0 else ""
        fields[23] = "Christine Lagarde,20;Jerome Powell,90"
        rows.append("\t".join(fields))
    path = folder / "20240102101500.gkg.csv.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("20240102101500.gkg.csv", "\n".join(rows) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = gkg_file(Path(tmp), args.lines, rng)
        megabytes = sum(len(line) for line in zipfile.ZipFile(path).read(path.stem).splitlines())
        for label, relevance in (
            ("read_gkg, no filter", Relevance(themes=())),
            ("read_gkg, EUR/USD filter", Relevance(pair="EURUSD")),
        ):
            seconds = best_of(args.repeats, lambda r=relevance: read_gkg(path, relevance=r))
            kept = len(read_gkg(path, relevance=relevance).records)
            rows.append(
                {
                    "step": label,
                    "measure": f"{args.lines:,} lines, {megabytes / 1e6:.0f} MB, {kept:,} kept",
                    "seconds": seconds,
                    "per second": f"{args.lines / seconds:,.0f} lines",
                }
            )
        records = read_gkg(path, relevance=Relevance(themes=())).records
    tone = ToneScorer()
    seconds = best_of(args.repeats, lambda: tone.score_tone(records["tone"], records["word_count"]))
    rows.append(
        {
            "step": "tone scorer",
            "measure": f"{len(records):,} records",
            "seconds": seconds,
            "per second": f"{len(records) / seconds:,.0f} records",
        }
    )
    texts = record_texts(records.iloc[:2_000])
    lexicon = LexiconScorer()
    seconds = best_of(args.repeats, lambda: lexicon.score(texts))
    rows.append(
        {
            "step": "lexicon scorer (VADER)",
            "measure": f"{len(texts):,} record texts",
            "seconds": seconds,
            "per second": f"{len(texts) / seconds:,.0f} texts",
        }
    )
    bars, _ = random_walk_bars(args.bars, rng)
    start, end = bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1]
    offsets = np.sort(rng.uniform(0, (end - start).total_seconds(), args.items))
    items = pd.DataFrame(
        {
            "published": start + pd.to_timedelta(offsets, unit="s"),
            "sentiment": rng.uniform(-1, 1, args.items),
            "confidence": rng.uniform(0, 1, args.items),
        }
    )
    params = SentimentParams(lag="15min", half_life=4, baseline=96)
    lag = params.lag_delta()
    seconds = best_of(
        args.repeats,
        lambda: align_items(
            items["published"], bars["timestamp"], lag=lag, first_window=pd.Timedelta("1min")
        ),
    )
    rows.append(
        {
            "step": "align_items",
            "measure": f"{args.items:,} items -> {args.bars:,} bars",
            "seconds": seconds,
            "per second": f"{args.bars / seconds:,.0f} bars",
        }
    )
    seconds = best_of(args.repeats, lambda: sentiment_features(items, bars, params))
    rows.append(
        {
            "step": "sentiment_features (6 columns)",
            "measure": f"{args.items:,} items -> {args.bars:,} bars",
            "seconds": seconds,
            "per second": f"{args.bars / seconds:,.0f} bars",
        }
    )
    print_table("Sentiment: GKG reading, scoring, features", rows)


if __name__ == "__main__":
    main()
