"""Active learning: candidates ranked by a run's predictive uncertainty, least certain
first, and spread by k-center (over the run's encoder embeddings when its model holds an
encoder, else over the model's standardised inputs); strategy and run are recorded."""

from __future__ import annotations

import numpy as np
import pytest

from moola.annotate.extract import (
    extract_batch,
    k_center,
    select_uncertain,
    uncertainty,
)
from moola.core.errors import ConfigError
from moola.data.registry import Registry
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.predictor import Predictor
from moola.pipeline.train import TrainConfig, run_training

TINY_LSTM = {
    "epochs": 1,
    "batch_size": 16,
    "hidden": 8,
    "heads": 2,
    "fc": [8],
    "encoder_projection": True,
    "encoder_hidden": 8,
    "encoder_layers": 1,
}


def test_entropy_and_margin_are_highest_for_the_least_certain_rows():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.99, 0.01], [0.6, 0.4]])
    for measure in ("entropy", "margin"):
        scores = uncertainty(proba, measure)
        assert np.argsort(-scores).tolist() == [0, 3, 1, 2]
    assert uncertainty(proba, "entropy")[0] == pytest.approx(np.log(2))
    assert uncertainty(proba, "margin")[1] == pytest.approx(0.2)


def test_k_center_takes_one_point_from_each_cluster_before_a_second_from_any():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [50, 0], [0, 50], [50, 50]], dtype=float)
    # 40 points near the first centre, 3 near each other one: a crowd and three outposts.
    counts = [40, 3, 3, 3]
    points = np.concatenate(
        [c + rng.normal(0, 1, (k, 2)) for c, k in zip(centres, counts, strict=True)]
    )
    cluster = np.repeat(np.arange(4), counts)
    chosen = k_center(points, 4, first=0)
    assert sorted(cluster[chosen].tolist()) == [0, 1, 2, 3]


def test_select_uncertain_puts_the_least_certain_first_and_spreads_the_rest():
    rng = np.random.default_rng(1)
    # The 10 least certain rows sit in one tight spot; 10 others, a bit more certain, apart.
    crowd = rng.normal(0, 0.01, (10, 2))
    spread = rng.uniform(-100, 100, (10, 2))
    embeddings = np.concatenate([crowd, spread, rng.normal(0, 1, (30, 2))])
    scores = np.concatenate([np.full(10, 0.69), np.full(10, 0.6), np.full(30, 0.1)])
    scores[0] = 0.693  # the single least certain window
    picked = select_uncertain(scores, embeddings, 5, shortlist=20)
    assert picked[0] == 0  # least certain first
    assert np.all(np.diff(scores[picked]) <= 0)  # ordered by uncertainty
    assert set(picked.tolist()) <= set(range(20))  # only from the shortlist
    assert sum(p < 10 for p in picked) <= 2  # not all from the one crowded spot
    # Without diversity (shortlist = k) it would take the crowd only.
    assert set(select_uncertain(scores, embeddings, 5, shortlist=5).tolist()) < set(range(10))


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[Registry, dict[str, str]]:
    """Planted windows, a 3-fold purged split, an uncalibrated random-forest run (its
    probabilities spread out on windows unlike the planted ones) and a tiny LSTM run whose
    model holds a BiLSTM encoder."""
    registry = Registry(tmp_path_factory.mktemp("active") / "moola_data")
    raw, market = synthesize_raw(registry, "mkt", n_bars=12_000, n_patterns=48, seed=3)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    runs = {}
    for model, params in (("random_forest", {"n_estimators": 50}), ("simple_lstm", TINY_LSTM)):
        config = TrainConfig(
            model=model,
            dataset="pat",
            split="kf",
            params=params,
            calibration="none",
            n_bootstrap=5,
        )
        runs[model] = run_training(registry, config).run_id
    return registry, runs


def _scores(registry: Registry, run: str, batch) -> np.ndarray:
    predictor = Predictor.from_run(registry.root, run)
    bars = registry.load_raw("mkt")
    windows = np.stack(
        [
            bars[list(predictor.columns)].iloc[w.start_row : w.end_row + 1].to_numpy(np.float32)
            for w in batch.windows
        ]
    )
    return uncertainty(predictor.predict_proba(windows), "entropy")


def test_uncertainty_batches_pick_the_windows_the_run_is_least_sure_of(lab):
    registry, runs = lab
    run = runs["random_forest"]
    batch = extract_batch(
        registry,
        "mkt",
        n=8,
        length=105,
        name="al",
        strategy="uncertainty",
        run=run,
        weights="uniform",
        seed=0,
    )
    assert batch.strategy == "uncertainty" and batch.source_run == run
    assert batch.params["run"] == run and batch.params["measure"] == "entropy"
    assert batch.params["diversity_space"] == "inputs"
    assert batch.params["pool"] == 40 and batch.params["shortlist"] == 16
    scores = np.array([w.score for w in batch.windows])
    assert np.all(np.diff(scores) <= 1e-12)  # least certain first
    np.testing.assert_allclose(scores, _scores(registry, run, batch), atol=1e-9)
    random = extract_batch(registry, "mkt", n=8, length=105, name="rnd", weights="uniform", seed=0)
    assert all(w.score is None for w in random.windows)
    # The random batch was drawn after the active one, so both came from free windows.
    assert scores.mean() > _scores(registry, run, random).mean()


def test_a_run_with_an_encoder_spreads_over_its_embeddings(lab):
    registry, runs = lab
    batch = extract_batch(
        registry,
        "mkt",
        n=5,
        length=105,
        name="al-enc",
        strategy="uncertainty",
        run=runs["simple_lstm"],
        weights="uniform",
        measure="margin",
        seed=1,
    )
    assert batch.params["diversity_space"] == "encoder:BiLSTMEncoder"
    assert batch.params["measure"] == "margin"
    assert len(batch.windows) == 5


def test_a_run_of_another_window_length_is_refused(lab):
    registry, runs = lab
    with pytest.raises(ConfigError, match="105") as caught:
        extract_batch(
            registry,
            "mkt",
            n=3,
            length=60,
            name="bad",
            strategy="uncertainty",
            run=runs["random_forest"],
        )
    assert caught.value.param == "length"
