"""The labelling page in a real browser: Debian's chromium, headless, driven by Selenium.

The app is served by uvicorn on a free 127.0.0.1 port in a thread; the test opens the URL
with the token, labels three windows with the keyboard (one graded D), commits the batch
and checks the new labeled version and the blacklist in the registry. A screenshot is
saved under the test's tmp folder and, when MOOLA_TEST_ARTIFACTS is set, copied there.

Without /usr/bin/chromium and /usr/bin/chromedriver the test is skipped with the reason,
except under CI=true, where it fails (scripts/ci_browser.sh installs them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from moola.annotate.app import create_app
from moola.annotate.commit import commit_batch
from moola.annotate.server import ServerThread
from moola.annotate.store import BatchStore, write_batch
from moola.data.blacklist import read_blacklist
from moola.data.registry import Registry
from tests.annotate._batches import make_batch, store_raw

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-test-token-0123456789"


def _browser_or_skip():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{' and '.join(missing)} missing: run scripts/ci_browser.sh to install them"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: the browser test must run, but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def browser():
    driver = _browser_or_skip()
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_window(driver, index: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        body = d.find_element("tag name", "body")
        if body.get_attribute("data-ready") == "error":
            raise AssertionError(d.find_element("id", "title").text)
        return body.get_attribute("data-ready") == "true" and body.get_attribute(
            "data-window"
        ) == str(index)

    WebDriverWait(driver, 20, poll_frequency=0.05).until(shown)


def _wait_until_ready(driver) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20, poll_frequency=0.05).until(
        lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true"
    )


def _wait_for_text(driver, element_id: str, text: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20, poll_frequency=0.05).until(
        lambda d: (
            d.find_element("id", element_id).text == text
            and d.find_element("tag name", "body").get_attribute("data-ready") == "true"
        )
    )


def _keys(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def _save_screenshot(driver, tmp_path: Path) -> Path:
    shot = tmp_path / "annotate.png"  # kept for inspection: /tmp/pytest-of-*/
    driver.save_screenshot(str(shot))
    artifacts = os.environ.get("MOOLA_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "annotate.png")
    return shot


def test_label_three_windows_with_the_keyboard_grade_one_d_and_commit(tmp_path, browser):
    registry = Registry(tmp_path / "moola_data")
    raw = store_raw(registry, 400)
    batch = make_batch(registry, raw, [10, 60, 110, 160], name="b1")
    write_batch(registry.root, batch)
    app = create_app(registry.root, token=TOKEN, batch="b1")
    with ServerThread(app) as server:
        browser.get(server.url(f"/label?batch=b1&token={TOKEN}"))
        assert "token=" not in browser.current_url  # the token went into a cookie
        _wait_for_window(browser, 0)
        assert browser.find_element("id", "suggestion").text.startswith("consolidation")
        assert browser.find_elements("css selector", "#chart canvas")  # the chart drew
        _keys(browser, "1a")  # consolidation, grade A -> next window
        _wait_for_window(browser, 1)
        _keys(browser, "2b")  # retracement, grade B
        _wait_for_window(browser, 2)
        _keys(browser, "1d")  # consolidation, then D: removed and blacklisted
        _wait_for_window(browser, 3)
        assert "1 D" in browser.find_element("id", "progress-text").text
        _keys(browser, "2")  # a label on window 3, then undone with u
        _wait_for_text(browser, "state-label", "retracement")
        _keys(browser, "u")
        _wait_for_text(browser, "state-label", "-")
        note = "<b>wide</b> range, odd open"
        _keys(browser, "n")
        _keys(browser, note + "\n")  # n opens the note field, Enter saves it
        _wait_for_text(browser, "state-note", note)  # shown as text, not as markup
        shot = _save_screenshot(browser, tmp_path)
        # a reload resumes at the first window not done
        browser.get(server.url("/label?batch=b1"))
        _wait_for_window(browser, 3)
        browser.get(server.url("/stats"))  # the stats page renders the batch's keeper rate
        _wait_until_ready(browser)
        assert "keeper by batch" in browser.find_element("id", "stats").text
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe  # no script error, no blocked resource
    assert shot.stat().st_size > 10_000

    states = BatchStore(registry.root, batch).state().windows
    assert [(s.label, s.grade) for s in states] == [
        ("consolidation", "A"),
        ("retracement", "B"),
        ("consolidation", "D"),
        (None, None),
    ]
    assert states[3].note == note
    result = commit_batch(registry, "b1", into="patterns")
    assert result.created and result.added == 2
    table = registry.load_labeled("patterns").table
    assert sorted(zip(table["start"], table["label"], strict=True)) == [
        (10, "consolidation"),
        (60, "retracement"),
    ]
    rejected = batch.windows[2]
    entries = read_blacklist(registry.root).entries
    assert [(e.symbol, e.start_ts, e.end_ts) for e in entries] == [
        (rejected.symbol, rejected.start_ts.isoformat(), rejected.end_ts.isoformat())
    ]


def test_the_runs_page_compares_runs_and_links_their_reports(tmp_path, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    from moola.tracking.runs import RunStore

    root = tmp_path / "moola_data"
    store = RunStore(root)
    for i, (model, accuracy, ece) in enumerate((("lstm", 0.84, 0.05), ("logreg", 0.79, 0.02))):
        run_id = f"2026010{i + 1}T000000000000Z-abc{i}def-{model}"
        store.write_run(run_id, {"kind": "train"}, {"report.html": "<h1>r</h1>", "a.json": "{}"})
        store.append_result(
            {
                "run_id": run_id,
                "kind": "train",
                "model": model,
                "metrics": {"accuracy": accuracy, "ece": ece},
            }
        )
    with ServerThread(create_app(root, token=TOKEN, mode="ui")) as server:
        browser.get(server.url(f"/?token={TOKEN}"))
        _wait_until_ready(browser)
        rows = browser.find_elements("css selector", "#runs-table tbody tr")
        assert [r.find_elements("tag name", "td")[3].text for r in rows] == ["train", "train"]
        for box in browser.find_elements("css selector", "#runs-table input[type=checkbox]"):
            box.click()
        browser.find_element("id", "compare").click()
        best = WebDriverWait(browser, 10).until(
            lambda d: d.find_elements("css selector", "#comparison td.best")
        )
        assert sorted(cell.text for cell in best) == ["0.02", "0.84"]
        links = browser.find_elements("css selector", "#runs-table a")
        assert all("/report" in link.get_attribute("href") for link in links) and len(links) == 2
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
