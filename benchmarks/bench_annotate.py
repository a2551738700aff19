"""Annotation app benchmark: time to serve the next window to label, through the API.

Run: ``.venv/bin/python benchmarks/bench_annotate.py [--bars N] [--windows W] [--requests R]``.

A raw version of N 1-minute bars and a batch of W windows of 105 bars with 30 context bars
each side, drawn by ``extract_batch`` (each with its weak-label suggestion), are served by
``moola.annotate.app``. Timed per request, p50/p99/max:

- ``window (TestClient)``: ``GET /api/batches/B/windows/i`` in process (routing, token,
  the window's bars sliced from the cached columns, its state, progress, JSON); the test
  client runs the app's event loop in another thread, whose handoffs add their own tail
  on a busy machine;
- ``window (uvicorn HTTP)``: the same over a real uvicorn server on 127.0.0.1 with a
  keep-alive httpx client (what the page sees, minus the browser);
- ``next (uvicorn HTTP)``: ``GET /api/batches/B/next``, the resume position;
- ``label action (uvicorn HTTP)``: ``POST .../actions`` with a label, which appends to the
  log and fsyncs before answering (disk-bound), then the state replayed;
- ``window after another writer appended``: before each timed request another store of
  the same batch (a second tab's server, a script) appends one action, so the server reads
  the log's new line and replays the windows it touched, in the request, on the event loop;
  the log first gets ``--history`` more lines (a long labelling history), since a replay of
  the whole log would grow with it.

The first request of a batch loads its raw bars once (timed separately: ``first window``).
Target: the next window under 20 ms at p99, so the person, not the app, sets the pace.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import print_table, random_walk_bars  # benchmarks/ is on sys.path as scripts
from moola.annotate.app import create_app
from moola.annotate.extract import extract_batch
from moola.annotate.model import NewAction
from moola.annotate.server import ServerThread
from moola.annotate.store import BatchStore
from moola.data.registry import Registry

TOKEN = "bench-token-0123456789abcdef"


def _row(step: str, times: list[float]) -> dict:
    ms = np.asarray(times) * 1e3
    return {
        "step": step,
        "requests": len(ms),
        "p50 ms": float(np.percentile(ms, 50)),
        "p99 ms": float(np.percentile(ms, 99)),
        "max ms": float(ms.max()),
    }


def _timed(call, n: int) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        response = call(i)
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--actions", type=int, default=200)
    parser.add_argument("--history", type=int, default=1_000)
    args = parser.parse_args()
    import httpx
    from fastapi.testclient import TestClient

    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "moola_data")
        bars, _ = random_walk_bars(args.bars, np.random.default_rng(0))
        registry.write_raw("bench", bars, sources=[{"generator": "random walk", "seed": 0}])
        start = time.perf_counter()
        batch = extract_batch(
            registry, "bench", n=args.windows, length=105, context=30, name="b", weights="uniform"
        )
        extract_s = time.perf_counter() - start
        suggested = sum(w.suggestion is not None for w in batch.windows)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        app = create_app(registry.root, token=TOKEN, batch="b")
        client = TestClient(app, headers=headers)
        start = time.perf_counter()
        first = client.get("/api/batches/b/windows/0")
        cold = time.perf_counter() - start
        n_bars = len(first.json()["bars"]["time"])
        w = len(batch.windows)
        rows = [_row("first window (loads the raw bars)", [cold])]
        for _ in range(50):  # warm up
            client.get("/api/batches/b/windows/1")
        rows.append(
            _row(
                "window (TestClient)",
                _timed(lambda i: client.get(f"/api/batches/b/windows/{i % w}"), args.requests),
            )
        )
        with (
            ServerThread(app) as server,
            httpx.Client(base_url=server.url(), headers=headers) as web,
        ):
            for _ in range(50):
                web.get("/api/batches/b/windows/1")
            rows.append(
                _row(
                    "window (uvicorn HTTP)",
                    _timed(lambda i: web.get(f"/api/batches/b/windows/{i % w}"), args.requests),
                )
            )
            rows.append(
                _row(
                    "next (uvicorn HTTP)",
                    _timed(lambda i: web.get("/api/batches/b/next"), args.requests // 4),
                )
            )
            ids = [window.window_id for window in batch.windows]
            rows.append(
                _row(
                    "label action (uvicorn HTTP, fsync)",
                    _timed(
                        lambda i: web.post(
                            "/api/batches/b/actions",
                            json={"window_id": ids[i % w], "kind": "label", "label": "neither"},
                        ),
                        args.actions,
                    ),
                )
            )
            other = BatchStore(registry.root, batch)
            for i in range(args.history):
                other.record(NewAction(window_id=ids[i % w], kind="note", note=f"n{i}"))

            def after_append(i: int) -> httpx.Response:
                other.record(NewAction(window_id=ids[i % w], kind="grade", grade="B"))
                start = time.perf_counter()
                response = web.get(f"/api/batches/b/windows/{(i + 1) % w}")
                waits.append(time.perf_counter() - start)
                return response

            waits: list[float] = []
            _timed(after_append, args.actions)
            rows.append(_row("window after another writer appended (uvicorn HTTP)", waits))
    print(
        f"raw: {args.bars:,} bars; batch: {w} windows of 105 bars + 30 context each side "
        f"({n_bars} bars per window served; {suggested} with a suggestion), extracted in "
        f"{extract_s:.2f} s"
    )
    print_table("Annotation API: serving a window (target: p99 < 20 ms)", rows)


if __name__ == "__main__":
    main()
