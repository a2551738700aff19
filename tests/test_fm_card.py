"""Foundation backbones registered as encoder cards: where the weights are and their hash,
write-once and anchored, refused when the weights or the card change, and usable as an
fm_probe that reads exactly the registered weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moola.core.errors import CheckpointError, VersionExistsError
from moola.models import create
from moola.models.foundation import directory_sha256
from moola.pipeline.integrity import verify_root
from moola.pretrain.foundation import (
    foundation_cards,
    load_foundation_card,
    write_foundation_card,
)
from moola.testing.foundation import tiny_chronos_bolt, tiny_kronos


def test_a_card_records_the_folder_and_hash_and_gives_the_probe_its_weights(tmp_path):
    weights = tiny_kronos(tmp_path / "kronos")
    root = tmp_path / "root"
    card = write_foundation_card(root, "kronos", weights)
    assert card.path == root / "artifacts" / "encoders" / "foundation" / "kronos_v1.json"
    assert card.sha256 == directory_sha256(weights) and card.weights == weights.resolve()
    assert card.card["backbone"]["embedding_dim"] == 16
    assert write_foundation_card(root, "kronos", weights).version == 2
    with pytest.raises(VersionExistsError, match="write-once"):
        write_foundation_card(root, "kronos", weights, version=1)
    assert [p.name for p in foundation_cards(root)] == ["kronos_v1.json", "kronos_v2.json"]
    assert verify_root(root).ok, verify_root(root).problems  # cards live beside the .pt files

    loaded = load_foundation_card(card.path)
    assert loaded.probe_params() == {
        "backbone": "kronos",
        "path": str(weights.resolve()),
        "backbone_sha256": directory_sha256(weights),
    }
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-2, (20, 30)), axis=1))
    X = np.stack([close, close * 1.001, close * 0.999, close], axis=2)
    probe = create("fm_probe", **loaded.probe_params()).fit(X, np.arange(20) % 2)
    assert probe.predict_proba(X).shape == (20, 2)


def test_changed_weights_or_an_edited_card_are_refused_naming_the_file(tmp_path):
    weights = tiny_chronos_bolt(tmp_path / "chronos")
    root = tmp_path / "root"
    card = write_foundation_card(root, "chronos", weights)
    edited = json.loads(card.path.read_text())
    edited["backbone"]["path"] = "/elsewhere"
    card.path.write_text(json.dumps(edited, indent=2, sort_keys=True) + "\n")
    with pytest.raises(CheckpointError, match="edited afterwards"):
        load_foundation_card(card.path)
    second = write_foundation_card(root, "chronos", weights)
    tiny_chronos_bolt(weights, seed=1)  # other weights in the registered folder
    with pytest.raises(CheckpointError, match="changed since") as error:
        load_foundation_card(second.path)
    assert str(weights.resolve()) in str(error.value)
    assert load_foundation_card(second.path, check_weights=False).version == 2
    with pytest.raises(CheckpointError, match="not a foundation card"):
        load_foundation_card(weights / "config.json")
