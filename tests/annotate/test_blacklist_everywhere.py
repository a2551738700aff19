"""A window graded D in the labelling app stays out of the training data built from the
raw bars afterwards: ``moola data windows``, ``moola data split`` and ``moola train``
(matched by bar span, through the real commands). Extraction and commit are tested in
test_extract*.py and test_commit.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moola.annotate.app import create_app
from moola.annotate.store import write_batch
from moola.cli.main import app as main_app
from moola.data.blacklist import read_blacklist
from moola.data.registry import Registry
from moola.tracking.runs import RunStore
from tests.annotate._batches import make_batch

TOKEN = "blacklist-token-0123456789"
LENGTH = 105


def _moola(root, *argv: str) -> str:
    result = CliRunner().invoke(main_app, ["--data-root", str(root), *argv])
    assert result.exit_code == 0, f"{argv}: {result.stdout} {result.exception!r}"
    return " ".join(result.stdout.split())


@pytest.fixture
def graded(tmp_path):
    """3,000 bars of a 24/7 market, a labeled dataset of 40 windows of 105 bars (every 70
    bars) with a split made before any D, and a batch whose window over bars 360..379 is
    graded D in the app (pat's windows at 280 and 350 overlap it)."""
    root = tmp_path / "moola_data"
    _moola(root, "data", "synth", "--name", "mkt", "--bars", "3000", "--calendar", "crypto",
           "--seed", "1")  # fmt: skip
    starts = np.arange(40) * 70
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"start": starts, "label": np.where(starts % 140, "up", "down")}).to_csv(
        labels, index=False
    )
    _moola(root, "data", "windows", "mkt", "--name", "pat", "--length", str(LENGTH),
           "--labels", str(labels))  # fmt: skip
    _moola(root, "data", "split", "pat", "--strategy", "purged-kfold", "--folds", "3",
           "--name", "kf")  # fmt: skip
    registry = Registry(root)
    batch = make_batch(registry, "mkt@v1", [360], name="b1")
    write_batch(root, batch)
    client = TestClient(create_app(root, token=TOKEN, batch="b1"))
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    (window,) = batch.windows
    for fields in ({"kind": "label", "label": "neither"}, {"kind": "grade", "grade": "D"}):
        response = client.post(
            "/api/batches/b1/actions", json={"window_id": window.window_id, **fields}
        )
        assert response.status_code == 200, response.text
    return registry


def test_a_window_graded_d_in_the_app_stays_out_of_windows_splits_and_training(graded):
    registry = graded
    root = registry.root
    (entry,) = read_blacklist(root).entries
    stamps = registry.load_raw("mkt")["timestamp"]
    assert pd.Timestamp(entry.start_ts) == stamps.iloc[360]
    assert pd.Timestamp(entry.end_ts) == stamps.iloc[379]

    # moola data windows on the raw bars: every window reaching bars 360..379 is left out.
    out = _moola(root, "data", "windows", "mkt", "--name", "unl", "--length", str(LENGTH),
                 "--stride", "10")  # fmt: skip
    starts = np.arange(0, 3000 - LENGTH + 1, 10)
    overlapping = (starts <= 379) & (starts + LENGTH - 1 >= 360)
    assert f"{int(overlapping.sum())} window(s) excluded" in out
    kept = registry.load_unlabeled("unl").starts
    assert sorted(kept) == sorted(starts[~overlapping])

    # moola data split on the labeled windows made before the D: they sit in no part.
    table = registry.load_labeled("pat").table
    banned = np.flatnonzero(table["start"].isin([280, 350]))  # 280..384 and 350..454
    out = _moola(root, "data", "split", "pat", "--strategy", "forward-chaining", "--name", "fc")
    assert "2 window(s) excluded" in out
    split, _ = registry.load_split("fc")
    assert not set(banned) & {*split.train, *split.val, *split.test}

    # moola train on the split made before the D: excluded when the data is loaded.
    out = _moola(root, "train", "--model", "logistic_regression", "--dataset", "pat",
                 "--split", "kf", "--bootstrap", "20")  # fmt: skip
    assert "blacklisted: 2" in out
    run_id = RunStore(root).results()[-1]["run_id"]
    covered = registry.load_table("predictions", run_id)["covered"].to_numpy(bool)
    assert not covered[banned].any()
