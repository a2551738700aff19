"""Issue 18's bad input, where the user meets it: ``moola live`` with a config naming a run
that is not promoted, a member whose input does not fit the session, a gapped or stale bar
feed, a broker error or timeout, a journal from a newer schema, a zero or negative risk
setting. Each is a clear error naming the thing (exit code non-zero) or a recorded denial
naming it, and the journal shows nothing sent and nothing lost.

The commands run as a user types them (``moola.cli.main``), on a small data root with a
promoted run (``tests.runtime._lab``); a live session talks to the local fake of Coinbase
Advanced Trade on 127.0.0.1.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from moola.core.errors import BrokerError
from moola.data.registry import Registry
from moola.evaluation.gates import GateConfig
from moola.pipeline.datasets import make_and_store_split, planted_labeled, synthesize_raw
from moola.pipeline.lifecycle import promote
from moola.pipeline.train import TrainConfig, run_training
from moola.runtime.brokers.coinbase import CoinbaseAdvancedTrade
from moola.runtime.brokers.credentials import Credentials
from moola.runtime.engine import Engine, SessionResult
from moola.runtime.feed import ReplayFeed
from moola.tracking.livedb import LiveJournal
from tests.fuzz_helpers import snapshot
from tests.runtime._lab import (
    PRODUCTS,
    RISING,
    SYMBOLS,
    build_feature_lab,
    build_lab,
    last_closes,
    product_bars,
    scripted_config,
    two_symbol_bars,
)
from tests.runtime.fake_coinbase import KEY_NAME, FakeCoinbase, cdp_key
from tests.test_cli import run


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(data root, promoted run id): raw ``mkt`` of BTC and ETH and a promoted run."""
    return build_lab(tmp_path_factory.mktemp("bad_input"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("KILL_SWITCH", "DB_URL", "DB_URL_PAPER", "MOOLA_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("COINBASE_API_KEY_NAME", raising=False)
    monkeypatch.delenv("COINBASE_API_PRIVATE_KEY", raising=False)


def _config(path: Path, run_id: str, journal: Path, *extra: str, member: str = "") -> Path:
    """A paper ``live.yaml`` at ``path`` trading BTC and ETH on ``run_id``, its journal at
    ``journal``; ``extra`` lines replace or add top-level keys."""
    lines = {
        "mode": "paper",
        "symbols": "[BTC, ETH]",
        "members": f"\n  - {{role: direction, run: {run_id}, up_class: retracement{member}}}",
        "execution": "{instrument: crypto, initial_cash: 10000, rules: none}",
        "risk": "{max_position: 5}",
        "journal_url": f"sqlite:///{journal}",
    }
    for line in extra:
        key, _, value = line.partition(":")
        lines[key.strip()] = value.strip()
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()), encoding="utf-8")
    return path


def _moola(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    code, out, err = run(capsys, "--data-root", str(root), *argv)
    assert "Traceback" not in out + err
    return code, out, err


def _refused(capsys, root: Path, *argv: str) -> str:
    """``moola ARGV`` exits 2 with one error line and leaves the data root as it was."""
    before = snapshot(root)
    code, out, err = _moola(capsys, root, *argv)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ")
    assert snapshot(root) == before
    return err


def _files(folder: Path) -> dict[str, str]:
    """``snapshot`` of ``folder`` without SQLite's shared-memory index (``-shm``), which a
    reader rewrites: the database and its write-ahead log are what hold data."""
    return {k: v for k, v in snapshot(folder).items() if not k.endswith("-shm")}


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


# ------------------------------------------------------------------ the config's members


def test_a_run_that_is_not_promoted_is_named_and_no_journal_is_opened(capsys, lab, tmp_path):
    root, _ = lab
    journal = tmp_path / "paper.db"
    config = _config(tmp_path / "live.yaml", "20260101T000000Z-never-promoted", journal)
    err = _refused(capsys, root, "live", "run", "--config", str(config), "--replay", "mkt")
    assert "20260101T000000Z-never-promoted" in err and "not promoted" in err
    assert "moola promote 20260101T000000Z-never-promoted" in err  # what to do about it
    assert not journal.exists()  # nothing recorded, so nothing could be sent


@pytest.fixture(scope="module")
def feature_run(tmp_path_factory):
    """(data root, run id): a promoted run on 10-row windows of the feature set ``small``
    (a session computes ``intraday31`` unless its config says otherwise)."""
    root, run_id, _ = build_feature_lab(tmp_path_factory.mktemp("bad_input_features"))
    return root, run_id


def test_a_member_whose_input_does_not_fit_the_session_names_both(capsys, feature_run, tmp_path):
    """The run reads windows of the feature set ``small``; the session computes
    ``intraday31``: refused before a journal exists, naming the member, the run and both
    feature sets."""
    root, run_id = feature_run
    journal = tmp_path / "paper.db"
    config = _config(
        tmp_path / "live.yaml", run_id, journal, "symbols: [BTC]", member=", up_class: '1'"
    )
    err = _refused(capsys, root, "live", "run", "--config", str(config), "--replay", "mkt")
    assert "'direction'" in err and run_id in err
    assert "small" in err and "intraday31" in err
    assert not journal.exists()


@pytest.fixture(scope="module")
def five_minute_run(tmp_path_factory):
    """(data root, run id): a promoted run on 105-bar windows of FIVE-minute bars."""
    registry = Registry(tmp_path_factory.mktemp("bad_input_5m") / "moola_data")
    raw, market = synthesize_raw(
        registry, "mkt5", n_bars=2000, n_patterns=8, seed=4, symbols=SYMBOLS, timeframe="5m"
    )
    labeled = planted_labeled(registry, "pat5", raw, market)
    make_and_store_split(registry, labeled, "purged-kfold", name="kf", folds=3, embargo=105)
    config = TrainConfig(model="logistic_regression", dataset="pat5", split="kf", n_bootstrap=10)
    run_id = run_training(registry, config).run_id
    promote(registry, run_id, GateConfig(min_accuracy=0.0, max_ece=1.0))
    return registry.root, run_id


def test_a_member_trained_on_another_timeframe_is_refused_naming_both(
    capsys, five_minute_run, tmp_path
):
    root, run_id = five_minute_run
    file = tmp_path / "one_minute.csv"
    two_symbol_bars(300, 5).to_csv(file, index=False)
    journal = tmp_path / "paper.db"
    config = _config(tmp_path / "live.yaml", run_id, journal)  # timeframe: 1m (default)
    err = _refused(capsys, root, "live", "run", "--config", str(config), "--replay", str(file))
    assert run_id in err and "5m" in err and "1m" in err
    assert not journal.exists()


# ------------------------------------------------------------------ risk settings


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("risk: {max_position: 0}", "risk.max_position"),
        ("risk: {max_position: -5}", "risk.max_position"),
        ("risk: {risk_per_trade: 0}", "risk.risk_per_trade"),
        ("risk: {risk_per_trade: -0.01}", "risk.risk_per_trade"),
        ("risk: {daily_loss: 0}", "risk.daily_loss"),
        ("risk: {total_loss: -0.1}", "risk.total_loss"),
        ("risk: {atr_multiple: 0}", "risk.atr_multiple"),
        ("risk: {atr_period: -1}", "risk.atr_period"),
        ("risk: {max_open_positions: 0}", "risk.max_open_positions"),
        ("risk: {max_position: .nan}", "risk.max_position"),
        ("rate_limits: {all_per_window: 0}", "rate_limits.all_per_window"),
        ("rate_limits: {high_per_window: -1}", "rate_limits.high_per_window"),
        ("execution: {instrument: crypto, initial_cash: 0}", "initial_cash"),
    ],
)
def test_a_zero_or_negative_risk_setting_is_named_with_its_file(capsys, lab, tmp_path, line, key):
    root, run_id = lab
    journal = tmp_path / "paper.db"
    config = _config(tmp_path / "my-live.yaml", run_id, journal, line)
    err = _refused(capsys, root, "live", "run", "--config", str(config), "--replay", "mkt")
    assert key in err and "my-live.yaml" in err
    assert not journal.exists()


# ------------------------------------------------------------------ the journal


def _five_bars(capsys, lab, tmp_path) -> tuple[Path, Path]:
    """(config, journal): a paper session of ``lab``'s run over the first 5 bars of ``mkt``,
    run as a user runs it, its journal at ``tmp_path / "paper.db"``."""
    root, run_id = lab
    journal = tmp_path / "paper.db"
    config = _config(tmp_path / "live.yaml", run_id, journal)
    code, out, err = _moola(
        capsys, root, "live", "run", "--config", str(config), "--replay", "mkt", "--max-bars", "5"
    )
    assert code == 0, (out, err)
    return config, journal


def test_a_journal_from_a_newer_schema_is_refused_by_every_command_and_left_as_it_was(
    capsys, lab, tmp_path
):
    """A journal a newer moola migrated: run, status, signals, kill, unlock and parity each
    refuse it naming both revisions; not one byte of it changes (nothing migrated down,
    no kill switch or session written)."""
    root, _ = lab
    config, journal = _five_bars(capsys, lab, tmp_path)
    (session,) = _query(journal, "SELECT id FROM sessions")[0]
    with sqlite3.connect(journal) as conn:
        (ours,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _files(tmp_path)
    commands = [
        ["run", "--replay", "mkt", "--max-bars", "5"],
        ["status"],
        ["signals", "--format", "json"],
        ["kill", "on", "--by", "ops", "--reason", "drill"],
        ["unlock", "--by", "ops", "--reason", "reviewed"],
        ["parity", session],
    ]
    for command in commands:
        err = _refused(capsys, root, "live", *command, "--config", str(config))
        assert "9999_future" in err and ours in err, command
        assert "newer" in err
    assert _files(tmp_path) == before


def test_a_journal_whose_state_cannot_be_read_is_a_clear_error_and_nothing_is_sent(
    capsys, lab, tmp_path
):
    root, _ = lab
    config, journal = _five_bars(capsys, lab, tmp_path)
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE state SET value = 'not json' WHERE key = 'engine'")
    intents = _query(journal, "SELECT COUNT(*) FROM order_intents")
    for command in (["run", "--replay", "mkt", "--max-bars", "50"], ["status"]):
        code, out, err = run(
            capsys, "--data-root", str(root), "live", *command, "--config", str(config)
        )
        assert code == 2 and "Traceback" not in out + err, (command, code, out[-2000:])
        assert str(journal) in err and "'engine'" in err
    assert _query(journal, "SELECT COUNT(*) FROM order_intents") == intents


# ------------------------------------------------------------------ the bar feed


@pytest.mark.parametrize(
    ("column", "value"), [("low", "high+1"), ("close", "-5"), ("close", "nan")]
)
def test_a_bars_file_with_an_impossible_bar_is_refused_before_the_session(
    capsys, lab, tmp_path, column, value
):
    root, run_id = lab
    bars = two_symbol_bars(300, 5)
    row = 200  # a BTC bar after the members' warm-up
    bars.loc[row, column] = bars.loc[row, "high"] + 1 if value == "high+1" else float(value)
    file = tmp_path / "broken-bars.csv"
    bars.to_csv(file, index=False)
    journal = tmp_path / "paper.db"
    config = _config(tmp_path / "live.yaml", run_id, journal)
    err = _refused(capsys, root, "live", "run", "--config", str(config), "--replay", str(file))
    assert "broken-bars.csv" in err and f"row {row}, column '{column}'" in err
    assert not journal.exists()  # refused before a session exists


def test_a_gapped_feed_refuses_the_bar_after_each_gap_naming_it(capsys, lab, tmp_path):
    """A bars file with holes: every bar after a hole is journaled (decided, nothing lost)
    with a reason naming the symbol, the bar and the gap; no order is sent on it, and an
    order its signal asked for is recorded as refused."""
    root, run_id = lab
    bars = Registry(root).load_raw("mkt")
    holes = range(130, 500, 5)  # one bar missing every 5, after a warm-up of 130
    kept = []
    for _, frame in bars.groupby("symbol", sort=False):
        kept.append(frame.iloc[:500].reset_index(drop=True).drop(index=list(holes)))
    gapped = pd.concat(kept, ignore_index=True)
    file = tmp_path / "gapped.csv"
    gapped.to_csv(file, index=False)
    journal = tmp_path / "paper.db"
    config = _config(tmp_path / "live.yaml", run_id, journal)
    code, out, err = _moola(
        capsys, root, "live", "run", "--config", str(config), "--replay", str(file)
    )
    assert code == 0, (out, err)
    rows = _query(
        journal,
        "SELECT i.symbol, i.bar_time, d.action, d.reasons, o.client_order_id "
        "FROM iterations i JOIN decisions d ON d.iteration_id = i.id "
        "LEFT JOIN order_intents o ON o.decision_id = d.id",
    )
    assert len(rows) == len(gapped)  # every bar decided and journaled
    after_gap = [r for r in rows if "gap: bar " in r[3]]
    assert len(after_gap) == len(SYMBOLS) * len([h for h in holes if h + 1 < 500])
    for symbol, bar_time, action, reasons, coid in after_gap:
        named = pd.Timestamp(bar_time).tz_localize("UTC").isoformat()
        assert f"gap: bar {symbol} {named} comes 2 bars after" in reasons
        assert coid is None  # nothing sent on a bar after a gap
        assert action != "order"
    refused = [r for r in after_gap if r[2] == "refused_bar"]
    assert refused  # a would-be order on a bar after a gap, recorded as refused
    events = _query(journal, "SELECT payload FROM events WHERE kind = 'refused_bar'")
    assert len(events) == len(refused) and all("gap: bar " in e[0] for e in events)


# ------------------------------------------------------------------ the broker


@pytest.fixture(scope="module")
def key() -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A CDP-style EC key: its PEM (what the environment holds) and the key itself."""
    return cdp_key()


def test_a_live_session_replaying_history_sends_nothing_every_bar_refused_as_stale(
    capsys, lab, tmp_path, key, monkeypatch
):
    """``moola live run --mode live --replay FILE``: the replayed bars are hours old by the
    wall clock, so each is journaled with a reason naming it as stale and not one order
    reaches the exchange (the local fake of Coinbase counts every request)."""
    root, run_id = lab
    pem, private = key
    monkeypatch.setenv("COINBASE_API_KEY_NAME", KEY_NAME)
    monkeypatch.setenv("COINBASE_API_PRIVATE_KEY", pem)
    bars = Registry(root).load_raw("mkt")
    bars = bars[bars.groupby("symbol").cumcount() < 250].copy()
    bars["symbol"] = bars["symbol"].map(PRODUCTS)
    file = tmp_path / "history.csv"
    bars.to_csv(file, index=False)
    journal = tmp_path / "live.db"
    with FakeCoinbase(KEY_NAME, private.public_key(), balances={"USD": 1e6}) as fake:
        config = _config(
            tmp_path / "live.yaml",
            run_id,
            journal,
            "mode: live",
            "broker: coinbase",
            f"symbols: [{', '.join(PRODUCTS.values())}]",
            f"coinbase: {{base_url: '{fake.url}', max_retries: 0, timeout_seconds: 5}}",
        )
        code, out, err = _moola(
            capsys, root, "live", "run", "--config", str(config), "--replay", str(file)
        )
        creates = fake.calls("POST", "/orders")
    assert code == 0, (out, err)
    assert creates == 0 and fake.creates == 0  # nothing reached the exchange
    rows = _query(
        journal,
        "SELECT i.symbol, d.reasons FROM iterations i JOIN decisions d ON d.iteration_id = i.id",
    )
    assert len(rows) == len(bars)  # every bar journaled
    for symbol, reasons in rows:
        assert f"stale: bar {symbol} " in reasons and "max_bar_age_seconds" in reasons
    assert _query(journal, "SELECT COUNT(*) FROM order_intents") == [(0,)]


def _first_order_meets(fake, broker, *faults) -> list[str]:
    """Queue ``faults`` (method, path, outcomes...) just before the adapter's first
    create, so the start's reconciliation is not what meets them; returns [its id]."""
    submit, first = broker.submit, []

    def submit_once_faulted(intent):
        if not first:
            first.append(intent.client_order_id)
            for method, path, *outcomes in faults:
                fake.fail(method, path, *outcomes)
        return submit(intent)

    broker.submit = submit_once_faulted
    return first


@dataclass(frozen=True)
class LiveRun:
    """What a live session on the fake exchange left: the feed's ``bars``, the
    ``journal``, the client order id of the ``first`` create, the positions the adapter
    ``held`` at the end and the orders the exchange ``created`` (by client order id)."""

    result: SessionResult
    bars: pd.DataFrame
    journal: LiveJournal
    first: str
    held: dict[str, float]
    created: dict[str, dict]


def _live_run(tmp_path, key, *faults, lookups_fail: bool = False) -> LiveRun:
    """A live session (``RISING``) of BTC-USD and ETH-USD, 40 one-minute bars each, on the
    fake exchange priced at their last closes (a buy's IOC cap holds); its first create
    meets ``faults`` (see ``_first_order_meets``), and with ``lookups_fail`` every order
    look-up after that create fails too."""
    pem, private = key
    journal = LiveJournal(f"sqlite:///{tmp_path / 'live.db'}")
    bars = product_bars(40, 3)
    config = scripted_config(PRODUCTS.values())
    with FakeCoinbase(KEY_NAME, private.public_key(), prices=last_closes(bars),
                      balances={"USD": 1e7}, hold_s=0.6) as fake:  # fmt: skip
        broker = CoinbaseAdvancedTrade(
            base_url=fake.url, credentials=Credentials(KEY_NAME, pem), timeout=0.25,
            max_retries=2, backoff=0.0, sleep=lambda s: None,
        )  # fmt: skip
        first = _first_order_meets(fake, broker, *faults)
        if lookups_fail:

            def no_answer(client_order_id):
                raise BrokerError(f"Coinbase cannot be reached about {client_order_id}")

            broker.order_status = no_answer
        feed = ReplayFeed(bars, config.symbols, "1m", config.staleness)
        with broker:
            result = Engine(config, journal, broker, [RISING], feed, env={}).run()
            held = {p: q for p, q in broker.positions().items() if q}
        created = {o["client_order_id"]: o for o in fake.orders.values()}
    (first_id,) = first
    return LiveRun(result, bars, journal, first_id, held, created)


def test_an_order_the_exchange_refuses_is_journaled_with_its_reason_and_the_loop_goes_on(
    tmp_path, key
):
    """Coinbase refuses the first buy (HTTP 400 with its error code): the intent is
    journaled rejected with Coinbase's code and message, a broker_error event names it,
    nothing is created at the exchange for it, the session decides every bar, and what the
    exchange holds is what the journal holds."""
    run = _live_run(
        tmp_path, key, ("POST", "/orders", (400, "INVALID_ORDER", "size below minimum"))
    )
    journal, refused, held = run.journal, run.first, run.held
    assert refused not in run.created  # nothing sent through
    assert run.result.decided == len(run.bars) and run.result.refused == {"broker_error": 1}
    assert journal.intent_status(refused) == "rejected"
    (error,) = journal.events(kind="broker_error")
    assert error["payload"]["client_order_id"] == refused
    assert "INVALID_ORDER: size below minimum" in error["payload"]["reason"]
    positions = {p["symbol"]: p["qty"] for p in journal.status()["positions"] if p["qty"]}
    assert held and positions == pytest.approx(held)  # the later buys: journal = exchange


def test_an_order_whose_answer_timed_out_is_not_lost_nor_bought_twice(tmp_path, key):
    """The first buy's ``POST /orders`` is carried out by the exchange, but its answer
    never arrives and the lookup that would find it fails: the adapter says the order may
    have reached Coinbase. Nothing may be lost: the journal must end up with the order's
    fill and position, and the engine must not buy the symbol a second time."""
    run = _live_run(
        tmp_path,
        key,
        ("POST", "/orders", "lost"),  # created, the answer held past the timeout
        ("GET", "/orders/historical/batch", 500, 500, 500),  # the lookup fails
    )
    journal, lost, created = run.journal, run.first, run.created
    assert lost in created  # the exchange made it: the test's premise
    (error,) = journal.events(kind="broker_error")
    assert error["payload"]["client_order_id"] == lost
    # nothing lost: the journal holds what the exchange filled, and nothing twice
    product = created[lost]["product_id"]
    buys = [o for o in created.values() if o["product_id"] == product and o["side"] == "BUY"]
    assert len(buys) == 1, f"{product} bought {len(buys)} times"
    assert journal.fills(lost), "the exchange's fill of the lost order is not in the journal"
    status = journal.intent_status(lost)
    assert status != "rejected", f"the journal says {lost} was {status}; the exchange filled it"
    positions = {p["symbol"]: p["qty"] for p in journal.status()["positions"] if p["qty"]}
    assert positions == pytest.approx(run.held)


def test_while_an_unsure_order_cannot_be_looked_up_its_symbol_is_not_bought_again(tmp_path, key):
    """The first buy's answer is lost and every later look-up fails too (the exchange
    cannot say what became of it): the intent stays ``sent``, each later bar of its symbol
    is decided with no order, naming the working order, and the exchange sees one buy of
    that symbol; the other symbol trades as usual."""
    run = _live_run(
        tmp_path,
        key,
        ("POST", "/orders", "lost"),
        ("GET", "/orders/historical/batch", 500, 500, 500),
        lookups_fail=True,
    )
    journal, lost, created = run.journal, run.first, run.created
    product = created[lost]["product_id"]
    by_product = {
        p: sum(o["side"] == "BUY" for o in created.values() if o["product_id"] == p)
        for p in PRODUCTS.values()
    }
    assert by_product == {p: 1 for p in PRODUCTS.values()}  # the other symbol bought too
    assert journal.intent_status(lost) == "sent"
    signals = journal.signals()
    signals = signals[signals["symbol"] == product]
    named = signals["reasons"].map(lambda r: f"an order is working for {product}: {lost}" in r)
    assert named.sum() == len(signals) - 1 > 10  # every bar after the buy names the order
