"""The annotation web app through FastAPI's test client: the token, windows with their bars
and context, actions and resume, the blacklist, escaping, the vendored chart library."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from moola.annotate.app import COOKIE, create_app
from moola.annotate.store import BatchStore, log_path, write_batch
from moola.data.blacklist import read_blacklist
from moola.data.registry import Registry
from tests.annotate._batches import LENGTH, make_batch, store_raw

TOKEN = "t" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def lab(tmp_path):
    """A data root with one raw version and a normal batch of 4 windows (context 5): the
    first window starts at row 0, so it has no context before it."""
    registry = Registry(tmp_path / "moola_data")
    raw = store_raw(registry, 300)
    batch = make_batch(registry, raw, [0, 40, 80, 120], name="b1")
    write_batch(registry.root, batch)
    client = TestClient(create_app(registry.root, token=TOKEN, batch="b1"))
    return registry, batch, client


def _act_on(client, batch, window_id, kind, **fields):
    response = client.post(
        f"/api/batches/{batch}/actions", json={"window_id": window_id, "kind": kind, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


def _act(client, window_id, kind, **fields):
    return _act_on(client, "b1", window_id, kind, **fields)


def test_every_api_call_and_run_file_needs_the_token(lab):
    registry, batch, client = lab
    window_id = batch.windows[0].window_id
    calls = [
        ("get", "/api/batches", None),
        ("get", "/api/batches/b1/next", None),
        ("get", "/api/batches/b1/windows/0", None),
        ("post", "/api/batches/b1/actions", {"window_id": window_id, "kind": "skip"}),
        ("get", "/api/blacklist", None),
        ("get", "/api/stats", None),
        ("get", "/api/runs", None),
        ("get", "/api/openapi.json", None),
        ("get", "/runs/x/report", None),
    ]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = client.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, (path, headers)
        assert client.request(method, path + "?token=nope", json=body).status_code == 401
    assert not log_path(registry.root, batch).exists()  # the refused skip wrote nothing
    assert client.get("/api/batches", headers=AUTH).status_code == 200
    assert client.get(f"/api/batches?token={TOKEN}").status_code == 200


def test_first_page_load_sets_the_cookie_and_drops_the_token_from_the_url(lab):
    _, _, client = lab
    assert client.get("/label").status_code == 401
    first = client.get(f"/label?batch=b1&token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/label?batch=b1"
    cookie = first.headers["set-cookie"]
    assert f"{COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/label?batch=b1")  # the client now sends the cookie
    assert page.status_code == 200
    assert 'data-batch="b1"' in page.text
    assert client.get("/api/batches").status_code == 200


def test_a_window_comes_with_its_bars_and_the_context_that_exists(lab):
    registry, batch, client = lab
    client.headers.update(AUTH)
    bars = registry.load_raw("es")
    first = client.get("/api/batches/b1/next").json()
    assert first["index"] == 0 and first["total"] == 4
    assert first["window"]["window_id"] == batch.windows[0].window_id
    assert first["window"]["suggestion"] == "consolidation"
    assert (first["context_before"], first["context_after"]) == (0, 5)
    assert len(first["bars"]["time"]) == LENGTH + 5
    second = client.get("/api/batches/b1/windows/1").json()
    assert (second["context_before"], second["context_after"]) == (5, 5)
    rows = bars.iloc[40 - 5 : 40 + LENGTH + 5]
    assert second["bars"]["close"] == rows["close"].tolist()
    assert second["bars"]["volume"] == rows["volume"].tolist()
    assert second["bars"]["time"] == [int(t.timestamp()) for t in rows["timestamp"]]
    assert client.get("/api/batches/b1/windows/4").status_code == 404
    assert client.get("/api/batches/nope/next").status_code == 404


def test_label_grade_undo_and_a_fresh_server_resumes_where_labelling_stopped(lab):
    registry, batch, client = lab
    client.headers.update(AUTH)
    first, second = batch.windows[0].window_id, batch.windows[1].window_id
    result = _act(client, first, "label", label="retracement", elapsed_ms=1200)
    assert result["state"]["label"] == "retracement" and not result["decided"]
    result = _act(client, first, "grade", grade="B")
    assert result["decided"] and result["next_index"] == 1
    assert result["progress"] == {
        "total": 4,
        "decided": 1,
        "accepted": 1,
        "rejected": 0,
        "skipped": 0,
    }
    _act(client, second, "skip")
    undone = _act(client, second, "undo")
    assert not undone["state"]["skipped"] and not undone["decided"]
    # a new server over the same data root (a reload after a restart) resumes at window 1
    fresh = TestClient(create_app(registry.root, token=TOKEN))
    resumed = fresh.get("/api/batches/b1/next", headers=AUTH).json()
    assert resumed["index"] == 1
    assert resumed["progress"]["decided"] == 1
    states = BatchStore(registry.root, batch).state().windows
    assert (states[0].label, states[0].grade, states[0].elapsed_ms) == ("retracement", "B", 1200)
    stats = fresh.get("/api/stats", headers=AUTH).json()
    assert stats["keeper_by_batch"]["b1"] == {"accepted": 1, "judged": 1, "rate": 1.0}


def test_a_d_grade_is_blacklisted_when_it_is_answered(lab):
    registry, batch, client = lab
    client.headers.update(AUTH)
    window = batch.windows[2]
    result = _act(client, window.window_id, "grade", grade="D")
    assert result["decided"] and "blacklisted" in result["message"]
    entries = read_blacklist(registry.root).entries
    assert [(e.symbol, e.start_ts, e.end_ts) for e in entries] == [
        (window.symbol, window.start_ts.isoformat(), window.end_ts.isoformat())
    ]
    listed = client.get("/api/blacklist").json()
    assert listed[0]["start_ts"] == entries[0].start_ts


def test_bad_actions_are_refused_naming_what_is_wrong_and_nothing_is_written(lab):
    registry, batch, client = lab
    client.headers.update(AUTH)
    wrong_window = client.post(
        "/api/batches/b1/actions", json={"window_id": "nope", "kind": "skip"}
    )
    assert wrong_window.status_code == 400 and "nope" in wrong_window.json()["detail"]
    for body in (
        {"window_id": batch.windows[0].window_id, "kind": "label", "label": "up"},
        {"window_id": batch.windows[0].window_id, "kind": "grade"},
        {"window_id": batch.windows[0].window_id, "kind": "skip", "extra": 1},
    ):
        assert client.post("/api/batches/b1/actions", json=body).status_code == 422
    assert not log_path(registry.root, batch).exists()


def test_notes_and_names_from_data_are_escaped_in_json_and_html(lab):
    _, batch, client = lab
    client.headers.update(AUTH)
    note = '</script><script>alert("x")</script> & <b>'
    response = client.post(
        "/api/batches/b1/actions",
        json={"window_id": batch.windows[0].window_id, "kind": "note", "note": note},
    )
    assert "<script>" not in response.text and "</script>" not in response.text
    assert "\\u003cscript\\u003e" in response.text
    assert response.json()["state"]["note"] == note  # the same value for a JSON reader
    shown = client.get("/api/batches/b1/windows/0")
    assert "<script>" not in shown.text and json.loads(shown.text)["state"]["note"] == note
    # a batch name reflected into the page (the query string) is HTML-escaped
    page = client.get("/label", params={"batch": '"><script>alert(1)</script>'})
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert 'data-batch="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_page_loads_the_vendored_chart_library_and_credits_tradingview(lab):
    _, _, client = lab
    page = client.get("/label", headers=AUTH).text
    assert '<script src="/static/vendor/lightweight-charts.standalone.production.js"' in page
    assert "cdn" not in page.lower() and "://unpkg" not in page
    assert 'href="https://www.tradingview.com/"' in page and "Charts by TradingView" in page
    library = client.get("/static/vendor/lightweight-charts.standalone.production.js")
    assert library.status_code == 200 and "TradingView Lightweight Charts" in library.text
    assert "Apache License" in client.get("/static/vendor/LICENSE").text
    assert "TradingView, Inc." in client.get("/static/vendor/NOTICE").text
    assert client.get("/static/app.js").status_code == 200


def test_the_openapi_schema_documents_the_endpoints_and_their_models(lab):
    _, _, client = lab
    schema = client.get("/api/openapi.json", headers=AUTH).json()
    for path in (
        "/api/batches",
        "/api/batches/{name}/next",
        "/api/batches/{name}/windows/{index}",
        "/api/batches/{name}/actions",
        "/api/blacklist",
        "/api/stats",
        "/api/runs",
        "/api/runs/compare",
    ):
        assert path in schema["paths"], path
    models = schema["components"]["schemas"]
    assert {"WindowView", "ActionResult", "NewAction", "BlacklistEntry", "RunsPage"} <= set(models)
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_ui_mode_opens_on_the_runs_page_and_serves_reports_sandboxed(tmp_path):
    from moola.tracking.runs import RunStore

    root = tmp_path / "moola_data"
    store = RunStore(root)
    run_id = "20260101T000000000000Z-aaaaaaa-lstm"
    store.write_run(run_id, {"kind": "train"}, {"report.html": "<h1>r</h1>", "a.json": "{}"})
    store.append_result({"run_id": run_id, "kind": "train", "metrics": {"accuracy": 0.5}})
    client = TestClient(create_app(root, token=TOKEN, mode="ui"), headers=AUTH)
    assert 'data-view="runs"' in client.get("/").text
    rows = client.get("/api/runs", params={"sort": "accuracy"}).json()["rows"]
    assert [(r["run_id"], r["has_report"]) for r in rows] == [(run_id, True)]
    assert client.get("/api/runs", params={"sort": "nope"}).status_code == 400
    report = client.get(f"/runs/{run_id}/report")
    assert report.text == "<h1>r</h1>"
    assert report.headers["content-security-policy"].startswith("sandbox")
    assert client.get(f"/runs/{run_id}/files/a.json").content == b"{}"
    assert client.get(f"/runs/{run_id}/files/..%2F..%2Fexperiment_results.jsonl").status_code in (
        404,
        400,
    )
    compared = client.get("/api/runs/compare", params={"lines": [1]}).json()
    assert compared["rows"][0]["files"] == ["a.json"]


def test_review_mode_shows_the_given_label_and_the_models_view_and_logs_apart(lab):
    registry, _, client = lab
    client.headers.update(AUTH)
    raw = f"es@v{registry.versions('raw', 'es')[-1]}"
    review = make_batch(
        registry, raw, [200], name="r1", kind="review", labeled="pat@v1", given=["retracement"]
    )
    proba = {"consolidation": 0.9, "retracement": 0.1}
    windows = tuple(w.model_copy(update={"model_proba": proba}) for w in review.windows)
    review = review.model_copy(update={"windows": windows})
    write_batch(registry.root, review)
    shown = client.get("/api/batches/r1/next").json()
    assert shown["kind"] == "review"
    assert shown["window"]["given_label"] == "retracement"
    assert shown["window"]["model_proba"] == proba
    result = _act_on(client, "r1", windows[0].window_id, "label", label="consolidation")
    assert result["decided"]  # in review, a label (a confirmation or a correction) decides
    assert log_path(registry.root, review).parent.name == "review"
    assert log_path(registry.root, review).exists()
    assert not (registry.root / "annotations" / "normal" / "r1.jsonl").exists()


def test_a_corrupt_log_line_is_reported_with_its_number_and_the_rest_is_kept(lab):
    registry, batch, client = lab
    client.headers.update(AUTH)
    first = batch.windows[0].window_id
    _act(client, first, "label", label="neither")
    with log_path(registry.root, batch).open("ab") as log:
        log.write(b'{"seq": 2, "oops\n')
    _act(client, first, "grade", grade="C")
    shown = client.get("/api/batches/b1/windows/0").json()
    assert (shown["state"]["label"], shown["state"]["grade"]) == ("neither", "C")
    assert len(shown["problems"]) == 1 and "line 2" in shown["problems"][0]
