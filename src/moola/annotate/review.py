"""Label review: the windows of a labeled dataset most likely to carry a wrong label.

``review_batch`` takes a training run's purged out-of-fold probabilities (every window
was predicted by a model that never saw it, nor its purged neighbours), hands them with
the given labels to cleanlab's confident-learning filter
(``cleanlab.filter.find_label_issues``, ranked by self-confidence: the model's
probability of the given label) and writes the windows it flags as a *review* batch,
most suspicious first. Asked for ``limit`` windows, it gives the ``limit`` likeliest
errors: the flagged ones, then the others by rising self-confidence (confident learning
is cautious on a small set and may flag none of 50 windows). Each window carries its
given label, the model's probabilities per class, the model's own choice as the
suggestion (source ``run:<id>``) and, as its score, the self-confidence (lower means
more likely mislabelled). The review store is separate from the normal one
(``moola.annotate.store``), so corrections never mix with new labels;
``moola.annotate.commit`` turns accepted corrections into a new version of the reviewed
dataset.

Only OOF probabilities will do: in-sample probabilities agree with the labels they were
fitted on, mislabelled windows included, so a run without them (a holdout run, a
regression run) is refused naming the run. Windows blacklisted since the run are left out.
cleanlab is imported when a review is made, not with ``moola``.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from moola.annotate import store
from moola.annotate.extract import DEFAULT_CONTEXT, check_name_free
from moola.annotate.model import Batch, WindowRef, make_window_id
from moola.core.errors import ConfigError, RegistryError
from moola.data.blacklist import read_blacklist
from moola.data.registry import Registry
from moola.tracking.runs import RunStore

__all__ = ["REVIEW_STRATEGY", "label_issues", "review_batch", "suspects"]

REVIEW_STRATEGY = "cleanlab"


def label_issues(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, self_confidence)``: rows cleanlab flags as likely mislabelled, most
    suspicious first, and each one's probability of its given label.

    ``labels`` are class indices ``(N,)``, ``proba`` out-of-sample probabilities
    ``(N, K)``; rows are renormalised to sum to 1 (cleanlab requires it).
    """
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, None)
    proba = proba / proba.sum(axis=1, keepdims=True)
    indices = find_label_issues(labels, proba, return_indices_ranked_by="self_confidence", n_jobs=1)
    indices = np.asarray(indices, dtype=np.int64)
    return indices, proba[indices, labels[indices]]


def suspects(
    flagged: np.ndarray, labels: np.ndarray, proba: np.ndarray, limit: int | None
) -> np.ndarray:
    """Rows to review, most suspicious first: with no ``limit`` the ``flagged`` rows (in
    their order); with one, the first ``limit`` of the flagged rows followed by every other
    row by rising probability of its given label.

    Confident learning is cautious on a small set (its per-class thresholds are averages
    over few windows, and 50 windows may get no flag at all), while a reviewer asking for
    ``limit`` windows wants the ``limit`` likeliest errors; the batch records how many
    were flagged.
    """
    if limit is None:
        return np.asarray(flagged, dtype=np.int64)
    confidence = proba[np.arange(len(labels)), labels]
    others = np.setdiff1d(np.arange(len(labels)), flagged)
    others = others[np.argsort(confidence[others], kind="stable")]
    return np.concatenate([np.asarray(flagged, dtype=np.int64), others])[:limit]


def _oof(registry: Registry, run: str) -> tuple[Any, pd.DataFrame, tuple[str, ...]]:
    """The run's manifest, its covered OOF predictions table and its classes."""
    store = RunStore(registry.root)
    manifest = store.train_manifest(store.run_dir(run))
    run_id = manifest.run_id
    if manifest.task != "classification":
        raise ConfigError(
            f"Run {run_id} is a {manifest.task} run; label review needs class probabilities "
            "from a classification run.",
            param="run",
        )
    if manifest.mode != "oof" or manifest.predictions is None:
        raise ConfigError(
            f"Run {run_id} has no out-of-fold probabilities (it was trained in "
            f"{manifest.mode} mode); review needs a run trained on a split with folds "
            "(purged k-fold or walk-forward), whose every window was predicted out of fold.",
            param="run",
        )
    record = manifest.predictions
    table = registry.load_table("predictions", record.name, record.version)
    classes = tuple(manifest.data.classes)
    columns = [f"p_{c}" for c in classes]
    missing = [c for c in (*columns, "row", "label", "covered") if c not in table.columns]
    if missing:
        raise ConfigError(
            f"Run {run_id}'s predictions ({record.pinned}) lack the columns {missing}; it has "
            "no out-of-fold probabilities per class.",
            param="run",
        )
    covered = table[table["covered"].astype(bool)].reset_index(drop=True)
    if covered[columns].isna().to_numpy().any():
        raise ConfigError(
            f"Run {run_id}'s out-of-fold probabilities have missing values for covered "
            "windows; retrain the run.",
            param="run",
        )
    return manifest, covered, classes


def review_batch(
    registry: Registry,
    run: str,
    *,
    name: str,
    limit: int | None = None,
    context: int = DEFAULT_CONTEXT,
) -> Batch:
    """Store the windows of ``run``'s labeled dataset that cleanlab flags as likely
    mislabelled as the review batch ``name``, most suspicious first; with ``limit``, the
    ``limit`` likeliest errors (the flagged ones first, then the others by rising
    probability of their given label: see ``suspects``).

    Errors (nothing written): ``ConfigError`` naming the run when it has no OOF class
    probabilities, or naming ``name`` when that batch exists; ``RegistryError`` when the
    run's labeled dataset or its raw bars are gone or its windows are not raw-bar windows.
    """
    check_name_free(registry.root, name)
    if limit is not None and limit < 1:
        raise ConfigError(f"limit={limit!r} must be 1 or more (or None for all).", param="limit")
    manifest, covered, classes = _oof(registry, run)
    dataset = manifest.data.dataset.ref
    meta = registry.meta(dataset)
    raw = meta.get("raw")
    if dataset.kind != "labeled" or not isinstance(raw, dict) or meta.get("feature_tables"):
        raise RegistryError(
            f"Run {manifest.run_id} was trained on {dataset}, not on labeled windows of one "
            "raw dataset; review shows raw-bar windows, so it needs such a run.",
            param="run",
        )
    table = pd.read_parquet(io.BytesIO(registry.read_file(dataset, "windows.parquet")))
    rows = covered["row"].to_numpy(np.int64)
    windows = table.iloc[rows].reset_index(drop=True)
    proba = covered[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    labels = covered["label"].to_numpy(np.int64)
    banned = read_blacklist(registry.root).mask(
        windows["symbol"], windows["start_ts"], windows["end_ts"]
    )
    keep = np.flatnonzero(~banned)
    flagged, _ = label_issues(labels[keep], proba[keep])
    found = keep[suspects(flagged, labels[keep], proba[keep], limit)]
    confidence = proba[found, labels[found]]
    pinned = f"{raw['name']}@v{raw['version']}"
    length = int(meta["length"])
    refs = []
    for i, position in enumerate(found.tolist()):
        row = windows.iloc[position]
        start_ts = pd.Timestamp(row["start_ts"]).to_pydatetime()
        p = {c: float(proba[position, k]) for k, c in enumerate(classes)}
        refs.append(
            WindowRef(
                window_id=make_window_id(pinned, str(row["symbol"]), start_ts, length),
                raw=pinned,
                symbol=str(row["symbol"]),
                start_row=int(row["start"]),
                end_row=int(row["end"]),
                start_ts=start_ts,
                end_ts=pd.Timestamp(row["end_ts"]).to_pydatetime(),
                length=length,
                suggestion=classes[int(np.argmax(proba[position]))],
                suggestion_source=f"run:{manifest.run_id}",
                score=float(confidence[i]),
                given_label=classes[int(labels[position])],
                model_proba=p,
            )
        )
    batch = Batch(
        name=name,
        kind="review",
        raw=pinned,
        length=length,
        context=context,
        windows=tuple(refs),
        created_at=datetime.now(UTC),
        strategy=REVIEW_STRATEGY,
        params={
            "ranked_by": "self_confidence",
            "score": "self_confidence: the OOF probability of the given label (lower: more "
            "likely mislabelled)",
            "probabilities": "uncalibrated out-of-fold (p_<class>)",
            "reviewed_windows": len(keep),
            "blacklisted_left_out": int(banned.sum()),
            "flagged": len(flagged),
            "limit": limit,
        },
        source_run=manifest.run_id,
        labeled=dataset.pinned,
    )
    store.write_batch(registry.root, batch)
    return batch
