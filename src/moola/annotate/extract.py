"""Extraction: draw a batch of candidate windows of a raw dataset version to label.

``extract_batch`` picks ``n`` windows of ``length`` bars (plus ``context`` bars shown
before and after, which must exist in the same symbol) that annotators have not seen:

- **No overlap.** A candidate overlaps nothing already *labeled* (any version of any
  labeled dataset built on the same raw dataset), *queued* (any window of a stored batch
  over it) or *blacklisted* (``moola.data.blacklist``), nor another candidate. Overlap is
  judged per symbol by bar span, as the blacklist does: two windows overlap when each
  starts at or before the other's last bar (open times, UTC), so a window labeled on
  ``v1`` of the bars still blocks the same bars in ``v2``; ids are never compared.
- **Session weights.** With ``weights="session"`` the chance that a window is drawn is
  proportional to its intraday session's keeper rate learned from past batches
  (``moola.annotate.stats.keeper_rates``; a window's session is that of its first bar);
  a session without history gets the mean rate, and every session at least
  ``SESSION_FLOOR`` of the best one, so none is starved. Without any history the draw is
  uniform. Drawing is weighted sampling without replacement (Efraimidis-Spirakis keys:
  ``Exp(1) / w``, smallest first), each window accepted when it overlaps none accepted
  before it.
- **Suggestions.** Each window carries the weak label of ``moola.annotate.suggest``
  (computed on its own bars only) and the rule that gave it.
- **Active learning** (``strategy="uncertainty"``): a pool of ``pool_factor * n``
  candidates drawn as above is scored by ``run``'s predictor (``moola.pipeline.predictor``:
  its input view, model and calibrator, exactly as the run predicts), ranked by entropy or
  margin, and the ``shortlist_factor * n`` least certain are spread by greedy k-center
  (farthest-first, from the least certain one) over the run's encoder embeddings when
  its model holds an encoder, else over the model's input features of each window,
  standardised. The batch lists the chosen windows least certain first, each with its
  score; the strategy, run and measure are recorded in the batch.

Speed: everything is interval arithmetic on sorted int64 times and a start mask
(``numpy.searchsorted`` and a difference array), so 1,000 candidates from a 1M-bar raw
version take a second or two (``benchmarks/bench_extract.py``). Written by hand: this is a
few lines of numpy around the project's own registry, blacklist and predictor; no
labelling library knows bar spans or raw versions.

A raw version too short for ``length`` (plus context), a batch name that exists or too few
free windows: a clear error, and nothing written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moola.annotate import store
from moola.annotate.model import Batch, WindowRef, make_window_id
from moola.annotate.suggest import suggest
from moola.core.errors import ConfigError, RegistryError, describe_validation
from moola.data import DatasetRef
from moola.data.blacklist import read_blacklist
from moola.data.registry import Registry
from moola.data.windows import WindowSet, window_starts

__all__ = [
    "DEFAULT_CONTEXT",
    "SESSION_FLOOR",
    "ExtractConfig",
    "Spans",
    "blocked_starts",
    "check_name_free",
    "draw_windows",
    "extract_batch",
    "free_starts",
    "k_center",
    "occupied_spans",
    "select_uncertain",
    "uncertainty",
]

DEFAULT_CONTEXT = 30
"""Bars shown before and after a window by default."""
SESSION_FLOOR = 0.05
"""A session's weight is at least this share of the best session's (exploration)."""

Weights = Literal["session", "uniform"]
Strategy = Literal["random", "uncertainty"]
Measure = Literal["entropy", "margin"]
Spans = dict[str, tuple[np.ndarray, np.ndarray]]
"""Per symbol: inclusive ``(starts, ends)`` of occupied spans, int64 ns UTC."""


class ExtractConfig(BaseModel):
    """What ``extract_batch`` was asked for; recorded in the batch's ``params``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(ge=1)
    length: int = Field(ge=2)
    context: int = Field(default=DEFAULT_CONTEXT, ge=0)
    weights: Weights = "session"
    strategy: Strategy = "random"
    run: str | None = None
    seed: int = 0
    measure: Measure = "entropy"
    pool_factor: float = Field(default=5.0, ge=1.0)
    shortlist_factor: float = Field(default=2.0, ge=1.0)


# ------------------------------------------------------------------ occupied spans
def _ns(values: Any) -> np.ndarray:
    """Timestamps (a column, index or datetimes) as int64 ns UTC."""
    index = pd.DatetimeIndex(values)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns").asi8


def _raw_names(meta: Mapping[str, Any]) -> set[str]:
    """Names of the raw datasets a windows dataset's meta says it was built on."""
    raws = [meta.get("raw")] + [entry.get("raw") for entry in meta.get("feature_tables", [])]
    names = set()
    for raw in raws:
        for item in raw if isinstance(raw, list) else [raw]:
            if isinstance(item, Mapping) and "name" in item:
                names.add(str(item["name"]))
    return names


def _merge(parts: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Spans:
    """Concatenate ``(symbols, starts, ends)`` triples into per-symbol span arrays."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return {}
    symbols = np.concatenate([np.asarray(p[0], dtype=str) for p in parts])
    starts = np.concatenate([np.asarray(p[1], dtype=np.int64) for p in parts])
    ends = np.concatenate([np.asarray(p[2], dtype=np.int64) for p in parts])
    out: Spans = {}
    for symbol in np.unique(symbols):
        rows = symbols == symbol
        out[str(symbol)] = (starts[rows], ends[rows])
    return out


def labeled_spans(registry: Registry, raw_name: str) -> Spans:
    """Spans of every window of every labeled dataset version built on ``raw_name``."""
    parts = []
    for name in registry.names("labeled"):
        for version in registry.versions("labeled", name):
            ref = registry.resolve("labeled", name, version)
            if raw_name in _raw_names(registry.meta(ref)):
                parts.append(registry.sample_windows(ref))
    return _merge(parts)


def queued_spans(batches: Iterable[Batch], raw_name: str) -> Spans:
    """Spans of the windows of ``batches`` over any version of ``raw_name``."""
    parts = []
    for batch in batches:
        windows = [w for w in batch.windows if w.raw.split("@")[0] == raw_name]
        if windows:
            parts.append(
                (
                    np.array([w.symbol for w in windows], dtype=str),
                    _ns([w.start_ts for w in windows]),
                    _ns([w.end_ts for w in windows]),
                )
            )
    return _merge(parts)


def blacklisted_spans(root: Any) -> Spans:
    """Spans of the data root's blacklist (it holds for every raw version of a symbol)."""
    entries = read_blacklist(root).entries
    if not entries:
        return {}
    spans = np.array([entry.span_ns for entry in entries], dtype=np.int64).reshape(-1, 2)
    symbols = np.array([entry.symbol for entry in entries], dtype=str)
    return _merge([(symbols, spans[:, 0], spans[:, 1])])


def occupied_spans(registry: Registry, raw: DatasetRef) -> dict[str, Spans]:
    """What no candidate may overlap, by source: ``labeled``, ``queued``, ``blacklisted``."""
    return {
        "labeled": labeled_spans(registry, raw.name),
        "queued": queued_spans(_stored_batches(registry.root), raw.name),
        "blacklisted": blacklisted_spans(registry.root),
    }


# ------------------------------------------------------------------ free windows
def _symbol_blocks(symbols: np.ndarray) -> list[tuple[str, int, int]]:
    """``(symbol, first row, last row)`` of each run of one symbol (rows sorted by symbol)."""
    if len(symbols) == 0:
        return []
    cuts = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1
    firsts = np.concatenate([[0], cuts])
    lasts = np.concatenate([cuts - 1, [len(symbols) - 1]])
    return [(str(symbols[a]), int(a), int(b)) for a, b in zip(firsts, lasts, strict=True)]


def blocked_starts(
    times: np.ndarray, length: int, span_starts: np.ndarray, span_ends: np.ndarray
) -> np.ndarray:
    """Bool per row of one symbol's sorted bar ``times`` (int64 ns): True where a window of
    ``length`` bars starting there overlaps one of the inclusive spans.

    A window of rows ``[s, s + length - 1]`` overlaps span ``[a, b]`` when
    ``times[s] <= b`` and ``times[s + length - 1] >= a``, i.e. when ``s`` lies in
    ``[i0 - length + 1, i1]`` with ``i0`` the first bar at or after ``a`` and ``i1`` the
    last at or before ``b`` (a span between two bars blocks the windows holding both).
    Each span adds +1/-1 to a difference array: O(bars + spans log bars).
    """
    n = len(times)
    marks = np.zeros(n + 1, dtype=np.int64)
    if n == 0 or len(span_starts) == 0:
        return marks[:n].astype(bool)
    first = np.searchsorted(times, span_starts, side="left")
    last = np.searchsorted(times, span_ends, side="right") - 1
    lo = np.maximum(first - length + 1, 0)
    hi = np.minimum(last, n - 1)
    keep = lo <= hi
    np.add.at(marks, lo[keep], 1)
    np.add.at(marks, hi[keep] + 1, -1)
    return np.cumsum(marks[:n]) > 0


def free_starts(
    bars: pd.DataFrame, length: int, context: int, occupied: Mapping[str, Spans]
) -> tuple[np.ndarray, dict[str, int]]:
    """Start rows of every window of ``length`` bars that can be offered, and how many
    windows each source of ``occupied`` ruled out (a window may count under several).

    A window lies in one symbol without a time gap (``moola.data.windows.window_starts``),
    has ``context`` bars of its symbol before and after it, and overlaps no span.
    """
    starts = window_starts(bars, length)
    symbols = bars["symbol"].astype(str).to_numpy()
    times = _ns(bars["timestamp"])
    ok = np.zeros(len(bars), dtype=bool)
    ok[starts] = True
    room = np.zeros(len(bars), dtype=bool)
    for _, first, last in _symbol_blocks(symbols):
        lo, hi = first + context, last - context - length + 1  # inclusive start range
        if hi >= lo:
            room[lo : hi + 1] = True
    ok &= room
    excluded: dict[str, int] = {}
    blocked_any = np.zeros(len(bars), dtype=bool)
    for source, spans in occupied.items():
        blocked = np.zeros(len(bars), dtype=bool)
        for symbol, first, last in _symbol_blocks(symbols):
            if symbol in spans:
                block_times = times[first : last + 1]
                blocked[first : last + 1] = blocked_starts(block_times, length, *spans[symbol])
        excluded[source] = int((blocked & ok).sum())
        blocked_any |= blocked
    return np.flatnonzero(ok & ~blocked_any).astype(np.int64), excluded


def _by_key(keys: np.ndarray, head: int) -> Iterator[np.ndarray]:
    """Indices of ``keys`` in ascending key order, in two parts: the ``head`` smallest
    (partitioned, then sorted), then the rest, sorted only if the caller reads on."""
    if head >= len(keys):
        yield np.argsort(keys, kind="stable")
        return
    first = np.argpartition(keys, head - 1)[:head]
    yield first[np.argsort(keys[first], kind="stable")]
    rest = np.ones(len(keys), dtype=bool)
    rest[first] = False
    others = np.flatnonzero(rest)
    yield others[np.argsort(keys[others], kind="stable")]


def draw_windows(
    starts: np.ndarray, length: int, k: int, weights: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``k`` of ``starts`` (rows of one raw table) that do not overlap each other,
    drawn with probability proportional to ``weights`` (uniform when None), in draw order.

    Weighted sampling without replacement by Efraimidis-Spirakis keys; each drawn window is
    kept when no kept window shares a row with it. All windows have ``length`` bars, so a
    window overlaps a kept one exactly when its first or last row is already taken.
    """
    if len(starts) == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    keys = rng.exponential(size=len(starts))
    if weights is not None:
        with np.errstate(divide="ignore"):
            keys = np.where(weights > 0, keys / weights, np.inf)
    taken = np.zeros(int(starts.max()) + length + 1, dtype=bool)
    chosen: list[int] = []
    for part in _by_key(keys, head=8 * k + 64):
        for start in starts[part].tolist():
            if taken[start] or taken[start + length - 1]:
                continue
            taken[start : start + length] = True
            chosen.append(start)
            if len(chosen) == k:
                return np.asarray(chosen, dtype=np.int64)
    return np.asarray(chosen, dtype=np.int64)


# ------------------------------------------------------------------ session weights
def session_weights(
    rates: Mapping[str, float], codes: np.ndarray
) -> tuple[np.ndarray | None, dict[str, float]]:
    """Weight per window from its session's keeper rate (None: uniform, no history).

    ``codes``: each window's session as an index into ``moola.annotate.stats.SESSIONS``
    (``session_codes``). A session missing from ``rates`` gets their mean; every weight is
    at least ``SESSION_FLOOR`` of the largest. Returns the weights and the weight used per
    session present.
    """
    from moola.annotate.stats import SESSIONS

    rates = {str(k): float(v) for k, v in rates.items() if v is not None and np.isfinite(v)}
    if not rates or max(rates.values()) <= 0:
        return None, {}
    mean = float(np.mean(list(rates.values())))
    codes = np.asarray(codes, dtype=np.intp)
    present = np.flatnonzero(np.bincount(codes, minlength=len(SESSIONS)))
    per_code = np.array([rates.get(name, mean) for name in SESSIONS], dtype=np.float64)
    best = max(per_code[present].max(initial=0.0), max(rates.values()))
    per_code = np.maximum(per_code, SESSION_FLOOR * best)
    used = {SESSIONS[i]: round(float(per_code[i]), 6) for i in present}
    return per_code[codes], used


# ------------------------------------------------------------------ active learning
def uncertainty(proba: np.ndarray, measure: Measure = "entropy") -> np.ndarray:
    """Per row of class probabilities ``(N, K)``: higher means less certain.

    ``entropy``: ``-sum p log p`` (nats); ``margin``: ``1 - (p_top1 - p_top2)``.
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    if measure == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p), 0.0)
        return -terms.sum(axis=1)
    if measure == "margin":
        top = np.sort(p, axis=1)
        second = top[:, -2] if p.shape[1] > 1 else np.zeros(len(p))
        return 1.0 - (top[:, -1] - second)
    raise ConfigError(f"measure={measure!r} is not 'entropy' or 'margin'.", param="measure")


def k_center(points: np.ndarray, k: int, first: int = 0) -> np.ndarray:
    """Greedy k-center (farthest-first traversal): ``k`` row indices of ``points``
    ``(M, D)``, starting at ``first``, each next one the farthest from those chosen.

    A 2-approximation of the k-center problem (Gonzalez 1985): the chosen rows cover the
    set with the smallest radius up to a factor 2, so they come from every region of it.
    """
    points = np.asarray(points, dtype=np.float64)
    m = len(points)
    k = min(int(k), m)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    chosen = [int(first)]
    distance = np.linalg.norm(points - points[first], axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(points - points[nxt], axis=1))
    return np.asarray(chosen, dtype=np.int64)


def select_uncertain(
    scores: np.ndarray, embeddings: np.ndarray, k: int, shortlist: int
) -> np.ndarray:
    """Indices of ``k`` rows to label: the ``shortlist`` least certain (highest
    ``scores``), spread by k-center over ``embeddings`` from the least certain one, then
    ordered least certain first."""
    scores = np.asarray(scores, dtype=np.float64)
    shortlist = max(min(int(shortlist), len(scores)), min(k, len(scores)))
    ranked = np.argsort(-scores, kind="stable")[:shortlist]
    picked = ranked[k_center(np.asarray(embeddings)[ranked], k, first=0)]
    return picked[np.argsort(-scores[picked], kind="stable")]


def _standardised(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    flat = np.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)
    std = flat.std(axis=0)
    return (flat - flat.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _encoder_of(estimator: Any) -> Any:
    """The encoder module a run's fitted model holds (``module_.encoder``), or None."""
    module = getattr(estimator, "module_", None)
    encoder = getattr(module, "encoder", None)
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a core dependency
        return None
    return encoder if isinstance(encoder, nn.Module) else None


def score_windows(
    predictor: Any, windows: np.ndarray, measure: Measure
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``(scores, proba, embeddings, space)`` of raw ``windows`` ``(M, T, D)``.

    Probabilities are the predictor's (the run's own path). With an encoder in the run's
    model, its output on each window is captured during that same forward pass (a forward
    hook; a per-step output is max-pooled over time, as TS2Vec encodes a series); without,
    the model's input features of each window, standardised over the pool.
    """
    encoder = _encoder_of(predictor.estimator)
    captured: list[np.ndarray] = []
    handle = None
    if encoder is not None:

        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            out = output
            if isinstance(out, tuple):  # (sequence, pooled): take the pooled view
                out = out[1] if len(out) > 1 and out[1].ndim == 2 else out[0]
            if out.ndim == 3:
                out = out.amax(dim=1)
            captured.append(out.detach().double().cpu().numpy())

        handle = encoder.register_forward_hook(hook)
    try:
        proba = np.asarray(predictor.predict_proba(windows), dtype=np.float64)
    finally:
        if handle is not None:
            handle.remove()
    if encoder is not None and captured:
        embeddings, space = np.concatenate(captured), f"encoder:{type(encoder).__name__}"
    else:
        embeddings, space = _standardised(predictor.inputs_of(windows)), "inputs"
    return uncertainty(proba, measure), proba, embeddings, space


def _load_predictor(registry: Registry, run: str, length: int, bars: pd.DataFrame) -> Any:
    """The run's Predictor, checked to read raw windows of ``length`` bars of ``bars``."""
    from moola.pipeline.predictor import Predictor

    predictor = Predictor.from_run(registry.root, run)
    if predictor.feature_set is not None or predictor.scaler is not None:
        raise ConfigError(
            f"Run {predictor.run_id} reads feature windows; uncertainty sampling scores raw "
            "bar windows. Pick a run trained on a labeled dataset of raw windows.",
            param="run",
        )
    if predictor.task != "classification":
        raise ConfigError(
            f"Run {predictor.run_id} is a {predictor.task} run; uncertainty needs class "
            "probabilities from a classification run.",
            param="run",
        )
    if predictor.length != length:
        raise ConfigError(
            f"Run {predictor.run_id} reads windows of {predictor.length} bars but length is "
            f"{length}; extract windows of the run's length.",
            param="length",
        )
    missing = [c for c in predictor.columns if c not in bars.columns]
    if missing:
        raise ConfigError(
            f"Run {predictor.run_id} reads bar columns {missing} that the raw bars lack.",
            param="run",
        )
    return predictor


# ------------------------------------------------------------------ the batch
def _stored_batches(root: Any) -> list[Batch]:
    return store.list_batches(root)


def check_name_free(root: Any, name: str) -> None:
    """``ConfigError`` naming ``name`` when a batch of that name is stored already."""
    if store.batch_path(root, name).exists():
        raise ConfigError(
            f"A batch named {name!r} exists already; batches are write-once. Pick another name.",
            param="name",
        )


def _session_codes(times: np.ndarray) -> np.ndarray:
    from moola.annotate.stats import session_codes

    return session_codes(times)


def _keeper_rates(root: Any) -> Mapping[str, float]:
    from moola.annotate.stats import keeper_rates

    return keeper_rates(root)


def extract_batch(
    registry: Registry,
    raw: str,
    *,
    n: int,
    length: int,
    name: str,
    context: int = DEFAULT_CONTEXT,
    weights: Weights = "session",
    strategy: Strategy = "random",
    run: str | None = None,
    seed: int = 0,
    measure: Measure = "entropy",
    pool_factor: float = 5.0,
    shortlist_factor: float = 2.0,
    on_progress: Callable[[str], None] = lambda _: None,
) -> Batch:
    """Draw ``n`` windows of ``raw`` (``NAME[@vN]``) and store them as batch ``name``.

    See the module docstring for what is drawn and how. Returns the stored ``Batch``.
    Errors (nothing written): ``ConfigError`` for a bad parameter or a ``name`` that exists
    (``param`` names it), ``RegistryError`` for an unknown raw dataset, a raw version too
    short for ``length`` plus ``2 * context`` bars, or fewer than ``n`` free windows.
    """
    try:
        config = ExtractConfig(
            n=n,
            length=length,
            context=context,
            weights=weights,
            strategy=strategy,
            run=run,
            seed=seed,
            measure=measure,
            pool_factor=pool_factor,
            shortlist_factor=shortlist_factor,
        )
    except ValidationError as exc:
        first = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else None
        raise ConfigError(describe_validation("extraction", exc), param=first) from None
    if config.strategy == "uncertainty" and not config.run:
        raise ConfigError(
            "strategy 'uncertainty' needs run: the training run whose model scores the "
            "candidate windows.",
            param="run",
        )
    check_name_free(registry.root, name)
    ref = registry.resolve_text(raw, kind="raw")
    on_progress(f"reading {ref}")
    bars = registry.load_raw(ref.name, ref.version)
    needed = config.length + 2 * config.context
    if len(bars) < needed:
        raise RegistryError(
            f"{ref} has {len(bars)} bars, too few for one window of {config.length} bars "
            f"with {config.context} context bars on each side ({needed} bars). Use a shorter "
            "length or context, or more data.",
            param="length",
        )
    predictor = None
    if config.strategy == "uncertainty":
        assert config.run is not None
        predictor = _load_predictor(registry, config.run, config.length, bars)
    on_progress("finding free windows")
    occupied = occupied_spans(registry, ref)
    starts, excluded = free_starts(bars, config.length, config.context, occupied)
    times = _ns(bars["timestamp"])
    rates = _keeper_rates(registry.root) if config.weights == "session" else {}
    window_weights, used = (
        session_weights(rates, _session_codes(times[starts])) if rates else (None, {})
    )
    rng = np.random.default_rng(config.seed)
    wanted = config.n
    if predictor is not None:
        wanted = int(np.ceil(config.pool_factor * config.n))
    drawn = draw_windows(starts, config.length, wanted, window_weights, rng)
    if len(drawn) < config.n:
        raise RegistryError(
            f"{ref} has room for only {len(drawn)} non-overlapping windows of {config.length} "
            f"bars (with {config.context} context bars) that are not labeled, queued or "
            f"blacklisted ({excluded}); asked for n={config.n}. Ask for fewer.",
            param="n",
        )
    scores: np.ndarray | None = None
    params: dict[str, Any] = {
        **config.model_dump(mode="json"),
        "weights_used": "session" if window_weights is not None else "uniform",
        "session_weights": used,
        "free_windows": len(starts),
        "excluded": excluded,
    }
    if predictor is not None:
        on_progress(f"scoring {len(drawn)} windows with run {predictor.run_id}")
        values = np.ascontiguousarray(bars[list(predictor.columns)].to_numpy(np.float32))
        pool = WindowSet(values, drawn, config.length).take(np.arange(len(drawn)))
        pool_scores, _, embeddings, space = score_windows(predictor, pool, config.measure)
        shortlist = int(np.ceil(config.shortlist_factor * config.n))
        picked = select_uncertain(pool_scores, embeddings, config.n, shortlist)
        chosen, scores = drawn[picked], pool_scores[picked]
        params.update(pool=len(drawn), shortlist=shortlist, diversity_space=space)
    else:
        chosen = np.sort(drawn[: config.n])
    on_progress("suggesting labels")
    labels, sources = suggest(bars, chosen, config.length)
    pinned = ref.pinned
    symbols = bars["symbol"].iloc[chosen].astype(str).tolist()
    firsts = pd.DatetimeIndex(bars["timestamp"].iloc[chosen]).to_pydatetime()
    lasts = pd.DatetimeIndex(bars["timestamp"].iloc[chosen + config.length - 1]).to_pydatetime()
    windows = []
    for i, start in enumerate(chosen.tolist()):
        windows.append(
            WindowRef(
                window_id=make_window_id(pinned, symbols[i], firsts[i], config.length),
                raw=pinned,
                symbol=symbols[i],
                start_row=start,
                end_row=start + config.length - 1,
                start_ts=firsts[i],
                end_ts=lasts[i],
                length=config.length,
                suggestion=labels[i],
                suggestion_source=sources[i],
                score=None if scores is None else float(scores[i]),
            )
        )
    batch = Batch(
        name=name,
        kind="normal",
        raw=pinned,
        length=config.length,
        context=config.context,
        windows=tuple(windows),
        created_at=datetime.now(UTC),
        strategy=config.strategy,
        params=params,
        source_run=None if predictor is None else predictor.run_id,
    )
    store.write_batch(registry.root, batch)
    return batch
