"""No code runs from a data folder: model, calibrator and encoder files are data, never code.

Run folders are shared between users. A crafted ``calibrator.pkl`` or pickled
``model.bin`` used to run its author's shell command under ``moola evaluate``; these
tests build such payloads (a pickle whose ``__reduce__`` creates a sentinel file, a skops
file naming untrusted types, a torch file carrying the same pickle) and check that every
loader and command refuses them with a clean error and that the sentinel never appears.
They also pin the round trips of the safe formats and the one-time, journaled migration
of a trusted old run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import torch

from moola.core.chainlog import read_records
from moola.core.errors import CheckpointError, IntegrityError, MoolaError
from moola.core.hashing import sha256_bytes
from moola.core.integrity import file_records
from moola.data.registry import Registry
from moola.models._persist import HEADER_MEMBER, library_versions
from moola.models.minirocket import MiniRocketClassifier
from moola.models.stack import StackingClassifier
from moola.models.tabular import TABULAR_KINDS, TabularClassifier
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.lifecycle import evaluate_test
from moola.pipeline.migrate import MigrationNeedsTrust, migrate_run
from moola.pipeline.train import TrainConfig, run_training
from moola.pretrain.artifacts import load_encoder_artifact, load_training_checkpoint
from moola.tracking.journal import JsonlJournal
from moola.tracking.runs import RunStore
from moola.training.calibration import (
    CALIBRATORS,
    Calibrator,
    calibrate,
    load_calibrator,
    save_calibrator,
)
from moola.training.neural import NeuralEstimator
from tests.test_cli import run


class _RunsCode:
    """Unpickling this runs a shell command that creates ``sentinel`` (the attack)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.sentinel)}",))


@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a crafted file ran code"


def _evil_pickle(sentinel: Path) -> bytes:
    return pickle.dumps({"format": "moola-model", "state": _RunsCode(sentinel)}, protocol=5)


def test_the_crafted_pickle_really_runs_code_when_unpickled(tmp_path):
    """The control: without this, the refusals below would prove nothing."""
    path = tmp_path / "PWNED"
    pickle.loads(_evil_pickle(path))
    assert path.exists()


# --- library loaders ------------------------------------------------------------------


@pytest.mark.parametrize("cls", [TabularClassifier, MiniRocketClassifier, StackingClassifier])
def test_a_pickled_model_file_is_refused_unread(tmp_path, sentinel, cls):
    path = tmp_path / "model.bin"
    path.write_bytes(_evil_pickle(sentinel))
    with pytest.raises(CheckpointError, match=r"model\.bin is in moola's old pickle.*migrate"):
        cls.load(path)


def _skops_model(tmp_path: Path, state: dict) -> Path:
    """A file with a valid moola header whose skops payload is ``state``."""
    header = {
        "format": "moola-model",
        "format_version": 2,
        "model": "logistic_regression",
        "class": "moola.models.tabular.TabularClassifier",
        "params": {"kind": "logistic_regression", "random_state": 0, "n_classes": None},
        "library_versions": library_versions(),
    }
    buffer = io.BytesIO(sio.dumps(state))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(HEADER_MEMBER, json.dumps(header))
    path = tmp_path / "model.bin"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(("value", "named"), [(os.system, "posix.system"), (eval, "builtins.eval")])
def test_a_skops_file_naming_untrusted_types_is_refused_naming_them(tmp_path, value, named):
    path = _skops_model(tmp_path, {"n_features_in_": 3, "n_classes_": 2, "model_": value})
    with pytest.raises(CheckpointError, match=rf"model\.bin names types .*{named}"):
        TabularClassifier.load(path)


@pytest.mark.parametrize("content", ["pickle", "garbage"])
def test_a_calibrator_that_is_not_json_is_refused(tmp_path, sentinel, content):
    data = _evil_pickle(sentinel) if content == "pickle" else b"\x00\x01 not json"
    with pytest.raises(CheckpointError, match=r"calibrator\.json is not valid JSON"):
        load_calibrator(data, tmp_path / "calibrator.json")


def _evil_torch_file(path: Path, sentinel: Path) -> Path:
    torch.save({"format": "moola-encoder", "state_dict": _RunsCode(sentinel)}, path)
    return path


def test_torch_files_carrying_code_are_refused_by_encoder_and_neural_loaders(tmp_path, sentinel):
    encoder = _evil_torch_file(tmp_path / "evil_v1.pt", sentinel)
    digest = sha256_bytes(encoder.read_bytes())
    encoder.with_suffix(".json").write_text(json.dumps({"sha256": digest}))  # bytes "match"
    with pytest.raises(CheckpointError, match=r"evil_v1\.pt cannot be read"):
        load_encoder_artifact(encoder)
    with pytest.raises(CheckpointError, match=r"evil_v1\.pt cannot be read"):
        load_training_checkpoint(encoder)
    model = _evil_torch_file(tmp_path / "model.bin", sentinel)
    with pytest.raises(CheckpointError, match=r"model\.bin cannot be read"):
        NeuralEstimator.load(model)


# --- round trips of the safe formats ----------------------------------------------------


def _toy(n: int = 90, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(n, 5))
    return X, np.digitize(X[:, 0] + 0.3 * rng.normal(size=n), [-0.4, 0.4][: k - 1])


@pytest.mark.parametrize("kind", TABULAR_KINDS)
def test_tabular_models_round_trip_to_identical_probabilities(tmp_path, kind):
    X, y = _toy()
    model = TabularClassifier(kind, n_classes=3).fit(X, y)
    model.save(tmp_path / "model.bin")
    loaded = TabularClassifier.load(tmp_path / "model.bin")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_minirocket_and_stack_round_trip_to_identical_probabilities(tmp_path):
    rng = np.random.default_rng(5)
    windows = rng.normal(size=(40, 20, 2))
    y = (windows[:, -1, 0] > 0).astype(np.int64)
    rocket = MiniRocketClassifier(n_kernels=168).fit(windows, y)
    rocket.save(tmp_path / "rocket.bin")
    back = MiniRocketClassifier.load(tmp_path / "rocket.bin")
    np.testing.assert_array_equal(back.predict_proba(windows), rocket.predict_proba(windows))
    proba = rng.dirichlet(np.ones(2), size=60)
    stacked = np.column_stack([proba, proba[:, ::-1]])
    labels = (proba[:, 1] > 0.5).astype(np.int64)
    stack = StackingClassifier(base_names=["a", "b"]).fit(stacked, labels)
    stack.save(tmp_path / "stack.bin")
    back_stack = StackingClassifier.load(tmp_path / "stack.bin")
    np.testing.assert_array_equal(back_stack.predict_proba(stacked), stack.predict_proba(stacked))


def _fitted_calibrators() -> list[tuple[str, int, Calibrator, np.ndarray]]:
    rng = np.random.default_rng(6)
    out = []
    for k in (2, 3):
        proba = rng.dirichlet(np.ones(k), size=300)
        y = np.array([rng.choice(k, p=row) for row in proba])
        probe = np.vstack([rng.dirichlet(np.ones(k), size=200), np.eye(k)])  # incl. edges
        for method in ("platt", "isotonic", "temperature"):
            out.append((method, k, calibrate(method, proba, y, origin="oof"), probe))
    return out


@pytest.mark.parametrize(("method", "k", "calibrator", "probe"), _fitted_calibrators())
def test_every_calibrator_round_trips_to_identical_output(tmp_path, method, k, calibrator, probe):
    data = save_calibrator(calibrator)
    json.loads(data)  # plain JSON, nothing else
    loaded = load_calibrator(data, tmp_path / "calibrator.json")
    assert type(loaded) is type(calibrator) and loaded.origin_ == "oof"
    np.testing.assert_array_equal(loaded.transform(probe), calibrator.transform(probe))


def _isotonic_document() -> dict:
    method, k, calibrator, _ = _fitted_calibrators()[4]  # isotonic, 3 classes
    assert method == "isotonic" and k == 3
    return calibrator.to_dict()


def _broken(change) -> dict:
    document = _isotonic_document()
    change(document)
    return document


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (_broken(lambda d: d.update(method="magic")), "method 'magic'"),
        (_broken(lambda d: d.pop("origin")), "lacks \\['origin'\\]"),
        (_broken(lambda d: d.update(extra=1)), "unexpected keys \\['extra'\\]"),
        (_broken(lambda d: d.update(n_classes=2)), "unexpected keys \\['0', '2'\\]"),
        (_broken(lambda d: d["params"]["columns"].pop("2")), "lacks \\['2'\\]"),
        (
            _broken(lambda d: d["params"]["columns"]["1"]["y_thresholds"].append(0.5)),
            "X_thresholds but",
        ),
        (
            _broken(lambda d: d["params"]["columns"]["0"].update(X_thresholds="0.1")),
            "not a non-empty list",
        ),
        (_broken(lambda d: d.update(format_version=99)), "format version 99"),
        ({"format": "something-else"}, "not a moola calibrator"),
        (
            {
                **CALIBRATORS["temperature"]().fit(np.eye(2), [0, 1]).to_dict(),
                "params": {"inputs": "proba", "temperature": -1.0},
            },
            "temperature is -1.0",
        ),
    ],
)
def test_a_malformed_calibrator_is_refused_naming_the_file(tmp_path, document, problem):
    with pytest.raises(CheckpointError, match=rf"cal\.json cannot be used: .*{problem}"):
        load_calibrator(json.dumps(document).encode(), tmp_path / "cal.json")


# --- runs, the CLI and migration ---------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> tuple[Registry, Path]:
    """A holdout run (forward-chaining split) whose folder the tests copy and tamper with."""
    registry = Registry(tmp_path_factory.mktemp("shared"))
    raw, market = synthesize_raw(registry, "mkt", n_bars=40_000, n_patterns=120, seed=7)
    labeled = planted_labeled(registry, "pat", raw, market)
    make_and_store_split(registry, labeled, "forward-chaining", name="fc", purge=105, embargo=105)
    result = run_training(
        registry,
        TrainConfig(model="logistic_regression", dataset="pat", split="fc", n_bootstrap=20),
    )
    return registry, result.run_dir


@pytest.fixture(scope="module")
def original_test_metrics(lab) -> dict:
    """The source run's test metrics (scored once: looks are recorded per second)."""
    registry, source = lab
    return evaluate_test(registry, source.name, allow_reuse=True, n_bootstrap=20)["metrics"]


def _copy_run(
    registry: Registry,
    source: Path,
    label: str,
    *,
    put: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
    hashed: bool = True,
) -> str:
    """A copy of run ``source`` named ``<id>-<label>`` with files replaced or removed.

    ``hashed``: its manifest lists the files' hashes and the journal anchors it (a run a
    colleague wrote on a shared data root: everything checks out, only the files are
    hostile). Otherwise it has no hashes and no anchor (a run written by an old moola).
    """
    put = put or {}
    run_id = f"{source.name}-{label}"
    target = source.parent / run_id
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("evaluations", "backtests"))
    for name in drop:
        (target / name).unlink()
    for name, data in put.items():
        (target / name).write_bytes(data)
    manifest = json.loads((target / "manifest.json").read_bytes())
    manifest["run_id"] = run_id
    if hashed:
        names = (set(manifest["files"]) - set(drop)) | set(put)
        manifest["files"] = file_records(target, sorted(names))
    else:
        manifest.pop("files")
        manifest.pop("integrity", None)
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    (target / "manifest.json").write_bytes(data)
    if hashed:
        RunStore(registry.root).anchors.record(f"run:{run_id}", data)
    return run_id


def _cli(capsys, registry: Registry, *argv: str) -> tuple[int, str, str]:
    code, out, err = run(capsys, "--data-root", str(registry.root), *argv)
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize("file", ["calibrator.pkl", "model.bin"])
def test_cli_evaluate_and_promote_refuse_a_shared_run_with_crafted_pickles(
    capsys, lab, sentinel, file
):
    registry, source = lab
    drop = ("calibrator.json",) if file == "calibrator.pkl" else ()
    run_id = _copy_run(
        registry, source, f"evil-{file}", put={file: _evil_pickle(sentinel)}, drop=drop
    )
    for reuse in ((), ("--allow-test-reuse",)):
        code, _, err = _cli(capsys, registry, "evaluate", run_id, "--test", *reuse)
        assert code == 2 and "pickle" in err and "moola runs migrate" in err, err
    code, _, err = _cli(
        capsys, registry, "promote", run_id, "--min-accuracy", "0", "--max-ece", "1"
    )
    assert code == 2 and "pickle" in err, err
    assert not (registry.root / "artifacts/models/promoted" / run_id).exists()
    looks = JsonlJournal(registry.root).read("test_look")
    assert all(look.payload.run_id != run_id for look in looks)


def test_cli_evaluate_refuses_a_skops_model_naming_untrusted_types(capsys, lab, tmp_path):
    registry, source = lab
    crafted = _skops_model(tmp_path, {"n_features_in_": 3, "n_classes_": 2, "model_": os.system})
    run_id = _copy_run(registry, source, "skops-evil", put={"model.bin": crafted.read_bytes()})
    code, _, err = _cli(capsys, registry, "evaluate", run_id, "--test", "--allow-test-reuse")
    assert code == 2 and "posix.system" in err, err


def _legacy_files(run_dir: Path) -> dict[str, bytes]:
    """What the run's model and calibrator files were before the safe formats: pickles.

    The model payload is format 1 of ``moola.models._persist`` (see git history).
    """
    model = TabularClassifier.load(run_dir / "model.bin")
    calibrator = load_calibrator((run_dir / "calibrator.json").read_bytes(), "calibrator.json")
    state = {key: value for key, value in vars(model).items() if key.endswith("_")}
    payload = {
        "format": "moola-model",
        "format_version": 1,
        "model": model.name,
        "class": "moola.models.tabular.TabularClassifier",
        "params": model.get_params(),
        "n_features_in": state["n_features_in_"],
        "classes": list(range(state["n_classes_"])),
        "moola_version": "0.0",
        "library_versions": library_versions(),
        "state": state,
    }
    return {
        "model.bin": pickle.dumps(payload, protocol=5),
        "calibrator.pkl": pickle.dumps(calibrator),
    }


@pytest.mark.parametrize("hashed", [True, False], ids=["pickles", "pickles-and-no-hashes"])
def test_a_trusted_legacy_run_migrates_once_then_evaluates_as_before(
    capsys, lab, original_test_metrics, hashed
):
    registry, source = lab
    legacy = _legacy_files(source)
    run_id = _copy_run(
        registry, source, f"legacy-{hashed}", put=legacy, drop=("calibrator.json",), hashed=hashed
    )
    run_dir = source.parent / run_id
    code, _, err = _cli(capsys, registry, "evaluate", run_id, "--test", "--allow-test-reuse")
    assert code == 2 and f"moola runs migrate {run_id} --trust" in err, err

    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, _, err = _cli(capsys, registry, "runs", "migrate", run_id)
    assert code == 2 and "unpickl" in err and "--trust" in err, err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    journal = registry.root / "journal" / "migrations.jsonl"
    assert all(r["run_id"] != run_id for r in read_records(journal)[0])

    code, out, err = _cli(capsys, registry, "runs", "migrate", run_id, "--trust")
    assert code == 0, err
    assert "migrated" in out and "calibrator.json" in out
    line = [r for r in read_records(journal)[0] if r["run_id"] == run_id][-1]
    assert line["files"] == {name: sha256_bytes(data) for name, data in legacy.items()}
    assert line["by"] and line["at"]
    manifest = RunStore(registry.root).manifest(run_dir)
    assert not (run_dir / "calibrator.pkl").exists()
    assert set(manifest["files"]) >= {"model.bin", "calibrator.json", "reliability.png"}
    assert "report.html" not in manifest["files"] and manifest["migrated"]["converted"]
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".tmp-")]

    migrated = evaluate_test(registry, run_id, allow_reuse=True, n_bootstrap=20)
    assert migrated["metrics"] == original_test_metrics
    again = migrate_run(registry.root, run_id, trust=False)
    assert not again.changed


def test_migration_without_trust_is_a_library_error_naming_the_files(lab):
    registry, source = lab
    run_id = _copy_run(
        registry, source, "untrusted", put=_legacy_files(source), drop=("calibrator.json",)
    )
    with pytest.raises(MigrationNeedsTrust, match=r"unpickles.*calibrator\.pkl.*model\.bin"):
        migrate_run(registry.root, run_id, trust=False)
    assert issubclass(MigrationNeedsTrust, MoolaError)


def test_migration_refuses_a_run_whose_other_files_were_tampered_with(lab):
    """Migration re-hashes files; it must not launder an edited one into the new manifest."""
    registry, source = lab
    run_id = _copy_run(
        registry, source, "tampered", put=_legacy_files(source), drop=("calibrator.json",)
    )
    plot = source.parent / run_id / "reliability.png"
    plot.write_bytes(plot.read_bytes() + b"edited")
    with pytest.raises(IntegrityError, match=r"reliability\.png"):
        migrate_run(registry.root, run_id, trust=True)
    assert (source.parent / run_id / "calibrator.pkl").is_file()
    journal = registry.root / "journal" / "migrations.jsonl"
    assert all(r["run_id"] != run_id for r in read_records(journal)[0])
