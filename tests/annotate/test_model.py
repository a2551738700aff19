"""The annotation vocabulary: ids are stable, actions carry exactly their kind's field,
batches refuse inconsistent windows, and a window's decided/accepted state is as documented."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from pydantic import ValidationError

from moola.annotate.model import Action, Batch, NewAction, WindowRef, WindowState, make_window_id


def _window(start_row: int = 0, length: int = 5, **extra) -> WindowRef:
    start = pd.Timestamp("2024-01-02 14:30", tz="UTC") + pd.Timedelta(minutes=start_row)
    return WindowRef(
        window_id=make_window_id("es@v1", "ES", start, length),
        raw="es@v1",
        symbol="ES",
        start_row=start_row,
        end_row=start_row + length - 1,
        start_ts=start,
        end_ts=start + pd.Timedelta(minutes=length - 1),
        length=length,
        **extra,
    )


def test_window_id_is_stable_and_names_raw_symbol_start_and_length():
    naive = datetime(2024, 1, 2, 14, 30)
    aware = pd.Timestamp("2024-01-02 09:30", tz="America/New_York")
    assert make_window_id("es@v1", "ES", naive, 105) == "es@v1:ES:20240102T143000:105"
    assert make_window_id("es@v1", "ES", aware, 105) == "es@v1:ES:20240102T143000:105"


def test_window_times_are_utc_and_round_trip_through_json():
    window = _window(3)
    assert window.start_ts.tzinfo is not None and window.start_ts.utcoffset().total_seconds() == 0
    assert WindowRef.model_validate_json(window.model_dump_json()) == window


def test_window_rows_must_match_length():
    with pytest.raises(ValidationError, match="not length"):
        WindowRef(**{**_window().model_dump(), "end_row": 9})


def test_batch_refuses_duplicate_windows_and_review_without_dataset():
    window = _window()
    with pytest.raises(ValidationError, match="appears twice"):
        Batch(
            name="b1", raw="es@v1", length=5, windows=(window, window), created_at=datetime.now(UTC)
        )
    with pytest.raises(ValidationError, match="labeled dataset"):
        Batch(
            name="b1",
            kind="review",
            raw="es@v1",
            length=5,
            windows=(window,),
            created_at=datetime.now(UTC),
        )
    with pytest.raises(ValidationError):
        Batch(name="../evil", raw="es@v1", length=5, windows=(), created_at=datetime.now(UTC))


def test_batch_finds_its_window_by_id():
    windows = (_window(0), _window(10))
    batch = Batch(name="b1", raw="es@v1", length=5, windows=windows, created_at=datetime.now(UTC))
    assert batch.window(windows[1].window_id) == windows[1]
    with pytest.raises(KeyError, match="nope"):
        batch.window("nope")


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "label"},
        {"kind": "grade", "label": "consolidation"},
        {"kind": "skip", "grade": "A"},
        {"kind": "label", "label": "sideways"},
        {"kind": "grade", "grade": "E"},
        {"kind": "undo", "note": "x"},
    ],
)
def test_action_takes_exactly_its_kinds_field(fields):
    with pytest.raises(ValidationError):
        NewAction(window_id="w", **fields)


def test_action_round_trips_and_rejects_unknown_keys():
    action = Action(window_id="w", kind="grade", grade="B", seq=3, at=datetime(2024, 1, 1))
    assert action.at.tzinfo is not None
    assert Action.model_validate_json(action.model_dump_json()) == action
    with pytest.raises(ValidationError):
        Action.model_validate({**action.model_dump(), "extra": 1})


def test_decided_and_accepted():
    assert not WindowState(window_id="w", label="retracement").decided()
    assert WindowState(window_id="w", label="retracement").decided("review")
    assert WindowState(window_id="w", label="retracement", grade="C").accepted
    assert (
        WindowState(window_id="w", grade="D").decided()
        and not WindowState(window_id="w", grade="D", label="neither").accepted
    )
    assert WindowState(window_id="w", skipped=True).decided()
    assert not WindowState(window_id="w", grade="A").accepted  # no label
