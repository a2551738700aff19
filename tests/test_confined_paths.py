"""Every command that takes a dataset reference, split name or run id stays in the data root.

Hostile references (``../..``, absolute paths, a symbolic link out of the root) are
refused with exit 2 and a message naming the reference; nothing is read from, or written
to, anywhere outside the root, and the root itself is unchanged.
"""

from __future__ import annotations

import pytest

from moola.data.registry import Registry
from tests.conftest import random_walk_bars
from tests.test_cli import run

HOSTILE = ("../../../outside", "/abs/outside", "..", "ok/../../x")


def _tree(path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def roots(tmp_path):
    """A data root with one raw version, and a lookalike 'outside' tree beside it."""
    root = tmp_path / "root" / "moola_data"
    Registry(root).write_raw("es", random_walk_bars(400), sources=[{"path": "t"}])
    outside = tmp_path / "outside"
    Registry(outside).write_raw("x", random_walk_bars(400), sources=[{"path": "t"}])
    (outside / "artifacts" / "runs" / "r").mkdir(parents=True)
    (outside / "artifacts" / "runs" / "r" / "manifest.json").write_text("{}")
    return root, outside


COMMANDS = {
    "data show": lambda ref: ["data", "show", ref],
    "data windows": lambda ref: ["data", "windows", ref, "--name", "w", "--length", "10"],
    "data split": lambda ref: ["data", "split", ref, "--strategy", "forward-chaining"],
    "features build": lambda ref: [
        "features",
        "build",
        "--raw",
        ref,
        "--set",
        "relative11",
        "--name",
        "f",
    ],
    "bars dc": lambda ref: ["bars", "dc", "--raw", ref, "--threshold", "0.001"],
    "train": lambda ref: [
        "train",
        "--model",
        "logistic_regression",
        "--dataset",
        ref,
        "--split",
        ref,
    ],
    "pretrain masked-ae": lambda ref: [
        "pretrain",
        "masked-ae",
        "--unlabeled",
        ref,
        "--epochs",
        "1",
    ],
    "evaluate": lambda ref: ["evaluate", ref, "--test"],
    "runs show": lambda ref: ["runs", "show", ref],
    "report": lambda ref: ["report", ref],
    "promote": lambda ref: ["promote", ref],
    "backtest run": lambda ref: [
        "backtest",
        "run",
        ref,
        "--long-class",
        "up",
        "--hold-bars",
        "5",
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("reference", HOSTILE)
def test_hostile_references_are_refused_and_touch_nothing(capsys, roots, command, reference):
    root, outside = roots
    if reference.startswith("/"):
        reference = str(outside)
    before_root, before_outside = _tree(root.parent.parent), _tree(outside)
    code, out, err = run(capsys, "--data-root", str(root), *COMMANDS[command](reference))
    assert code == 2, (command, reference, out, err)
    assert "Traceback" not in out + err
    assert "not allowed" in err or "No " in err or "outside" in err, err
    assert _tree(root.parent.parent) == before_root
    assert _tree(outside) == before_outside


def test_a_symlinked_dataset_folder_that_leaves_the_root_is_refused(capsys, roots):
    root, outside = roots
    (root / "data" / "raw" / "evil").symlink_to(outside / "data" / "raw" / "x")
    code, _, err = run(capsys, "--data-root", str(root), "data", "show", "evil")
    assert code == 2 and "outside the data root" in err
