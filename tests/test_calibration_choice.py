"""The default calibration is chosen out of fold and never at the minority class's expense."""

from __future__ import annotations

import numpy as np
import pytest

from moola.training.calibration import calibrate
from moola.training.calibration_choice import (
    choose_calibration,
    contiguous_blocks,
    cross_fitted,
)


def _imbalanced(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A weak model on a 15% minority whose probabilities sit around 0.5: argmax finds the
    minority now and then, while Platt scaling pulls most minority probabilities under 0.5."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(np.int64)  # class 1 is the minority
    p1 = np.clip(rng.normal(0.5 + 0.1 * y, 0.08), 0.01, 0.99)
    return np.column_stack([1 - p1, p1]), y


def _floors(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Point values as floors: any loss of minority F1 or balanced accuracy is refused."""
    choice, _ = choose_calibration(
        proba,
        y,
        [np.arange(len(y))[i::5] for i in range(5)],
        minority=1,
        floors={},
        methods=("none",),
    )
    row = choice.candidates[0]
    return {
        "minority_f1": row["minority_f1"] - 0.02,
        "balanced_accuracy": row["balanced_accuracy"] - 0.02,
    }


def test_platt_that_silences_the_minority_is_refused_with_the_reason():
    proba, y = _imbalanced()
    groups = contiguous_blocks(np.arange(len(y)))
    choice, _ = choose_calibration(proba, y, groups, minority=1, floors=_floors(proba, y))
    rows = {row["method"]: row for row in choice.candidates}
    assert not rows["platt"]["eligible"]
    assert "minority_f1" in rows["platt"]["refused_because"]
    assert rows["platt"]["minority_f1"] < rows["none"]["minority_f1"] - 0.1
    assert rows["platt"]["log_loss"] < rows["none"]["log_loss"]  # why log loss alone misleads
    assert choice.method != "platt" and rows[choice.method]["chosen"]
    assert sum(row["chosen"] for row in choice.candidates) == 1


def test_the_minority_threshold_is_chosen_out_of_fold_and_recorded():
    proba, y = _imbalanced(seed=1)
    groups = contiguous_blocks(np.arange(len(y)))
    choice, _ = choose_calibration(proba, y, groups, minority=1, floors=_floors(proba, y))
    assert choice.threshold is not None and 0.05 <= choice.threshold <= 0.95
    assert set(choice.thresholded) == {"balanced_accuracy", "minority_f1"}
    # out of fold: shuffling the labels leaves the thresholded score at chance
    shuffled = np.random.default_rng(2).permutation(y)
    noise, _ = choose_calibration(proba, shuffled, groups, minority=1, floors={})
    assert noise.thresholded["balanced_accuracy"] < 0.58


def test_cross_fitting_never_calibrates_a_group_with_itself():
    proba, y = _imbalanced(seed=3)
    groups = contiguous_blocks(np.arange(len(y)), k=4)
    out = cross_fitted("isotonic", proba, y, groups)
    others = np.concatenate(groups[1:])
    expected = calibrate("isotonic", proba[others], y[others], origin="oof").transform(
        proba[groups[0]]
    )
    np.testing.assert_allclose(out[groups[0]], expected)


@pytest.mark.parametrize("k", [2, 5])
def test_contiguous_blocks_keep_time_order_and_cover_every_index(k):
    blocks = contiguous_blocks(np.arange(100), k=k)
    assert np.array_equal(np.concatenate(blocks), np.arange(100)) and len(blocks) == k
