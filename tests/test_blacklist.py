"""The persistent blacklist: grade D windows and manual spans stay out of every later
windows, split and training command, matched by time span, with every exclusion counted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moola.core.errors import ConfigError, IntegrityError
from moola.data.blacklist import (
    Blacklist,
    add_entries,
    blacklist_path,
    exclude_from_split,
    make_entry,
    read_blacklist,
)
from moola.data.registry import Registry
from moola.data.splits import make_split, validate_split
from moola.pipeline.integrity import verify_root
from moola.tracking.runs import RunStore

LENGTH = 105
MINUTE = pd.Timedelta(minutes=1)


def _entry(symbol: str, start: str, end: str) -> object:
    return make_entry(symbol, start, end, "test", "test")


# ----------------------------------------------------------------------- matching


def test_a_window_is_blacklisted_when_its_bars_share_time_with_a_span_of_its_symbol():
    blacklist = Blacklist((_entry("ES", "2024-01-01 10:00", "2024-01-01 10:10"),), None)
    t = pd.Timestamp("2024-01-01 10:00", tz="UTC")
    windows = pd.DataFrame(
        [
            ("ES", t - 6 * MINUTE, t - MINUTE, False),  # ends the bar before the span
            ("ES", t - 5 * MINUTE, t, True),  # its last bar is the span's first
            ("ES", t + 3 * MINUTE, t + 4 * MINUTE, True),  # inside
            ("ES", t - 9 * MINUTE, t + 20 * MINUTE, True),  # covers the whole span
            ("ES", t + 10 * MINUTE, t + 15 * MINUTE, True),  # starts on the span's last bar
            ("ES", t + 11 * MINUTE, t + 15 * MINUTE, False),  # starts the bar after
            ("NQ", t, t + 4 * MINUTE, False),  # same time, other symbol
        ],
        columns=["symbol", "start", "end", "expected"],
    )
    got = blacklist.mask(windows["symbol"], windows["start"], windows["end"])
    assert got.tolist() == windows["expected"].tolist()


def test_matching_is_by_time_not_position_and_handles_many_overlapping_spans():
    spans = [("2024-01-01 00:00", "2024-01-01 05:00"), ("2024-01-01 01:00", "2024-01-01 02:00")]
    spans += [("2024-01-02 00:00", "2024-01-02 00:00")]
    blacklist = Blacklist(tuple(_entry("ES", a, b) for a, b in spans), None)
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2023-12-31 20:00", tz="UTC").value + rng.integers(0, 40, 500) * 3600e9
    start = start.astype(np.int64)
    end = start + rng.integers(0, 4, 500).astype(np.int64) * 3600 * 10**9
    by_hand = np.zeros(500, dtype=bool)
    for a, b in spans:
        lo, hi = pd.Timestamp(a, tz="UTC").value, pd.Timestamp(b, tz="UTC").value
        by_hand |= (start <= hi) & (end >= lo)
    assert 0 < by_hand.sum() < 500
    assert blacklist.mask(["ES"] * 500, start, end).tolist() == by_hand.tolist()


def test_exclusion_moves_windows_out_of_every_part_and_the_split_stays_valid():
    starts = np.arange(60) * 10
    ends = starts + 9
    for split in (
        make_split("purged-kfold", starts, ends, n_folds=3),
        make_split("forward-chaining", starts, ends),
        make_split("walk-forward", starts, ends, n_splits=3),
    ):
        cut = exclude_from_split(split, np.array([0, 5, 33, 59]))
        validate_split(cut, starts, ends)
        parts = [cut.train, cut.val, cut.test]
        parts += [p for f in cut.folds or [] for p in (f.train, f.val, f.test)]
        assert not {0, 5, 33, 59} & {i for part in parts for i in part}


def test_entries_are_checked_and_a_tampered_blacklist_refuses_to_be_read(tmp_path):
    with pytest.raises(ConfigError, match=r"start_ts .* is after end_ts"):
        make_entry("ES", "2024-01-02", "2024-01-01", "x", "test")
    with pytest.raises(ConfigError, match="end_ts 'soon' is not a timestamp"):
        make_entry("ES", "2024-01-02", "soon", "x", "test")
    with pytest.raises(ConfigError, match="reason is empty"):
        make_entry("ES", "2024-01-01", "2024-01-02", "  ", "test")
    first = _entry("ES", "2024-01-01", "2024-01-02")
    assert add_entries(tmp_path, [first, first]) == [first]  # the same span once
    assert add_entries(tmp_path, [first]) == []
    assert read_blacklist(tmp_path).entries == (first,)
    path = blacklist_path(tmp_path)
    original = path.read_bytes()
    path.write_text(path.read_text().replace('"test"', '"edited"', 1))
    with pytest.raises(IntegrityError, match=r"blacklist.jsonl.* line 1"):
        read_blacklist(tmp_path)
    assert any("blacklist.jsonl line 1" in p for p in verify_root(tmp_path).problems)
    path.unlink()  # a deleted blacklist would let every blacklisted window back in
    with pytest.raises(IntegrityError, match="deleted, replaced or lines were removed"):
        read_blacklist(tmp_path)
    assert any("blacklist.jsonl: missing" in p for p in verify_root(tmp_path).problems)
    path.write_bytes(original)
    assert read_blacklist(tmp_path).entries == (first,)


# -------------------------------------------------------------- commands, end to end


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A 3,000-bar 24/7 market, labels for 40 windows (row 5 graded D) and the same
    starts without grades (a later labels file that knows nothing of the D)."""
    root = tmp_path_factory.mktemp("blacklist")
    files = tmp_path_factory.mktemp("files")
    code, _, err = run_in(root, "data", "synth", "--name", "mkt", "--bars", "3000",
                          "--calendar", "crypto", "--seed", "1")  # fmt: skip
    assert code == 0, err
    starts = np.arange(40) * 70
    labels = np.where(starts % 140, "up", "down")
    grades = np.where(np.arange(40) == 5, "D", "A")
    pd.DataFrame({"start": starts, "label": labels, "grade": grades}).to_csv(
        files / "graded.csv", index=False
    )
    pd.DataFrame({"start": starts, "label": labels}).to_csv(files / "later.csv", index=False)
    return root, files


def run_in(root, *argv: str) -> tuple[int, str, str]:
    """``moola --data-root ROOT ARGV``: exit code, stdout and the error, whitespace-joined."""
    from typer.testing import CliRunner

    from moola.cli.main import app

    result = CliRunner().invoke(app, ["--data-root", str(root), *argv])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        from moola.core.errors import MoolaError

        if isinstance(result.exception, MoolaError):
            return 2, result.stdout, " ".join(str(result.exception).split())
        raise result.exception
    return result.exit_code, " ".join(result.stdout.split()), ""


def _bars(root) -> pd.DataFrame:
    return Registry(root).load_raw("mkt")


def test_grade_d_windows_are_blacklisted_and_stay_out_of_later_versions(root):
    root, files = root
    registry = Registry(root)
    code, out, err = run_in(root, "data", "windows", "mkt", "--name", "pat", "--length", "105",
                            "--labels", str(files / "graded.csv"))  # fmt: skip
    assert code == 0, err
    assert "1 grade D window(s) added to the blacklist" in out
    stamps = _bars(root)["timestamp"]
    (entry,) = read_blacklist(root).entries
    assert (entry.symbol, entry.reason) == ("SYN", "grade D")
    assert pd.Timestamp(entry.start_ts) == stamps.iloc[350]  # window 5: bars 350..454
    assert pd.Timestamp(entry.end_ts) == stamps.iloc[454]
    assert "graded.csv" in entry.source
    # Windows 4 (bars 280..384) and 6 (420..524) share bars with it: excluded too.
    assert "2 window(s) excluded: they overlap the blacklist" in out
    table = registry.load_labeled("pat").table
    assert len(table) == 37 and not {280, 350, 420} & set(table["start"])

    # A later labels file without grades: the D span still holds, by time.
    code, out, err = run_in(root, "data", "windows", "mkt", "--name", "pat2", "--length",
                            "105", "--labels", str(files / "later.csv"))  # fmt: skip
    assert code == 0, err
    assert "3 window(s) excluded" in out
    later = registry.load_labeled("pat2")
    assert len(later.table) == 37
    steps = registry.manifest(later.ref)["transformations"]
    step = next(s for s in steps if s["name"] == "exclude_blacklisted")
    assert step["params"]["excluded"] == 3 and step["params"]["entries"] == 1
    assert step["params"]["chain_head"] == read_blacklist(root).head

    # Unlabeled windows too: every stride-10 start whose window reaches bars 350..454.
    code, out, err = run_in(root, "data", "windows", "mkt", "--name", "unl", "--length", "105",
                            "--stride", "10")  # fmt: skip
    assert code == 0, err
    starts = np.arange(0, 3000 - LENGTH + 1, 10)
    overlapping = int(((starts <= 454) & (starts + LENGTH - 1 >= 350)).sum())
    assert f"{overlapping} window(s) excluded" in out
    kept = registry.load_unlabeled("unl").starts
    assert len(kept) == len(starts) - overlapping
    assert not ((kept <= 454) & (kept + LENGTH - 1 >= 350)).any()


def test_splits_and_training_respect_entries_added_later(root):
    root, _ = root
    registry = Registry(root)
    stamps = _bars(root)["timestamp"]
    # pat2 was stored without the windows meeting the D span: none left to exclude.
    code, out, err = run_in(root, "data", "split", "pat2", "--strategy", "purged-kfold",
                            "--folds", "3", "--name", "kf")  # fmt: skip
    assert code == 0, err
    assert "0 window(s) excluded: they overlap the blacklist" in out
    _, record = registry.load_split("kf")
    assert record["params"]["blacklist"]["excluded"] == 0

    # A span added by hand after the split was made (bars 1400..1410).
    code, out, err = run_in(root, "data", "blacklist", "add", "mkt",
                            "--start-ts", stamps.iloc[1400].isoformat(),
                            "--end-ts", stamps.iloc[1410].isoformat(),
                            "--reason", "bad ticks")  # fmt: skip
    assert code == 0, err
    assert "blacklisted SYN" in out and "(11 bars of mkt)" in out
    code, out, _ = run_in(root, "data", "blacklist", "list")
    assert code == 0 and "2 spans" in out and "bad ticks" in out and "grade D" in out

    # Windows 19 (bars 1330..1434) and 20 (1400..1504) meet it; 18 (1260..1364) does not.
    table = registry.load_labeled("pat2").table
    banned = np.flatnonzero(table["start"].isin([1330, 1400]))
    assert len(banned) == 2
    code, out, err = run_in(root, "data", "split", "pat2", "--strategy", "forward-chaining",
                            "--name", "fc")  # fmt: skip
    assert code == 0, err
    assert "2 window(s) excluded" in out
    split, _ = registry.load_split("fc")
    assert not set(banned) & {*split.train, *split.val, *split.test}
    assert set(banned) <= set(split.purged)

    code, out, err = run_in(root, "train", "--model", "logistic_regression", "--dataset",
                            "pat2", "--split", "kf", "--bootstrap", "20")  # fmt: skip
    assert code == 0, err
    assert "blacklisted: 2" in out  # the split predates the entry: excluded on load
    run_id = RunStore(root).results()[-1]["run_id"]
    manifest = json.loads((RunStore(root).run_dir(run_id) / "manifest.json").read_text())
    assert manifest["data"]["blacklist"]["excluded"] == 2
    assert manifest["data"]["blacklist"]["entries"] == 2
    predictions = registry.load_table("predictions", run_id)
    covered = predictions["covered"].to_numpy(bool)
    assert not covered[banned].any() and covered.sum() == len(table) - 2


def test_blacklist_add_refuses_a_reversed_or_empty_span_naming_the_flag(root):
    root, _ = root
    before = blacklist_path(root).read_bytes()
    code, _, err = run_in(root, "data", "blacklist", "add", "mkt", "--start-ts", "2024-03-02",
                          "--end-ts", "2024-03-01", "--reason", "x")  # fmt: skip
    assert code == 2 and "--start-ts" in err and "is after --end-ts" in err
    code, _, err = run_in(root, "data", "blacklist", "add", "mkt", "--start-ts", "1990-01-01",
                          "--end-ts", "1990-01-02", "--reason", "x")  # fmt: skip
    assert code == 2 and "covers none of" in err
    assert blacklist_path(root).read_bytes() == before
