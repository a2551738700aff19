"""Per-feature normalisation fitted on training rows only (moola.features.scaling, issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.data.windows import WindowSet
from moola.features import (
    FeatureSet,
    FeatureSetSpec,
    FeatureSpecEntry,
    Scaler,
    fit_scaler,
    load_feature_set,
    window_rows,
)

COLUMNS = ("a", "b", "c")
METHODS = {"a": "zscore", "b": "robust", "c": "none"}


def _table(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(n, 3)).astype(np.float32)
    table[:, 1] = rng.lognormal(size=n)  # heavy-tailed, for the robust column
    return table


def test_statistics_equal_hand_computation():
    table = _table()
    rows = np.arange(10, 60)
    scaler = fit_scaler(table, COLUMNS, METHODS, rows)
    a = table[10:60, 0].astype(np.float64)
    b = table[10:60, 1].astype(np.float64)
    assert scaler.center_[0] == a.mean() and scaler.scale_[0] == np.sqrt(
        ((a - a.mean()) ** 2).mean()
    )
    q25, q50, q75 = np.quantile(b, [0.25, 0.5, 0.75])
    assert scaler.center_[1] == q50 and scaler.scale_[1] == q75 - q25
    assert (scaler.center_[2], scaler.scale_[2]) == (0.0, 1.0)
    assert scaler.n_rows_ == 50 and scaler.methods == ("zscore", "robust", "none")


def test_constant_training_column_gets_scale_one():
    table = _table()
    table[:, 0] = 3.0
    table[:, 1] = 5.0
    scaler = fit_scaler(table, COLUMNS, METHODS, np.arange(50))
    assert scaler.scale_[:2].tolist() == [1.0, 1.0] and scaler.center_[:2].tolist() == [3.0, 5.0]
    assert np.all(scaler.transform(table[:50])[:, :2] == 0.0)


def test_window_rows_is_the_union_of_window_spans():
    assert window_rows(np.array([7, 0, 2, 2]), 3).tolist() == [0, 1, 2, 3, 4, 7, 8, 9]
    assert window_rows(np.array([], dtype=np.int64), 5).size == 0
    windows = WindowSet(_table(), np.array([5, 40, 41, 90]), 20)
    spans = windows.spans()
    expected = sorted({r for lo, hi in spans for r in range(lo, hi + 1)})
    assert window_rows(windows.starts, windows.length).tolist() == expected


def test_no_leakage_values_outside_training_rows_never_reach_the_fit():
    """Forward-chaining: training windows first, then a purge gap, validation, test. Every
    value outside the training windows' rows (warm-up, validation/test, and the rows just
    after the last training window that a label horizon reads) is replaced: the fit must
    not move by one bit."""
    n, length = 400, 30
    table = _table(n)
    windows = WindowSet(table, np.arange(20, n - length + 1, 5), length)
    ends = windows.starts + length - 1
    train = np.flatnonzero(ends < 250)
    rows = window_rows(windows.starts[train], windows.length)
    assert rows[0] == 20 and rows[-1] == windows.starts[train][-1] + length - 1 < 250
    fitted = fit_scaler(windows.values, COLUMNS, METHODS, rows)

    outside = np.setdiff1d(np.arange(n), rows)
    assert outside.tolist() == list(range(20)) + list(range(250, n))
    changed = table.copy()
    changed[outside] = np.random.default_rng(1).normal(50.0, 20.0, size=(outside.size, 3))
    refitted = fit_scaler(changed, COLUMNS, METHODS, rows)
    assert refitted == fitted
    assert refitted.center_.tobytes() == fitted.center_.tobytes()
    assert refitted.scale_.tobytes() == fitted.scale_.tobytes()
    # Sanity: the same change inside the training rows does move it.
    inside = table.copy()
    inside[rows[-1]] += 1000.0
    assert fit_scaler(inside, COLUMNS, METHODS, rows) != fitted


def test_transform_of_validation_uses_training_statistics():
    table = _table()
    table[100:] += 10.0  # validation part shifted
    windows = WindowSet(table, np.arange(0, 171, 10), 30)
    train, val = np.arange(0, 5), np.arange(10, 15)
    scaler = fit_scaler(windows.values, COLUMNS, METHODS, window_rows(windows.starts[train], 30))
    val_x = windows.take(val)  # (5, 30, 3)
    out = scaler.transform(val_x)
    assert out.shape == val_x.shape and out.dtype == np.float32
    expected = ((val_x.astype(np.float64) - scaler.center_) / scaler.scale_).astype(np.float32)
    assert np.array_equal(out, expected)
    assert out[..., 0].mean() > 5.0  # not re-centred on validation
    assert np.array_equal(out[..., 2], val_x[..., 2])  # "none" passes through


def test_json_round_trip_is_exact_and_checked():
    table = _table().astype(np.float64) * np.pi
    scaler = fit_scaler(table, COLUMNS, METHODS, np.arange(3, 177, 2))
    text = json.dumps(scaler.to_dict())
    again = Scaler.from_dict(json.loads(text), columns=COLUMNS, methods=METHODS)
    assert again == scaler and again.center_.tobytes() == scaler.center_.tobytes()
    assert np.array_equal(again.transform(table), scaler.transform(table))

    with pytest.raises(ConfigError, match=r"missing \['c'\], not fitted \['d'\]"):
        Scaler.from_dict(json.loads(text), columns=("a", "b", "d"))
    with pytest.raises(ConfigError, match="another order"):
        Scaler.from_dict(json.loads(text), columns=("b", "a", "c"))
    with pytest.raises(ConfigError, match=r"'b': fitted 'robust', now 'zscore'"):
        Scaler.from_dict(json.loads(text), methods={**METHODS, "b": "zscore"})
    broken = json.loads(text)
    del broken["scale"]
    with pytest.raises(ConfigError, match="malformed"):
        Scaler.from_dict(broken)


def test_feature_set_entries_choose_the_method_per_column(tmp_path):
    spec = FeatureSetSpec(
        name="scaled",
        features=[
            FeatureSpecEntry(name="rsi"),
            FeatureSpecEntry(name="volume", scale="robust"),
            FeatureSpecEntry(name="sessions", scale="none"),
        ],
    )
    fset = FeatureSet(spec)
    scaling = fset.scaling
    assert tuple(scaling) == fset.columns
    assert scaling["rsi_14"] == "zscore"
    assert {scaling[c] for c in ("volume_ma", "volume_ratio", "volume_trend")} == {"robust"}
    assert scaling["session_london"] == "none"
    # The YAML keeps the choice and leaves out the default.
    path = tmp_path / "scaled.yaml"
    path.write_text(spec.to_yaml())
    assert spec.to_yaml().count("scale:") == 2
    assert FeatureSetSpec.from_yaml(path) == spec
    table = np.random.default_rng(0).lognormal(size=(40, len(fset.columns)))
    scaler = fit_scaler(table, fset.columns, scaling, np.arange(40))
    assert dict(zip(scaler.columns, scaler.methods, strict=True)) == scaling


def test_scale_does_not_change_the_content_hash_and_shipped_hashes_are_pinned():
    # Hashes of the shipped sets from before `scale` existed: stored tables stay valid.
    assert load_feature_set("intraday31").spec.content_hash() == (
        "sha256:4f476fc31cf161360ff1e5a947c6763d86f2c277c86f602ca548a10a721c4030"
    )
    assert load_feature_set("relative11").spec.content_hash() == (
        "sha256:32b3eea5562496dde51a25118ab81317f6a42fcf8c505e70ee65b9b99365985b"
    )
    plain = FeatureSetSpec(name="s", features=[FeatureSpecEntry(name="rsi")])
    robust = FeatureSetSpec(name="s", features=[FeatureSpecEntry(name="rsi", scale="robust")])
    assert plain.content_hash() == robust.content_hash()


def test_unknown_scale_in_yaml_names_the_entry(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nfeatures:\n  - name: rsi\n  - name: volume\n    scale: zscor\n")
    with pytest.raises(
        ConfigError, match=r"entry 1 \('volume'\) field 'scale'.*did you mean 'zscore'"
    ):
        FeatureSetSpec.from_yaml(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((5, 3, 2)), COLUMNS, METHODS, [0]), "2-D feature table"),
        ((np.zeros((5, 3)), ("a", "b"), METHODS, [0]), "2 column names for a table of 3"),
        ((np.zeros((5, 3)), ("a", "a", "c"), "zscore", [0]), r"\['a'\] more than once"),
        ((np.zeros((5, 3)), COLUMNS, {"a": "zscore", "b": "none"}, [0]), r"no method for \['c'\]"),
        ((np.zeros((5, 3)), COLUMNS, {**METHODS, "c": "minmax"}, [0]), r"'c': 'minmax'"),
        ((np.zeros((5, 3)), COLUMNS, METHODS, []), "no training rows"),
        ((np.zeros((5, 3)), COLUMNS, METHODS, [0, 5]), r"0\.\.4"),
        ((np.zeros((5, 3)), COLUMNS, METHODS, [0.5]), "integer row positions"),
    ],
)
def test_bad_inputs_are_refused(args, message):
    with pytest.raises(ConfigError, match=message):
        fit_scaler(*args)


def test_non_finite_training_value_is_refused_naming_column_and_row():
    table = _table()
    table[12, 1] = np.nan
    with pytest.raises(ConfigError, match=r"Column 'b'.*row 12"):
        fit_scaler(table, COLUMNS, METHODS, np.arange(10, 20))
    # Outside the training rows a NaN is none of the fit's business.
    fit_scaler(table, COLUMNS, METHODS, np.arange(20, 40))


def test_transform_refuses_other_widths():
    scaler = fit_scaler(_table(), COLUMNS, METHODS, np.arange(20))
    with pytest.raises(ConfigError, match="3 columns"):
        scaler.transform(np.zeros((4, 2)))
