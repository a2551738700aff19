"""After training: score the test part once, write the report, promote through gates.

- ``evaluate_test`` scores a holdout run on its split's test part through the run's
  ``Predictor`` (``moola.pipeline.predictor``: the same bundle that turns raw bars into
  calibrated probabilities everywhere else). The test part is a one-time resource:
  every look is a ``TestLook`` in the journal, written before the score is shown, and a
  second look at the same split's test part (by any run) is refused unless explicitly
  allowed, which is recorded too. Model selection on test is how small
  labeled sets produce results that do not survive contact with new data.
- ``write_report`` renders a run's self-contained HTML report.
- ``promote`` checks a run against the promotion gates; the decision (pass or refusal,
  with every gate's value and threshold) is a ``GateDecision`` in the journal, written
  before anything is copied to ``artifacts/models/promoted/<run_id>/``.

An RL run (``moola rl train``) is promoted on its recorded evaluation: the evaluation
period's greedy episodes (val, or a walk-forward fold's test), or the run's latest look at
its split's test part when one was taken through the test ledger (``moola rl eval RUN
--test``). Its gates (:func:`rl_gates`) read :func:`moola.pipeline.rl.rl_gate_metrics`:
by default the after-cost evaluation return above 0 (``eval_return>0``), the greedy
episode's maximum drawdown at most 20% (``max_drawdown``, from its replay through
``moola backtest``) and that replay equal to the environment's equity
(``parity_max_rel_diff<=1e-09``); accuracy and calibration gates do not apply and are
refused. Before anything is judged, the run's agent is loaded as a live policy (weights
only, no pickle); the promoted folder holds ``model.zip``, the manifest, ``gate.json`` and
``policy.json`` (``moola.pipeline.rl.policy_record``: what live inference needs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from moola.core.atomic import atomic_write_text
from moola.core.errors import ConfigError, LeakageError
from moola.core.integrity import read_json_bytes
from moola.core.provenance import utc_now_iso
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig, default_gates, evaluate_gates
from moola.evaluation.metrics import classification_report
from moola.evaluation.report import Section, image_html, pre_html, render_report, table_html
from moola.pipeline.feature_inputs import is_feature_windows, load_feature_training_data
from moola.pipeline.forecast import score_values
from moola.pipeline.predictor import (
    CALIBRATOR_FILE,
    MODEL_FILE,
    Predictor,
)
from moola.pipeline.train import SCALER_FILE, TrainConfig, flat_metrics
from moola.tracking.journal import (
    GateDecision,
    GateDecisionPayload,
    JsonlJournal,
    TestLook,
    TestLookPayload,
)
from moola.tracking.manifest import CalibrationRecord, TrainManifest
from moola.tracking.runs import MANIFEST_FILE, REPORT_FILE, RunStore

#: Run files a promoted model carries (besides the manifest and the gate decision).
PROMOTED_FILES = (MODEL_FILE, CALIBRATOR_FILE, SCALER_FILE)


def load_manifest(store: RunStore, run_id: str) -> tuple[Path, TrainManifest]:
    """A training run's folder (inside the data root) and its typed manifest, checked
    against the journal; ``ConfigError`` for a run that is not a training run."""
    run_dir = store.run_dir(run_id)
    return run_dir, store.train_manifest(run_dir)


def _test_evaluations(store: RunStore, run_dir: Path) -> list[dict[str, Any]]:
    folder = run_dir / "evaluations"
    if not folder.is_dir():
        return []
    return [
        read_json_bytes(store.read_added_file(run_dir, f"evaluations/{p.name}"), p)
        for p in sorted(folder.glob("test-*.json"))
    ]


def earlier_test_looks(
    journal: JsonlJournal, split_hash: str, split: str, *, allow_reuse: bool
) -> list[TestLookPayload]:
    """The looks already taken at the test part of the split hashing to ``split_hash``;
    ``LeakageError`` when there is one and ``allow_reuse`` is not given."""
    earlier = [
        look.payload
        for look in journal.read("test_look")
        if isinstance(look, TestLook) and look.payload.split_hash == split_hash
    ]
    if earlier and not allow_reuse:
        runs = ", ".join(sorted({look.run_id for look in earlier}))
        raise LeakageError(
            f"The test part of split {split} was already looked at (by run(s) {runs}). "
            "Scoring it again turns it into a model-selection set and its numbers stop "
            "being an unbiased estimate. Make a new split with a later test period, or "
            "pass allow_reuse=True to do it anyway (recorded in the ledger).",
            param="allow_reuse",
        )
    return earlier


def record_test_look(
    journal: JsonlJournal, run_id: str, split_hash: str, split: str, *, reused: bool
) -> None:
    """Journal a look at a split's test part: on disk before the score is computed."""
    journal.append(
        TestLook(
            payload=TestLookPayload(
                run_id=run_id, split_hash=split_hash, split=split, reuse_allowed=reused
            )
        )
    )


def evaluate_test(
    registry: Registry, run_id: str, *, allow_reuse: bool = False, n_bootstrap: int = 1000
) -> dict[str, Any]:
    """Score a holdout run on its split's test part, once; returns the metrics report."""
    store = RunStore(registry.root)
    run_dir, manifest = load_manifest(store, run_id)
    if manifest.mode != "holdout":
        raise ConfigError(
            f"Run {run_dir.name} was evaluated out of fold over all its samples; it has no "
            "untouched test part. Use a forward-chaining split to hold out a test part."
        )
    config = TrainConfig.model_validate(manifest.config)
    split_hash = manifest.split.split_hash
    journal = JsonlJournal(registry.root)
    earlier = earlier_test_looks(journal, split_hash, config.split, allow_reuse=allow_reuse)
    dataset = manifest.data.dataset  # the exact dataset and split versions the run trained on
    if is_feature_windows(registry, dataset.pinned):
        data = load_feature_training_data(registry, dataset.pinned, manifest.split.pinned)
        X_test = data.X[data.test.indices].materialise()  # unscaled feature windows
    else:
        data = registry.load_labeled(dataset.name, dataset.version, split=manifest.split.pinned)
        X_test = data.X[data.test.indices]
    predictor = Predictor.from_run(registry.root, run_dir.name)
    record_test_look(journal, run_dir.name, split_hash, config.split, reused=bool(earlier))
    if predictor.task == "classification":
        report = classification_report(
            data.test.y,
            predictor.predict_proba(X_test),  # calibrated when it can be
            classes=data.classes,
            n_bootstrap=n_bootstrap,
            seed=config.seed,
        )
    else:
        report = score_values(
            data,
            predictor,
            X_test,
            np.asarray(data.test.indices),
            n_bootstrap=n_bootstrap,
            seed=config.seed,
        )
    record = {
        "at": utc_now_iso(),
        "part": "test",
        "calibrated": predictor.calibrator is not None,
        "samples": len(data.test),
        "metrics": report,
        "reused_test": bool(earlier),
    }
    stamp, n = record["at"].replace(":", ""), 1
    name = f"test-{stamp}.json"
    while (run_dir / "evaluations" / name).exists():  # two looks within one second
        n += 1
        name = f"test-{stamp}-{n}.json"
    store.add_file(run_dir, f"evaluations/{name}", (json.dumps(record, indent=2) + "\n").encode())
    store.append_result(
        {
            "run_id": run_dir.name,
            "kind": "evaluate",
            "part": "test",
            "model": config.model,
            "dataset": dataset.model_dump(),
            "metrics": flat_metrics(report),
        }
    )
    return report


def latest_backtest(store: RunStore, run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """Folder and record of the run's newest backtest whose predictions passed the leakage
    check (or had the leaky ones skipped, as recorded); None when there is none."""
    found = None
    for path in sorted((run_dir / "backtests").glob("*/backtest.json")):
        record = read_json_bytes(store.read_addition(path.parent, path.name), path)
        if record["leakage_check"]["passed"] or record["leakage_check"]["skipped"]:
            found = (path.parent, record)
    return found


def gate_basis(
    store: RunStore, run_dir: Path, manifest: TrainManifest
) -> tuple[str, dict[str, Any]]:
    """The metrics promotion is judged on: test if scored, else calibrated OOF."""
    tests = _test_evaluations(store, run_dir)
    if tests:
        return "test", tests[-1]["metrics"]
    if manifest.mode == "oof":
        return "out-of-fold", manifest.calibrated_metrics or manifest.metrics
    raise ConfigError(
        f"Run {run_dir.name} has no test evaluation; score it once with "
        f"`moola evaluate {run_dir.name} --test` before promoting."
    )


class NoBacktestError(ConfigError):
    """A backtest gate (Sharpe, drawdown) was asked for but the run has no valid backtest.

    Raised before the gate ledger is written: there is nothing to judge yet. ``run_id``
    and ``gates`` (the backtest gates asked for) let the caller say how to make one.
    """

    def __init__(self, run_id: str, gates: tuple[str, ...]) -> None:
        self.run_id, self.gates = run_id, gates
        super().__init__(
            f"Run {run_id} has no backtest whose leakage check passed, so the "
            f"{' and '.join(gates)} gate(s) have nothing to judge. Backtest the run's "
            f"predictions first (moola.pipeline.backtests.backtest_run on run {run_id}), "
            "then promote it; or leave those gates out."
        )


def backtest_gated(gates: GateConfig) -> bool:
    """Whether ``gates`` judge a backtest (a Sharpe or drawdown threshold is set)."""
    return bool(_backtest_gates(gates))


def _backtest_gates(gates: GateConfig) -> tuple[str, ...]:
    names = (("min_sharpe", gates.min_sharpe), ("max_drawdown", gates.max_drawdown))
    return tuple(name for name, value in names if value is not None)


def promote(
    registry: Registry,
    run_id: str,
    gates: GateConfig | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Promote a run that passes every gate; refuse, listing each failed gate, otherwise.

    Without ``gates`` the run's task picks them (``default_gates``: accuracy and ECE for a
    classifier, none of those for a regression or multi-task run, whose evidence comes
    from metric gates such as ``ic>0.02``), with ``overrides`` (GateConfig fields) on
    top. ``gates.min_sharpe`` and ``gates.max_drawdown`` are judged on the stats of the
    run's latest backtest whose leakage check passed (:func:`latest_backtest`); asking for
    them on a run without one raises :class:`NoBacktestError` before anything is recorded.
    An RL run is judged by :func:`rl_gates` on its recorded evaluation (module notes).
    """
    store = RunStore(registry.root)
    if store.manifest(store.run_dir(run_id)).get("kind") == "rl":
        return _promote_rl(registry, store, store.run_dir(run_id), gates, overrides)
    run_dir, manifest = load_manifest(store, run_id)
    # What is promoted must predict: its whole Predictor loads (verified files, safe
    # loaders, no pickles, window shape) before any decision is recorded.
    Predictor.from_run(registry.root, run_dir.name)
    basis, report = gate_basis(store, run_dir, manifest)
    metrics = report  # a classification, regression or multi-task report: gates read it
    gates = gates or default_gates(manifest.task, **(overrides or {}))
    backtest = latest_backtest(store, run_dir)
    if backtest is None and backtest_gated(gates):
        raise NoBacktestError(run_dir.name, _backtest_gates(gates))
    stats = backtest[1]["stats"] if backtest else None
    record = evaluate_gates(metrics, gates, stats)
    decision = {
        "run_id": run_dir.name,
        "manifest_sha256": store.manifest_hash(run_dir),
        "at": utc_now_iso(),
        "basis": basis,
        "gates": record.to_dict(),
    }
    if backtest is not None:  # which backtest the Sharpe and drawdown came from
        decision["backtest"] = str(backtest[0].relative_to(run_dir))
    journal = JsonlJournal(registry.root)
    journal.append(  # recorded before anything acts on it
        GateDecision(
            at=decision["at"],
            payload=GateDecisionPayload(
                **{key: value for key, value in decision.items() if key != "at"}
            ),
        )
    )
    if not record.passed:
        failed = [g for g in decision["gates"]["gates"] if not g["passed"]]
        reasons = "; ".join(
            f"{g['name']}: {g.get('value')} vs threshold {g.get('threshold')}"
            + (f" ({g['reason']})" if g.get("reason") else "")
            for g in failed
        )
        raise ConfigError(
            f"Run {run_dir.name} was not promoted ({basis} metrics). Failed gates: {reasons}. "
            f"The decision is recorded in {journal.path}."
        )
    files = {
        name: store.read_bytes(run_dir, name)
        for name in PROMOTED_FILES
        if store.has_file(run_dir, name)
    }
    files[MANIFEST_FILE] = store.manifest_bytes(run_dir)
    files["gate.json"] = (json.dumps(decision, indent=2) + "\n").encode()
    target = store.write_promoted(run_dir.name, files)
    return {**decision, "path": str(target)}


#: An RL run's default metric gates (module notes); a gate given on the same metric
#: replaces its default.
RL_METRIC_GATES: tuple[str, ...] = ("eval_return>0", "parity_max_rel_diff<=1e-09")
#: An RL run's default maximum drawdown of its greedy evaluation episode.
RL_MAX_DRAWDOWN = 0.20
_NOT_RL = ("min_accuracy", "max_ece", "min_accuracy_ci_low")


def rl_gates(gates: GateConfig | None = None, **overrides: Any) -> GateConfig:
    """The gates of an RL run: ``gates`` as given, else the defaults (module notes) with
    ``overrides`` (GateConfig fields: ``max_drawdown``, ``min_sharpe``, ``metric_gates``
    on :func:`moola.pipeline.rl.rl_gate_metrics`' names). An accuracy or calibration gate
    is refused (``ConfigError`` naming it): an RL run has no class probabilities."""
    from moola.evaluation.gates import parse_gate

    asked = {
        name: value
        for name, value in (gates.model_dump() if gates is not None else overrides).items()
        if name in _NOT_RL and value is not None
    }
    if asked:
        raise ConfigError(
            f"Gate(s) {sorted(asked)} judge a classifier's accuracy or calibration; an RL run "
            "is judged on its evaluation episodes (max_drawdown, min_sharpe and metric gates "
            "such as 'eval_return>0.01' or 'excess_return>0').",
            param=sorted(asked)[0],
        )
    if gates is not None:
        return gates.model_copy(update={"min_accuracy": None, "max_ece": None})
    given = {k: v for k, v in overrides.items() if k not in _NOT_RL}
    extra = tuple(
        parse_gate(g) if isinstance(g, str) else g for g in given.pop("metric_gates", ()) or ()
    )
    named = {gate.metric for gate in extra}
    defaults = tuple(gate for gate in map(parse_gate, RL_METRIC_GATES) if gate.metric not in named)
    return GateConfig(
        **{
            "min_accuracy": None,
            "max_ece": None,
            "max_drawdown": RL_MAX_DRAWDOWN,
            **given,
            "metric_gates": defaults + extra,
        }
    )


def _rl_basis(
    store: RunStore, run_dir: Path, manifest: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The evaluation an RL run is judged on: its latest test look, when one was taken
    through the test ledger; else the evaluation period recorded with the run."""
    tests = _test_evaluations(store, run_dir)
    if tests:
        looks = {
            look.payload.run_id
            for look in JsonlJournal(store.root).read("test_look")
            if isinstance(look, TestLook)
        }
        if run_dir.name not in looks:
            raise LeakageError(
                f"Run {run_dir.name} holds a test evaluation that the test ledger does not "
                "record; it cannot be a basis for promotion.",
                param="run_id",
            )
        return "test", tests[-1]
    evaluation = manifest.get("evaluation")
    if not isinstance(evaluation, dict):
        raise ConfigError(f"RL run {run_dir.name} records no evaluation.", param="run_id")
    return str((evaluation.get("period") or {}).get("part") or "val"), evaluation


def _promote_rl(
    registry: Registry,
    store: RunStore,
    run_dir: Path,
    gates: GateConfig | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``promote`` for an RL run (module notes)."""
    from moola.pipeline.rl import policy_record, rl_gate_metrics
    from moola.rl.policy import POLICY_FILE, LivePolicy

    manifest = store.manifest(run_dir)
    config = rl_gates(gates, **(overrides or {}))
    record = policy_record(registry, run_dir.name, manifest)
    # What is promoted must act: the agent loads as a live policy (verified weights, no
    # pickle, the recorded spaces) before any decision is recorded.
    LivePolicy.from_record(
        record, store.verified_path(run_dir, "model.zip"), where=f"RL run {run_dir.name}"
    )
    basis, evaluation = _rl_basis(store, run_dir, manifest)
    metrics = rl_gate_metrics(evaluation)
    result = evaluate_gates(metrics, config, evaluation.get("backtest") or {})
    decision = {
        "run_id": run_dir.name,
        "manifest_sha256": store.manifest_hash(run_dir),
        "at": utc_now_iso(),
        "basis": basis,
        "gates": result.to_dict(),
    }
    journal = JsonlJournal(registry.root)
    journal.append(  # recorded before anything acts on it
        GateDecision(
            at=decision["at"],
            payload=GateDecisionPayload(
                **{key: value for key, value in decision.items() if key != "at"}
            ),
        )
    )
    if not result.passed:
        reasons = "; ".join(
            f"{g.name}: {g.value} vs threshold {g.threshold}"
            + (f" ({g.reason})" if g.reason else "")
            for g in result.failed
        )
        raise ConfigError(
            f"RL run {run_dir.name} was not promoted ({basis} evaluation). Failed gates: "
            f"{reasons}. The decision is recorded in {journal.path}."
        )
    gate = {**decision, "kind": "rl", "metrics": metrics, "period": evaluation.get("period")}
    files = {
        "model.zip": store.read_bytes(run_dir, "model.zip"),
        MANIFEST_FILE: store.manifest_bytes(run_dir),
        "gate.json": (json.dumps(gate, indent=2, default=str) + "\n").encode(),
        POLICY_FILE: (json.dumps(record, indent=2) + "\n").encode(),
    }
    target = store.write_promoted(run_dir.name, files)
    return {**decision, "path": str(target)}


def _classification_sections(manifest: TrainManifest) -> list[Section]:
    """Headline metrics with intervals, per-class metrics and calibration of a classifier."""
    report = manifest.metrics
    return [
        Section(
            "Metrics with 95% bootstrap intervals",
            _metrics_table(report, manifest.calibrated_metrics),
            "Out-of-fold"
            if manifest.mode == "oof"
            else "Validation part (the calibrator "
            "was fitted on it, so only uncalibrated validation metrics are shown)",
        ),
        Section(
            "Per class (minority first)",
            table_html(report["per_class"], ["class", "precision", "recall", "f1", "support"]),
        ),
        *_calibration_section(manifest.calibration),
    ]


def _forecast_sections(store: RunStore, run_dir: Path, manifest: TrainManifest) -> list[Section]:
    """The sections of a regression or multi-task run (``forecast_sections``) with the
    charts the run stored for each regression target and each class head."""
    from moola.evaluation.report import IC_OVER_TIME, PREDICTED_VS_ACTUAL, forecast_sections

    def charts(names: dict[str, str]) -> dict[str, bytes]:
        return {
            key: store.read_bytes(run_dir, name)
            for key, name in names.items()
            if store.has_file(run_dir, name)
        }

    def values(suffix: str) -> dict[str, str]:
        return {
            PREDICTED_VS_ACTUAL: f"predicted_vs_actual{suffix}.png",
            IC_OVER_TIME: f"ic_over_time{suffix}.png",
        }

    report = manifest.metrics
    if manifest.task != "multitask":
        return forecast_sections(report, plots=charts(values("")))
    plots = {
        head: charts(
            values(f"_{head}")
            if inner.get("task") == "regression"  # a class head: the classification charts
            else {
                "reliability.png": f"reliability_{head}.png",
                "confusion.png": f"confusion_{head}.png",
            }
        )
        for head, inner in report["heads"].items()
    }
    return forecast_sections(report, plots=plots)


def write_report(registry: Registry, run_id: str) -> Path:
    """Render ``report.html`` for a run from its manifest and plots; returns its path.
    An RL run's report is ``moola.pipeline.rl.write_rl_report``'s."""
    store = RunStore(registry.root)
    if store.manifest(store.run_dir(run_id)).get("kind") == "rl":
        from moola.pipeline.rl import write_rl_report

        return write_rl_report(registry, run_id)
    run_dir, manifest = load_manifest(store, run_id)
    data, split = manifest.data, manifest.split
    status = [
        {
            "model": manifest.model,
            "params": json.dumps(manifest.resolved_params),
            "inputs": manifest.inputs,
            "data": data.dataset.pinned,
            "split": split.name,
            "mode": manifest.mode,
            "seed": manifest.seed,
            "calibration": manifest.config.get("calibration"),
        }
    ]
    sections = [
        Section(
            "Status",
            table_html(status),
            f"Counts: {split.counts}; "
            f"train synthetic ratio {data.train_synthetic_ratio:.2f}; "
            f"val/test synthetic {data.val_synthetic_count}/{data.test_synthetic_count}.",
        ),
        *(
            _forecast_sections(store, run_dir, manifest)
            if manifest.task != "classification"
            else _classification_sections(manifest)
        ),
    ]
    for evaluation in _test_evaluations(store, run_dir):
        note = "Looked at once and recorded in the test ledger." + (
            " This split's test part had been looked at before."
            if evaluation["reused_test"]
            else ""
        )
        title = f"Test part, scored {evaluation['at']}"
        if manifest.task != "classification":
            from moola.evaluation.report import forecast_sections

            sections.append(Section(title, "", note))
            sections.extend(forecast_sections(evaluation["metrics"]))
            continue
        sections.append(Section(title, _metrics_table(evaluation["metrics"], None), note))
    backtest = latest_backtest(store, run_dir)
    if backtest is not None:
        sections.append(_backtest_section(store, *backtest))
    plots = "".join(
        image_html(store.read_bytes(run_dir, name), name)
        for name in ("reliability.png", "confusion.png", "pr_curve.png", "learning_curve.png")
        if store.has_file(run_dir, name)
    )
    sections.append(Section("Plots", plots))
    original = json.dumps(manifest.original, indent=2, default=str)
    sections.append(Section("Manifest", pre_html(original)))
    html = render_report(f"moola run {run_dir.name}", sections, subtitle=manifest.model)
    path = run_dir / REPORT_FILE
    atomic_write_text(path, html, overwrite=True)
    return path


def _calibration_section(record: CalibrationRecord) -> list[Section]:
    """How the calibration was chosen: each candidate out of fold, the chosen one marked."""
    if not record.candidates:
        return []
    rows = [
        {
            "method": ("\u2713 " if row["chosen"] else "") + row["method"],
            "log loss": _num(row["log_loss"]),
            "balanced accuracy": _num(row["balanced_accuracy"]),
            "minority F1": _num(row["minority_f1"]),
            "refused because": row.get("refused_because") or "-",
        }
        for row in record.candidates
    ]
    note = f"Chosen: {record.method} ({record.reason})."
    if record.threshold is not None:
        thresholded = record.thresholded or {}
        note += (
            f" Minority ({record.minority}) decision threshold chosen out of fold: "
            f"{record.threshold:.2f} (out-of-fold balanced accuracy "
            f"{_num(thresholded.get('balanced_accuracy'))}, minority F1 "
            f"{_num(thresholded.get('minority_f1'))})."
        )
    return [Section("Calibration, chosen out of fold", table_html(rows), note)]


def _backtest_section(store: RunStore, folder: Path, record: dict[str, Any]) -> Section:
    """Stats, counts, leakage check and charts of the run's latest valid backtest."""
    keys = (
        "total_return",
        "sharpe",
        "sortino",
        "max_drawdown",
        "n_trades",
        "win_rate",
        "profit_factor",
        "costs_paid",
        "exposure",
    )
    stats = [
        {"metric": k, "value": _num(record["stats"].get(k))} for k in keys if k in record["stats"]
    ]
    leakage = record["leakage_check"]
    charts = "".join(
        image_html(store.read_addition(folder, name), name)
        for name in ("equity.png", "drawdown.png", "trades.png")
        if (folder / name).is_file()
    )
    note = (
        f"Out-of-fold predictions traded on the raw bars: {record['counts']['used']} used, "
        f"{record['counts']['skipped_leaky']} skipped as leaky. Leakage check "
        + (
            "passed."
            if leakage["passed"]
            else "found predictions whose fold model trained on "
            "the traded period; they were skipped, as recorded."
        )
    )
    return Section("Backtest of the run's predictions", table_html(stats) + charts, note)


def _metrics_table(report: dict[str, Any], calibrated: dict[str, Any] | None) -> str:
    rows = []
    for key, value in report["metrics"].items():
        interval = report.get("intervals", {}).get(key, {})
        row = {
            "metric": key,
            "value": _num(value),
            "95% interval": f"[{_num(interval.get('low'))}, {_num(interval.get('high'))}]",
        }
        if calibrated is not None:
            row["calibrated"] = _num(calibrated["metrics"].get(key))
        rows.append(row)
    return table_html(rows)


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
