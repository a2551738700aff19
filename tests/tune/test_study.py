"""Studies: every trial an ordinary recorded run, scored out of fold or on validation,
never on the test part; pruned trials leave no run; a killed study resumes with no trial
lost or counted twice; one seed, one sequence of trials; one space per study."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Future
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from moola.core.errors import ConfigError
from moola.pipeline.lifecycle import evaluate_test
from moola.tracking.journal import JsonlJournal
from moola.tracking.runs import RunStore
from moola.tune.space import parse_space
from moola.tune.storage import storage_url, study_dir
from moola.tune.study import DRIVER_ATTR, open_study, run_study
from moola.tune.trial import ProcessExecutor, SerialExecutor
from tests.tune._study_lab import logistic_space, lstm_space, make_lab

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return make_lab(tmp_path_factory.mktemp("tune") / "moola_data")


def _lines(registry, study: str) -> list[dict]:
    return [line for line in RunStore(registry.root).results() if line.get("study") == study]


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


def test_each_trial_is_a_recorded_run_ranked_on_val_and_the_test_part_is_untouched(lab):
    space = parse_space(logistic_space("fc"))
    result = run_study(lab, space, study="honest", trials=3, seed=1)
    assert result.counts["complete"] == 3 and result.ran == 3
    found = optuna.load_study(
        study_name="honest", storage=f"sqlite:///{study_dir(lab.root, 'honest')}/study.db"
    )
    lines = {line["trial"]: line for line in _lines(lab, "honest")}
    assert sorted(lines) == [0, 1, 2]
    store = RunStore(lab.root)
    for trial in found.trials:
        line = lines[trial.number]
        assert line["run_id"] == trial.user_attrs["run_id"]
        assert line["mode"] == "holdout"  # scored on val
        assert trial.value == line["metrics"]["log_loss"]
        manifest = store.manifest(store.run_dir(line["run_id"]))
        assert manifest["study"] == {
            "name": "honest",
            "trial": trial.number,
            "params": trial.params,
        }
        assert manifest["config"]["params"]["C"] == trial.params["params.C"]
        assert manifest["test_evaluated"] is False
    assert result.best_value == min(t.value for t in found.trials)
    assert result.best_run_id == lines[result.best_trial]["run_id"]
    # The ledger of test looks holds nothing: the first look at the test part is still
    # the first (a second one would be refused).
    assert JsonlJournal(lab.root).read("test_look") == []
    evaluate_test(lab, result.best_run_id, n_bootstrap=10)
    assert len(JsonlJournal(lab.root).read("test_look")) == 1

    # Run again: the study already holds 3 finished trials, so nothing is added twice.
    again = run_study(lab, space, study="honest", trials=3, seed=1)
    assert again.ran == 0 and again.counts == result.counts
    more = run_study(lab, space, study="honest", trials=4, seed=1)
    assert more.ran == 1 and more.counts["complete"] == 4
    assert sorted(line["trial"] for line in _lines(lab, "honest")) == [0, 1, 2, 3]


def test_one_seed_run_one_at_a_time_gives_the_same_trials(lab):
    space = parse_space(logistic_space("fc"))
    runs = [run_study(lab, space, study=name, trials=2, seed=5) for name in ("seed-a", "seed-b")]
    trials = {
        name: [
            (t.params, t.value)
            for t in optuna.load_study(
                study_name=name, storage=f"sqlite:///{study_dir(lab.root, name)}/study.db"
            ).trials
        ]
        for name in ("seed-a", "seed-b")
    }
    assert trials["seed-a"] == trials["seed-b"]
    assert trials["seed-a"][0][0] != trials["seed-a"][1][0]  # two different trials
    assert runs[0].best_value == runs[1].best_value


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruners_stop_a_bad_trial_and_it_leaves_no_run(lab, pruner):
    """A learning rate that learns, then one that cannot: the second is pruned at its
    first epochs by the median (after one completed trial) and by hyperband."""
    space = parse_space(lstm_space(epochs=4))
    # Hyperband puts a trial in a bracket by a hash of the study name and trial number,
    # and compares trials within a bracket: this name puts trials 0 and 1 in one.
    name = "prune-median" if pruner == "median" else "hb-prune"
    chosen = (
        optuna.pruners.MedianPruner(n_startup_trials=1)
        if pruner == "median"
        else optuna.pruners.HyperbandPruner(min_resource=1, max_resource=4, reduction_factor=2)
    )
    found = open_study(lab.root, space, study=name, pruner=chosen)
    for lr in (0.03, 1e-7):
        found.enqueue_trial({"params.lr": lr})
    result = run_study(lab, space, study=name, trials=2, pruner=chosen)
    trials = optuna.load_study(study_name=name, storage=found._storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    good, bad = trials
    assert sorted(good.intermediate_values) == [1, 2, 3, 4]  # validation loss per epoch
    assert 1 <= len(bad.intermediate_values) < 4 and "run_id" not in bad.user_attrs
    assert [line["trial"] for line in _lines(lab, name)] == [0]  # no run for the pruned one
    runs = [p.name for p in (lab.root / "artifacts" / "runs").iterdir() if f"-{name}-t" in p.name]
    assert runs == [good.user_attrs["run_id"]]
    assert result.counts == {"complete": 1, "pruned": 1, "failed": 0, "running": 0}


def test_a_failing_trial_is_marked_failed_with_its_error_and_the_study_goes_on(lab):
    """A trial whose run cannot be ranked (a classifier has no r2) fails with the error
    in the study, records no run, and does not count towards the trials wanted."""
    space = parse_space({**logistic_space("fc"), "objective": {"metric": "r2"}})
    result = run_study(lab, space, study="fails", trials=2)
    assert result.ran == 2 and result.counts["failed"] == 2 and result.best_trial is None
    found = optuna.load_study(
        study_name="fails", storage=f"sqlite:///{study_dir(lab.root, 'fails')}/study.db"
    )
    for trial in found.trials:
        assert trial.state == TrialState.FAIL
        assert "Objective metric 'r2' is not among the run's metrics" in trial.user_attrs["error"]
    assert _lines(lab, "fails") == []


def test_a_study_name_taken_by_another_space_is_refused_naming_both_hashes(lab):
    first = parse_space(logistic_space("fc"))
    run_study(lab, first, study="taken", trials=1)
    other = parse_space(
        logistic_space("fc", **{"params.C": {"type": "float", "low": 1.0, "high": 2.0}})
    )
    before = _snapshot(lab.root)
    with pytest.raises(ConfigError, match="exists with another space") as error:
        run_study(lab, other, study="taken", trials=1)
    assert first.space_hash in str(error.value) and other.space_hash in str(error.value)
    assert _snapshot(lab.root) == before
    record = json.loads((study_dir(lab.root, "taken") / "study.json").read_text())
    assert record["space_hash"] == first.space_hash


def test_an_unreachable_storage_is_refused_naming_it_and_nothing_is_written(lab):
    space = parse_space(logistic_space("fc"))
    before = _snapshot(lab.root)
    url = "postgresql://tuner:secret@127.0.0.1:9/nowhere"
    with pytest.raises(
        ConfigError,
        match=r"Cannot open the study storage postgresql\+psycopg://tuner:\*\*\*@127\.0\.0\.1:9/"
        r"nowhere: OperationalError",  # the server is not there (not a missing driver)
    ) as error:
        run_study(lab, space, study="remote", trials=1, storage=url)
    assert "secret" not in str(error.value)
    with pytest.raises(ConfigError, match=r"Journal storage journal:/nonexistent/dir/j\.log"):
        run_study(lab, space, study="remote", trials=1, storage="journal:/nonexistent/dir/j.log")
    assert _snapshot(lab.root) == before


def test_a_journal_storage_holds_an_out_of_fold_study(lab, tmp_path):
    space = parse_space(logistic_space("kf"))
    url = f"journal:{tmp_path / 'studies.log'}"
    result = run_study(lab, space, study="journal", trials=2, storage=url, sampler="random")
    assert result.counts["complete"] == 2 and result.storage == url
    assert {line["mode"] for line in _lines(lab, "journal")} == {"oof"}  # ranked out of fold
    assert (tmp_path / "studies.log").stat().st_size > 0
    assert not (study_dir(lab.root, "journal") / "study.db").exists()
    assert json.loads((study_dir(lab.root, "journal") / "study.json").read_text())["storage"] == url
    before = _snapshot(lab.root)
    with pytest.raises(ConfigError, match=r"Study 'journal' of this data root lives in journal:"):
        run_study(lab, space, study="journal", trials=2)  # the default storage: another study
    assert _snapshot(lab.root) == before


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_left_running_by_a_dead_driver_is_settled_from_its_recorded_run(lab):
    """Killed after its run was recorded but before Optuna was told: COMPLETE with the
    recorded value (not lost, not run again); killed before: FAIL."""
    space = parse_space(logistic_space("fc"))
    found = open_study(lab.root, space, study="settle")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    owner = {"host": __import__("socket").gethostname(), "pid": int(dead.stdout), "token": "x"}
    recorded, lost = found.ask(), found.ask()
    for trial in (recorded, lost):
        trial.suggest_float("params.C", 0.01, 10.0, log=True)
        trial.set_user_attr(DRIVER_ATTR, owner)
    RunStore(lab.root).append_result(
        {"run_id": "r-settle-0", "kind": "train", "study": "settle", "trial": recorded.number,
         "metrics": {"log_loss": 0.25}}
    )  # fmt: skip
    result = run_study(lab, space, study="settle", trials=2)
    assert result.recovered == {"complete": 1, "failed": 1}
    trials = optuna.load_study(study_name="settle", storage=found._storage).trials
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == 0.25
    assert trials[0].user_attrs["run_id"] == "r-settle-0"
    assert trials[1].state == TrialState.FAIL
    assert result.counts["complete"] == 2 and result.ran == 1  # one more to reach 2


def test_a_killed_study_resumes_with_no_trial_lost_or_counted_twice(lab, tmp_path):
    """A child process runs the study and is killed (SIGKILL) while its second trial is in
    flight; the resumed study marks that trial FAIL, runs what is missing, and every
    finished trial has exactly one recorded run."""
    space = logistic_space("fc")
    (tmp_path / "space.json").write_text(json.dumps(space))
    marker = tmp_path / "in-flight"
    script = textwrap.dedent(
        f"""
        import json, time, optuna
        from moola.data.registry import Registry
        from moola.tune.space import parse_space
        from moola.tune.study import run_study
        from moola.tune.trial import SerialExecutor

        class StopsInTrialOne(SerialExecutor):
            def submit(self, fn, payload):
                if payload.number == 1:  # in flight: the parent kills us here
                    open({str(marker)!r}, "w").close()
                    time.sleep(600)
                return super().submit(fn, payload)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = parse_space(json.load(open({str(tmp_path / "space.json")!r})))
        run_study(Registry({str(lab.root)!r}), space, study="killed", trials=2,
                  executor=StopsInTrialOne())
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 120
    try:
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists() and child.poll() is None
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    storage = f"sqlite:///{study_dir(lab.root, 'killed')}/study.db"
    left = optuna.load_study(study_name="killed", storage=storage).trials
    assert [t.state for t in left] == [TrialState.COMPLETE, TrialState.RUNNING]

    resumed = run_study(lab, parse_space(space), study="killed", trials=2)
    assert resumed.recovered == {"complete": 0, "failed": 1} and resumed.ran == 1
    found = optuna.load_study(study_name="killed", storage=storage).trials
    assert [t.state for t in found] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert found[0].value == left[0].value  # the finished trial is kept, not run again
    lines = _lines(lab, "killed")
    assert sorted(line["trial"] for line in lines) == [0, 2]
    assert sorted(line["run_id"] for line in lines) == sorted(
        t.user_attrs["run_id"] for t in found if t.state == TrialState.COMPLETE
    )


class _LosesTrialOne(SerialExecutor):
    """Trial 1's worker dies: its future raises instead of answering."""

    def submit(self, fn, payload):
        if payload.number == 1:
            lost: Future = Future()
            lost.set_exception(RuntimeError("worker died"))
            return lost
        return super().submit(fn, payload)


def test_a_trial_whose_worker_died_is_failed_not_lost(lab):
    space = parse_space(logistic_space("fc"))
    result = run_study(lab, space, study="lost", trials=2, executor=_LosesTrialOne())
    assert result.ran == 2 and result.counts["complete"] == 1 and result.counts["failed"] == 1
    trials = optuna.load_study(
        study_name="lost", storage=f"sqlite:///{study_dir(lab.root, 'lost')}/study.db"
    ).trials
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["error"] == "RuntimeError: worker died"


def test_trials_in_other_processes_are_recorded_by_the_driver(lab):
    """Two local worker processes compute the runs and hand them back; the driver alone
    records them and writes the study."""
    space = parse_space(logistic_space("fc"))
    executor = ProcessExecutor(2)
    try:
        result = run_study(
            lab, space, study="pool", trials=2, executor=executor, record_in_worker=False
        )
    finally:
        executor.shutdown()
    assert result.counts["complete"] == 2
    trials = optuna.load_study(
        study_name="pool", storage=f"sqlite:///{study_dir(lab.root, 'pool')}/study.db"
    ).trials
    lines = {line["trial"]: line for line in _lines(lab, "pool")}
    assert sorted(lines) == [0, 1]
    for trial in trials:
        assert lines[trial.number]["run_id"] == trial.user_attrs["run_id"]
        assert trial.value == lines[trial.number]["metrics"]["log_loss"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_another_machines_trials_are_settled_only_once_their_heartbeat_is_stale(lab):
    """Drivers on other machines share a database storage: their trials in flight are left
    alone while their heartbeat is fresh, and failed once it is older than the grace."""
    space = parse_space(logistic_space("fc"))
    found = open_study(lab.root, space, study="elsewhere")
    elsewhere = {"host": "another-machine", "pid": 1, "token": "y"}
    stale, live = found.ask(), found.ask()
    for trial in (stale, live):
        trial.suggest_float("params.C", 0.01, 10.0, log=True)
        trial.set_user_attr(DRIVER_ATTR, elsewhere)
        found._storage.record_heartbeat(trial._trial_id)
    with sqlite3.connect(study_dir(lab.root, "elsewhere") / "study.db") as db:  # an hour ago
        db.execute(
            "UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour') "
            "WHERE trial_id = ?",
            (stale._trial_id,),
        )
    result = run_study(lab, space, study="elsewhere", trials=1)
    assert result.recovered == {"complete": 0, "failed": 1}
    trials = optuna.load_study(study_name="elsewhere", storage=found._storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.COMPLETE]


class _SlowStart(SerialExecutor):
    """Each trial starts a second late (a slow worker)."""

    def submit(self, fn, payload):
        time.sleep(1.0)
        return super().submit(fn, payload)


def test_no_trial_starts_after_the_timeout(lab):
    space = parse_space(logistic_space("fc"))
    result = run_study(lab, space, study="timed", trials=5, timeout=0.5, executor=_SlowStart())
    assert result.ran == 1 and result.counts["complete"] == 1  # the one in flight finished


PG_URL = os.environ.get("MOOLA_TEST_PG_URL", "").strip()


@pytest.mark.skipif(
    not PG_URL,
    reason="MOOLA_TEST_PG_URL is not set: no PostgreSQL server to test against "
    '(eval "$(scripts/ci_postgres.sh start)" starts one)',
)
def test_a_study_in_postgresql_by_url_resumes_there(lab):
    """``postgresql://...`` as a user writes it (psycopg 3 underneath): the study lives in
    that database, not in a SQLite file, and a second call resumes it there."""
    import uuid

    import sqlalchemy as sa

    base = sa.engine.make_url(PG_URL)
    database = f"moola_tune_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    url = base.set(drivername="postgresql", database=database)
    url = url.render_as_string(hide_password=False)
    try:
        space = parse_space(logistic_space("fc"))
        first = run_study(lab, space, study="in-pg", trials=2, storage=url, seed=2)
        assert first.ran == 2 and first.storage.startswith("postgresql+psycopg://")
        again = run_study(lab, space, study="in-pg", trials=3, storage=url, seed=2)
        assert again.ran == 1 and again.counts["complete"] == 3
        assert not (study_dir(lab.root, "in-pg") / "study.db").exists()
        stored = optuna.load_study(study_name="in-pg", storage=storage_url(lab.root, "in-pg", url))
        assert [t.number for t in stored.trials] == [0, 1, 2]
        assert sorted(line["trial"] for line in _lines(lab, "in-pg")) == [0, 1, 2]
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()
