"""Screenshot of the labelling page for the README: ``docs/images/annotate.png``.

Run: ``.venv/bin/python scripts/screenshot_annotate.py [--out PATH]``. Needs Debian's
chromium and chromedriver (``scripts/ci_browser.sh``). In a temporary data root it writes a
synthetic 1-minute market (``moola.data.sources.synthetic``), extracts a batch of 105-bar
windows with 30 context bars (``moola annotate extract``'s function), labels two windows
through the API as a person would with the keyboard, and photographs the third window in
headless chromium. Nothing outside the temporary folder is touched but ``--out``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx

from moola.annotate.app import create_app
from moola.annotate.extract import extract_batch
from moola.annotate.server import ServerThread, new_token
from moola.data.registry import Registry
from moola.data.sources.synthetic import SyntheticMarketConfig, generate_market

ROOT = Path(__file__).resolve().parent.parent


def _driver(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "annotate.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "moola_data")
        market = generate_market(SyntheticMarketConfig(symbol="NQ", n_bars=20_000, seed=7))
        registry.write_raw("nq", market.bars, sources=[{"generator": "synthetic", "seed": 7}])
        batch = extract_batch(
            registry, "nq", n=20, length=105, context=30, name="nq-b1", weights="uniform", seed=3
        )
        token = new_token()
        app = create_app(registry.root, token=token, batch=batch.name)
        with ServerThread(app) as server:
            headers = {"Authorization": f"Bearer {token}"}
            labels = ("consolidation", "retracement", "neither")
            with httpx.Client(base_url=server.url(), headers=headers) as api:
                # label at least two windows, and on until the next one has a suggestion
                for i, window in enumerate(batch.windows[:-1]):
                    if i >= 2 and batch.windows[i].suggestion is not None:
                        break
                    for body in (
                        {"kind": "label", "label": labels[i % 2]},
                        {"kind": "grade", "grade": "AB"[i % 2]},
                    ):
                        api.post(
                            f"/api/batches/{batch.name}/actions",
                            json={"window_id": window.window_id, **body, "elapsed_ms": 4200},
                        ).raise_for_status()
            driver = _driver(args.width, args.height)
            try:
                driver.get(server.url(f"/label?batch={batch.name}&token={token}"))
                WebDriverWait(driver, 20).until(
                    lambda d: (
                        d.find_element("tag name", "body").get_attribute("data-ready") == "true"
                    )
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.out))
            finally:
                driver.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
