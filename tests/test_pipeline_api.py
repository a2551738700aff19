"""``moola.pipeline`` is the one home of orchestration: its public names resolve, and
the work that used to live in ``data/``, ``features/`` and ``cli/`` is reachable here."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import moola.pipeline as pipeline


@pytest.mark.parametrize("name", pipeline.__all__)
def test_every_public_name_resolves_to_its_home(name):
    value = getattr(pipeline, name)
    home = importlib.import_module(value.__module__)
    assert home.__name__.startswith("moola.pipeline.")
    assert getattr(home, name) is value


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        pipeline.no_such_thing  # noqa: B018


@pytest.mark.parametrize("old", ["moola.data.datasets", "moola.data.ingest"])
def test_orchestration_no_longer_lives_in_data(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def test_build_features_moved_to_pipeline():
    import moola.features

    assert not hasattr(moola.features, "build_features")
    assert pipeline.build_features.__module__ == "moola.pipeline.features"


def test_importing_the_package_loads_no_torch():
    code = "import sys, moola.pipeline; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
