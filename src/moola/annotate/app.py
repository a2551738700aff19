"""The annotation web app (FastAPI): the labelling page, stats, the run browser, a JSON API.

``create_app(root, token=...)`` builds the app over the data root ``root``; the CLI serves
it (``moola annotate serve``, ``moola ui``), tests call it through FastAPI's test client.

- **Token.** Every ``/api`` call, report and run file needs the server's token: an
  ``Authorization: Bearer <token>`` header, a ``token`` query parameter, or the
  ``moola_token`` cookie that the first page load with ``?token=`` sets (HttpOnly,
  SameSite=Strict; the page then reloads without the token in its URL). Anything else is
  answered 401. Static files (the page's script, styles, the vendored chart library and
  its licence) hold no data and need no token.
- **Thin handlers.** Each handler parses its request and calls one function of
  ``moola.annotate.api.Annotations`` or ``moola.annotate.runs``; library errors become
  400 (bad input), 404 (no such batch, window, run) or 409 (stored data failed a check).
- **Escaping.** Pages are one static template whose few fields (view, batch, title) are
  HTML-escaped; data reaches the page only as JSON, which the script puts in with
  ``textContent``. JSON responses escape ``<``, ``>`` and ``&`` as ``\\u003c`` etc., so no
  note or name can close a tag even where JSON is read as HTML. Pages carry a
  Content-Security-Policy that allows only this server's scripts; run reports are served
  sandboxed (their scripts run without this origin's cookie or API).
- **OpenAPI.** The schema is at ``/api/openapi.json`` (behind the token). FastAPI's
  ``/docs`` page is off: it loads Swagger UI from a CDN, and the app uses none.
"""

from __future__ import annotations

import html
import mimetypes
import re
import secrets
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from moola.annotate.api import ActionResult, Annotations, BatchSummary, WindowView
from moola.annotate.model import NewAction
from moola.annotate.runs import Comparison, RunsPage, compare_runs, list_runs, read_run_file
from moola.annotate.runs import report_path as run_report_path
from moola.annotate.stats import AnnotationStats
from moola.core.errors import ConfigError, IntegrityError, MoolaError, RegistryError
from moola.data.blacklist import BlacklistEntry

__all__ = ["COOKIE", "Mode", "SafeJSONResponse", "create_app"]

COOKIE = "moola_token"
Mode = Literal["label", "review", "ui"]

_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_SANDBOX_CSP = "sandbox allow-scripts; default-src 'self' 'unsafe-inline' data: blob:"
_FIELD = re.compile(r"\{\{(\w+)\}\}")


def _escaped(text: str) -> bytes:
    """JSON text with ``<``, ``>`` and ``&`` written as ``\\u003c``, ``\\u003e``,
    ``\\u0026``: the same values for any JSON reader, and never markup for an HTML one."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class SafeJSONResponse(JSONResponse):
    """A JSON response escaped as ``_escaped`` does (every JSON answer of the app)."""

    def render(self, content: Any) -> bytes:
        return _escaped(super().render(content).decode("utf-8"))


def _model_json(model: BaseModel) -> Response:
    """``model`` as escaped JSON, serialized by pydantic in one step: the window a page
    asks for at every key press skips FastAPI's generic encoder (10-20 times slower). The
    route's ``response_model`` still documents it."""
    return Response(_escaped(model.model_dump_json()), media_type="application/json")


def _static_dir() -> Path:
    return Path(str(resources.files("moola.annotate") / "static"))


def _given_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query_params.get("token") or request.cookies.get(COOKIE)


def _error(status: int, exc: BaseException) -> SafeJSONResponse:
    return SafeJSONResponse({"detail": str(exc)}, status_code=status)


def create_app(
    root: str | Path,
    *,
    token: str,
    batch: str | None = None,
    mode: Mode = "label",
    by: str = "",
) -> FastAPI:
    """The app over the data root ``root``, guarded by ``token``.

    ``batch``: the batch the labelling page opens (None: a list to pick from). ``mode``:
    the page ``/`` shows, labelling (``label``, ``review``) or the runs (``ui``); every
    page and endpoint is there in each mode. ``by``: who labels (kept in each action).
    """
    if not token or len(token) < 16:
        raise ConfigError("token must be at least 16 characters (use secrets.token_urlsafe).")
    if mode not in ("label", "review", "ui"):
        raise ConfigError(f"mode {mode!r} is not one of label, review, ui.", param="mode")
    root = Path(root)
    annotations = Annotations(root, by=by)
    template = (_static_dir() / "index.html").read_text(encoding="utf-8")

    def has_token(request: Request) -> bool:
        given = _given_token(request)
        return given is not None and secrets.compare_digest(given.encode(), token.encode())

    async def check_token(request: Request) -> None:  # async: no thread hop per request
        if not has_token(request):
            raise _Unauthorized

    app = FastAPI(
        title="moola annotation API",
        version="1",
        description="Windows to label, annotation actions, the blacklist, stats and runs. "
        "Every call needs the token the server printed (Authorization: Bearer TOKEN).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=SafeJSONResponse,
    )
    app.state.annotations = annotations

    @app.exception_handler(_Unauthorized)
    def _unauthorized(request: Request, exc: _Unauthorized) -> Response:
        return SafeJSONResponse(
            {"detail": "a valid token is needed: open the URL the server printed"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(MoolaError)
    def _moola_error(request: Request, exc: MoolaError) -> Response:
        if isinstance(exc, IntegrityError):
            return _error(409, exc)
        if isinstance(exc, RegistryError):
            return _error(404, exc)
        return _error(400, exc)

    # ------------------------------------------------------------------ pages
    def page(request: Request, view: Literal["label", "stats", "runs"]) -> Response:
        given = request.query_params.get("token")
        if given is not None and secrets.compare_digest(given.encode(), token.encode()):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return redirect
        if not has_token(request):
            return HTMLResponse(
                "<!doctype html><title>moola</title><p>This page needs the token: open the "
                "URL that <code>moola annotate serve</code> or <code>moola ui</code> printed."
                "</p>",
                status_code=401,
                headers={"Content-Security-Policy": _PAGE_CSP},
            )
        shown = request.query_params.get("batch") or batch or ""
        heading = {"label": f"labelling {shown}" if shown else "batches", "stats": "stats"}
        fields = {
            "view": view,
            "mode": mode,
            "batch": shown,
            "title": f"moola {heading.get(view, 'runs')}",
            "heading": heading.get(view, "runs"),
        }
        body = _FIELD.sub(lambda m: html.escape(fields.get(m[1], ""), quote=True), template)
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": _PAGE_CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            },
        )

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        return page(request, "runs" if mode == "ui" else "label")

    @app.get("/label", include_in_schema=False)
    def label_page(request: Request) -> Response:
        return page(request, "label")

    @app.get("/stats", include_in_schema=False)
    def stats_page(request: Request) -> Response:
        return page(request, "stats")

    @app.get("/runs", include_in_schema=False)
    def runs_page(request: Request) -> Response:
        return page(request, "runs")

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    # ------------------------------------------------------------------ API
    api = APIRouter(prefix="/api", dependencies=[Depends(check_token)])

    @api.get("/batches", response_model=list[BatchSummary], tags=["batches"])
    def batches() -> list[BatchSummary]:
        """Every stored batch with its progress."""
        return annotations.batches()

    @api.get("/batches/{name}", response_model=BatchSummary, tags=["batches"])
    def batch_summary(name: str) -> BatchSummary:
        """One batch and its progress."""
        return annotations.batch(name)

    # A window is a slice of cached arrays (~0.2 ms): served on the event loop, without a
    # hop to the thread pool (under CPU contention the GIL handoff alone costs ms). Only
    # the batch's first window, which reads its bars from disk, goes to the pool.
    async def _window(name: str, index: int | None) -> Response:
        if annotations.loaded(name):
            return _model_json(annotations.window(name, index))
        return _model_json(await run_in_threadpool(annotations.window, name, index))

    @api.get("/batches/{name}/next", response_model=WindowView, tags=["windows"])
    async def next_window(name: str) -> Response:
        """The window where labelling stopped: the first undecided one (resume)."""
        return await _window(name, None)

    @api.get("/batches/{name}/windows/{index}", response_model=WindowView, tags=["windows"])
    async def window(name: str, index: int) -> Response:
        """Window ``index`` (0-based) of the batch, with its bars, context and state."""
        return await _window(name, index)

    @api.post("/batches/{name}/actions", response_model=ActionResult, tags=["annotations"])
    def act(name: str, action: NewAction) -> Response:
        """Append a label, grade, note, skip or undo to the batch's log; answered once it
        is on disk (a D grade blacklists the window first)."""
        return _model_json(annotations.act(name, action))

    @api.get("/blacklist", response_model=list[BlacklistEntry], tags=["blacklist"])
    def blacklist() -> list[dict[str, Any]]:
        """Every blacklisted span of bars, oldest first."""
        return annotations.blacklist()

    @api.get("/stats", response_model=AnnotationStats, tags=["stats"])
    def stats() -> AnnotationStats:
        """Keeper rates by session and batch, class and grade balance, speed, agreement."""
        return annotations.stats()

    @api.get("/runs", response_model=RunsPage, tags=["runs"])
    def runs(
        kind: str | None = None,
        model: str | None = None,
        search: str | None = None,
        sort: str = "line",
        order: Literal["asc", "desc"] = "desc",
    ) -> RunsPage:
        """Runs from experiment_results.jsonl, filtered and sorted."""
        return list_runs(root, kind=kind, model=model, search=search, sort=sort, order=order)

    @api.get("/runs/compare", response_model=Comparison, tags=["runs"])
    def compare(lines: Annotated[list[int], Query(min_length=1, max_length=20)]) -> Comparison:
        """Results (log lines) side by side, with the best value of each metric."""
        return compare_runs(root, lines)

    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    app.include_router(api)

    # ------------------------------------------------------------------ run files
    files = APIRouter(prefix="/runs/{run_id}", dependencies=[Depends(check_token)])

    @files.get("/report", include_in_schema=False)
    def report(run_id: str) -> Response:
        path = run_report_path(root, run_id)
        return HTMLResponse(
            path.read_bytes(),
            headers={"Content-Security-Policy": _SANDBOX_CSP, "X-Content-Type-Options": "nosniff"},
        )

    @files.get("/files/{name:path}", include_in_schema=False)
    def run_file(run_id: str, name: str) -> Response:
        data = read_run_file(root, run_id, name)
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if media.startswith("text/") or media == "application/json":
            media = "text/plain" if media != "application/json" else media
        return Response(
            data,
            media_type=media,
            headers={"Content-Security-Policy": _SANDBOX_CSP, "X-Content-Type-Options": "nosniff"},
        )

    app.include_router(files)
    return app


class _Unauthorized(Exception):
    """A request without the right token (answered 401)."""
